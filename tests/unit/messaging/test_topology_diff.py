"""The topology diff, pure: what to add, what changed (always a recreate: RabbitMQ changes
neither a queue nor an exchange in place) and what prune would remove, never the tasks'."""

from __future__ import annotations

from controlplane.messaging.definition import Declared, _binding, expand, parse
from controlplane.messaging.topology import Protected, diff
from controlplane.settings import MessagingRetrySettings, TasksSettings

DEFAULTS = MessagingRetrySettings()


def queue(name: str, **arguments: object) -> Declared:
    return Declared(
        kind="queue", name=name, type="classic", arguments={"x-queue-type": "classic", **arguments}
    )


def wanted(raw: dict) -> list[Declared]:
    return expand(parse(raw), DEFAULTS)


def test_what_the_broker_lacks_is_added_and_the_same_thing_twice_is_no_change():
    items = wanted({"exchanges": [{"name": "e"}], "queues": [{"name": "q"}],
                    "bindings": [{"exchange": "e", "queue": "q", "routing_key": "k"}]})  # fmt: skip
    first = diff(items, [])
    assert [(d.kind, d.name) for d in first.add] == [(d.kind, d.name) for d in items]
    assert not first.change and not first.remove and not first.empty
    assert diff(items, items).empty


def test_changed_arguments_or_type_are_a_recreate_naming_what_differs():
    on_broker = [queue("q", **{"x-max-priority": 5}), Declared(kind="exchange", name="e", type="direct")]
    want = [queue("q", **{"x-max-priority": 9}), Declared(kind="exchange", name="e", type="topic")]
    found = diff(want, on_broker)
    changes = {c.wanted.name: c for c in found.change}
    assert set(changes) == {"q", "e"} and all(c.recreate for c in found.change)
    assert changes["q"].differences == {
        "arguments": (
            {"x-queue-type": "classic", "x-max-priority": 5},
            {"x-queue-type": "classic", "x-max-priority": 9},
        )
    }
    assert changes["e"].differences == {"type": ("direct", "topic")}
    as_dict = found.to_dict()["change"][0]
    assert as_dict["recreate"] is True and "differences" in as_dict
    quorum = queue("q").model_copy(update={"type": "quorum", "arguments": {"x-queue-type": "quorum"}})
    assert set(diff([quorum], [queue("q")]).change[0].differences) == {"type", "arguments"}


def test_bindings_differ_by_key_and_arguments_not_by_change():
    plain = _binding("e", "q", "a")
    other_key = _binding("e", "q", "b")
    headers = _binding("h", "q", "", {"x-match": "all", "kind": "x"})
    found = diff([other_key, headers], [plain, _binding("h", "q", "", {"x-match": "any", "kind": "x"})])
    assert {b.name for b in found.add} == {other_key.name, headers.name}
    assert len(found.remove) == 2 and not found.change


def test_remove_lists_what_the_definition_lacks_bindings_first_and_never_the_tasks():
    tasks = TasksSettings(queues={"celery": 10, "mail": 5})
    on_broker = [
        Declared(kind="exchange", name="old"), queue("old"), _binding("old", "old", "k"),
        queue("celery"), queue("mail"), queue("coreplane.dead"), queue("coreplane.task-events"),
        queue("celeryev.1f2e"), queue("w1@host.celery.pidbox"),
        Declared(kind="exchange", name="celery"), Declared(kind="exchange", name="coreplane.dead.dlx"),
        Declared(kind="exchange", name="celeryev", type="topic"), _binding("celery", "celery", "celery"),
    ]  # fmt: skip
    found = diff([], on_broker, protected=Protected.of(tasks))
    assert [(d.kind, d.name) for d in found.remove] == [
        ("binding", "old/old/k"),
        ("queue", "old"),
        ("exchange", "old"),
    ]
    # Without the tasks' names, they would be removed too: protection is what keeps them.
    # (Celery's workers' own queues, celeryev.* and *.pidbox, are kept whatever the settings.)
    assert len(diff([], on_broker).remove) == len(on_broker) - 2


def test_the_dead_exchange_of_messaging_is_not_the_tasks_dead_queue():
    # Both are called coreplane.dead by default; one is an exchange, the other a queue.
    tasks = TasksSettings()
    found = diff(
        [], [Declared(kind="exchange", name="coreplane.dead", type="direct")], protected=Protected.of(tasks)
    )
    assert [(d.kind, d.name) for d in found.remove] == [("exchange", "coreplane.dead")]
