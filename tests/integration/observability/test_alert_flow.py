"""End to end, all real: a private Redis watched by a real agent, a real `coreplane serve`,
a private Prometheus scraping its /metrics/backends and a private Alertmanager posting to
its webhook. Kill the Redis: the alert fires, an event is stored, a policy rule starts an
action that an agent carries out; restart it: the alert resolves and an event says so."""

from __future__ import annotations

import secrets
import time

import httpx
import redis
import yaml

from agents.config import TargetConfig
from controlplane.cache.invalidation import TAG_KEY
from controlplane.store.migrate import upgrade
from tests.support.agents import running_agent
from tests.support.alert_rules import RULE_NAME, backend_down_rules, policy_rule
from tests.support.alert_stack import Scrape, alert_stack
from tests.support.console import console_login
from tests.support.redis_topology import redis_topology
from tests.support.serve import running_control_plane
from tests.support.timing import epoch, until


def test_a_killed_redis_alerts_into_an_action_and_resolves(tmp_path):
    hook_token = secrets.token_urlsafe(24)
    store = f"sqlite:///{tmp_path}/store.db"
    upgrade(store)
    with (
        redis_topology(replicas=0, master_name="lab") as lab,
        redis_topology(replicas=0, master_name="labcache") as cache,
        running_control_plane(store, log=tmp_path / "serve.log", webhooks__alertmanager_token=hook_token) as (
            base,
            admin,
        ),
    ):
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin}"})
        current = api.get("/api/v1/rules").json()
        rules = (
            current["yaml"].rstrip()
            + "\n\n"
            + yaml.safe_dump([policy_rule("lab", "labcache")], sort_keys=False)
        )
        assert (
            api.put("/api/v1/rules", json={"yaml": rules, "version": current["version"]}).status_code == 200
        )
        targets = [
            TargetConfig(type="redis", name=name, address=f"redis://127.0.0.1:{t.primary.port}/0",
                         interval_s=1, timeout_s=0.5)
            for name, t in (("lab", lab), ("labcache", cache))
        ]  # fmt: skip
        scrape = Scrape(
            "coreplane-backends", base.removeprefix("http://"), f"{base}/api/v1/webhooks/alertmanager",
            path="/metrics/backends", honor_labels=True, token=hook_token, scrape_token=admin,
        )  # fmt: skip
        with (
            running_agent(base, admin, tmp_path, *targets, name="lab-agent"),
            alert_stack(tmp_path / "stack", [scrape], backend_down_rules("lab")) as stack,
        ):

            def query(expr: str) -> list:
                return httpx.get(f"{stack.prometheus_url}/api/v1/query", params={"query": expr}).json()[
                    "data"
                ]["result"]

            def healthy(service: str) -> bool:
                instances = api.get(f"/api/v1/services/{service}").json().get("instances", [])
                return bool(instances) and all(i["health"] == "passing" for i in instances)

            until("the catalog shows both Redis passing", lambda: healthy("lab") and healthy("labcache"), 30)
            until("Prometheus sees the lab Redis up", lambda: query('coreplane_redis_up{service="lab"} == 1'), 30,
                  logs=stack.logs)  # fmt: skip

            killed_at = time.time()
            lab.primary.kill()

            def alert_events(status: str) -> list[dict]:
                events = api.get("/api/v1/events", params={"event_type": "alert", "service_name": "lab"})
                return [e for e in events.json()["events"] if e["status"] == status]

            (firing,) = until("a firing alert event", lambda: alert_events("firing"), 60, logs=stack.logs)
            details = firing["details"]
            assert details["alertname"] == "CoreplaneBackendDown"
            assert details["source"] == "alertmanager" and details["severity"] == "critical"
            assert details["labels"]["instance"] == f"127.0.0.1:{lab.primary.port}"
            assert details["labels"]["job"] == "coreplane-backends"
            console, _ = console_login(base, token=admin)
            assert 'data-alert="CoreplaneBackendDown"' in console.get("/").text  # the overview's open alerts

            def rule_actions() -> list[dict]:
                return api.get("/api/v1/actions", params={"rule": RULE_NAME}).json()

            (action,) = until("the rule's action", rule_actions, 30)
            alert_to_action_s = epoch(action["created_at"]) - killed_at
            event_to_action_s = epoch(action["created_at"]) - epoch(firing["timestamp"])
            print(f"\nalert_to_action_s: {alert_to_action_s:.2f} s from kill to the action's creation, "
                  f"{event_to_action_s:.3f} s of it from the webhook's event to the action")  # fmt: skip
            assert action["kind"] == "cache.invalidate" and action["target"] == "labcache"
            assert action["links"]["events"] == [firing["id"]]
            assert 0 < alert_to_action_s < 30

            def finished() -> dict | None:
                found = api.get(f"/api/v1/actions/{action['id']}").json()
                return found if found["state"] in ("succeeded", "failed", "cancelled") else None

            done = until("the action finishing", finished, 30)
            assert done["state"] == "succeeded", done
            with redis.Redis(port=cache.primary.port) as client:
                assert client.get(TAG_KEY.format("CoreplaneBackendDown")) == b"1"  # the agent really did it

            lab.primary.start()  # same port, same config
            (resolved,) = until(
                "a resolved alert event", lambda: alert_events("resolved"), 90, logs=stack.logs
            )
            assert resolved["details"]["fingerprint"] == details["fingerprint"]
            assert resolved["details"]["ends_at"] is not None
            assert len(alert_events("firing")) == 1  # Alertmanager's resends stored nothing new
            assert len(rule_actions()) == 1
            assert 'data-alert="CoreplaneBackendDown"' not in console.get("/").text  # no longer open
            console.close()
