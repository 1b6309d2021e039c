"""Wire schemas: what the API accepts from agents (ingest) and from Alertmanager and Grafana
(webhooks), and what it answers. They import nothing from the store or the API.

Agents do not import them (they send plain JSON); tests/unit/agents/test_batch_contract.py
validates the agent's batches against ``IngestBatchIn``.
"""
