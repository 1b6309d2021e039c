"""The agent caps glibc's malloc arenas (one per thread by default) unless the operator set
MALLOC_ARENA_MAX; bench/agent.py measures what it saves."""

from __future__ import annotations

import platform

from agents.daemon import cap_malloc_arenas


def test_the_arena_cap_is_set_on_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert platform.libc_ver()[0] == "glibc"  # the machines coreplane runs on (Debian)
    assert cap_malloc_arenas(2) is True


def test_an_operators_malloc_arena_max_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas(2) is False
