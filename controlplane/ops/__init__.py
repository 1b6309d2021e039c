"""Use cases: what the API and the console do, over the store. Callers own transactions."""
