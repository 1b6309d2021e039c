"""What tests and benchmarks share (bench imports from here; nothing here imports bench).

services       the real services' settings (var/services.env), require(), reach()
timing         until(): the one way to wait; epoch()
processes      free ports, spawned processes, the COREPLANE_* environment
stores         a migrated store on each dialect (SQLite file, PostgreSQL schema)
serve          a real `coreplane serve`: one factory for per-test and shared servers
console        console logins and users
agents         a real agent (in process or spawned) and a Celery worker
redis_topology, alert_stack, alert_rules   private Redis, Prometheus and Alertmanager
results        the benchmark results file and its table
"""
