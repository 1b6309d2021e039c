"""Background loops. Each has run_once() (a test runs one iteration) and a runner."""
