"""One source per registry (issue 13, section 4): every "module:attr" string resolves,
agent.yaml accepts exactly the collectors' types, the control plane dispatches exactly the
actuators' kinds, and every registered collector has the shape TargetLoop calls."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from importlib import import_module
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from agents.actuators import ACTUATORS
from agents.collectors import Observation
from agents.collectors.base import Collector
from agents.collectors.registry import COLLECTORS, collector_class
from agents.config import TargetConfig, TargetType
from controlplane.actions.plans import AGENT_KINDS

ROOT = Path(__file__).resolve().parents[3]
REGISTRIES = {"collectors": COLLECTORS, "actuators": ACTUATORS}
ENTRIES = [
    pytest.param(ref, id=f"{registry}[{key}]")
    for registry, entries in REGISTRIES.items()
    for key, ref in entries.items()
]


def _resolve(ref: str) -> typing.Any:
    module, sep, attr = ref.partition(":")
    assert sep and attr, f"{ref!r} is not 'module:attr'"
    return getattr(import_module(module), attr)


@pytest.mark.parametrize("ref", ENTRIES)
def test_every_registered_name_resolves(ref):
    assert callable(_resolve(ref))


@pytest.mark.parametrize("kind", sorted(ACTUATORS))
def test_every_actuator_takes_the_params_alone(kind):
    # ActionLoop calls actuator(kind)(params): one positional argument, nothing else required.
    inspect.signature(_resolve(ACTUATORS[kind])).bind({})


def test_the_control_plane_dispatches_exactly_the_agents_actuators():
    assert set(AGENT_KINDS) == set(ACTUATORS)


def test_agent_yaml_accepts_exactly_the_registered_collectors():
    assert typing.get_args(TargetType) == tuple(COLLECTORS)
    for kind in COLLECTORS:
        assert TargetConfig(type=kind, name="svc", address="x").type == kind
    with pytest.raises(ValidationError):
        TypeAdapter(TargetType).validate_python("mongodb")


def _protocol_methods(protocol: type) -> dict[str, typing.Callable]:
    return {
        name: member
        for name, member in vars(protocol).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }


def _shape(function: typing.Callable) -> tuple[list[str], dict[str, typing.Any]]:
    """Parameter names after self, and the resolved annotations."""
    names = list(inspect.signature(function).parameters)[1:]
    return names, typing.get_type_hints(function)


def test_the_protocol_names_what_target_loop_calls():
    assert set(_protocol_methods(Collector)) == {"collect", "close"}
    assert _shape(Collector.collect) == ([], {"return": Observation})


@pytest.mark.parametrize("kind", sorted(COLLECTORS))
def test_every_collector_satisfies_the_protocol(kind):
    cls = collector_class(kind)
    for name, wanted in _protocol_methods(Collector).items():
        assert callable(getattr(cls, name, None)), f"{cls.__name__} has no {name}()"
        assert _shape(getattr(cls, name)) == _shape(wanted), f"{cls.__name__}.{name}"
    # Built the way TargetLoop builds it: from the target's config alone.
    names, hints = _shape(cls.__init__)
    assert names == ["target"] and hints["target"] is TargetConfig, cls.__name__


def test_agent_config_imports_no_collector():
    # The small install: agent.yaml's types come from the registry's keys, never from
    # importing the collectors (and so every backend's client).
    modules = {ref.partition(":")[0] for ref in COLLECTORS.values()}
    script = f"import sys, agents.config; print(sorted(set({sorted(modules)!r}) & set(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
