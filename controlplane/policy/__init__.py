"""The policy engine: rules that turn events and metrics into actions."""
