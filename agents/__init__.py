"""The agent: runs beside backends, reports to the control plane, carries out actions.

From the control plane it imports only its version and the application-side cache library
(``controlplane.cache``: key layout, invalidation, stats key), never its store, API, settings
or wire schemas, so that an agent runs with a small install. It builds its batches as plain
JSON; tests/unit/agents/test_batch_contract.py checks them against ``IngestBatchIn``.
"""
