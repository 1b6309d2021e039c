"""coreplane's control plane: settings, store, API, catalog, policy, actions."""

__version__ = "0.1.0"
