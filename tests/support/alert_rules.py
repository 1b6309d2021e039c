"""The alert-to-action path's rules: a Prometheus rule on coreplane's backend-down metric
(and, for a baseline, on a bare exporter's) and the coreplane policy rule acting on it."""

from __future__ import annotations

ALERT = "CoreplaneBackendDown"
BARE_ALERT = "BareRedisDown"
RULE_NAME = "invalidate-on-backend-down"


def backend_down_rules(service: str, bare_job: str | None = None) -> dict:
    """Prometheus alerting rules: the service's Redis down as coreplane reports it (and, for
    the baseline, as a bare exporter sees it), firing at once."""
    rules = [{
        "alert": ALERT, "expr": f'coreplane_redis_up{{service="{service}"}} == 0', "for": "0s",
        "labels": {"severity": "critical"},
        "annotations": {"summary": "Redis {{ $labels.instance }} of {{ $labels.service }} does not answer"},
    }]  # fmt: skip
    if bare_job:
        rules.append({"alert": BARE_ALERT, "expr": f'redis_up{{job="{bare_job}"}} == 0', "for": "0s",
                      "labels": {"severity": "critical"}})  # fmt: skip
    return {"groups": [{"name": "alert-to-action", "rules": rules}]}


def policy_rule(service: str, cache_service: str) -> dict:
    """A coreplane rule: on the firing alert about ``service``, invalidate a tag named after
    the alert in ``cache_service``'s Redis."""
    return {
        "name": RULE_NAME,
        "description": f"Drop cached entries tagged with the alert's name when {service} goes down.",
        "trigger": {"event": {"type": "alert", "service": service, "status": "firing",
                              "match": {"alertname": ALERT}}},
        "action": {"kind": "cache.invalidate", "target": cache_service,
                   "params": {"tags": ["{{ event.details.alertname }}"]}},
        "cooldown_s": 0,
    }  # fmt: skip
