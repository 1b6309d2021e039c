"""The agent: runs beside backends, reports to the control plane, carries out actions.

Imports only the control plane's settings and wire schemas, never its store or API.
"""
