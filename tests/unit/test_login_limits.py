"""The console's login limiter, on a clock the test moves."""

from __future__ import annotations

from console.limits import LoginLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limiter(clock: Clock) -> LoginLimiter:
    return LoginLimiter(free_failures=3, base_wait_s=10, max_wait_s=40, forget_s=100,
                        address_failures=5, window_s=60, clock=clock)  # fmt: skip


def test_a_pair_backs_off_doubling_up_to_the_cap_and_is_forgotten_after_a_quiet_spell():
    clock = Clock()
    limiter = _limiter(clock)
    assert [limiter.attempt("otto", "a") for _ in range(3)] == [0, 0, 0]
    waits = []
    for _ in range(4):
        waits.append(limiter.attempt("otto", "a"))
        clock.now += waits[-1]
        assert limiter.attempt("otto", "a") == 0  # let through once the wait is over
    assert waits == [10, 20, 40, 40]
    clock.now += 100
    assert [limiter.attempt("otto", "a") for _ in range(3)] == [0, 0, 0]


def test_another_address_is_never_slowed_by_a_pairs_failures():
    clock = Clock()
    limiter = _limiter(clock)
    for _ in range(3):
        limiter.attempt("otto", "attacker")
    assert limiter.attempt("otto", "attacker") > 0
    assert limiter.attempt("otto", "office") == 0


def test_an_address_trying_many_names_hits_its_cap_until_the_window_moves():
    clock = Clock()
    limiter = _limiter(clock)
    assert [limiter.attempt(f"name{i}", "a") for i in range(5)] == [0] * 5
    assert limiter.attempt("name5", "a") == 60
    clock.now += 60
    assert limiter.attempt("name5", "a") == 0


def test_a_success_takes_its_attempt_back_and_clears_the_pair():
    clock = Clock()
    limiter = _limiter(clock)
    for _ in range(2):
        limiter.attempt("otto", "a")
    limiter.attempt("otto", "a")
    limiter.succeeded("otto", "a")
    assert [limiter.attempt("otto", "a") for _ in range(3)] == [0, 0, 0]
    # Successes do not count towards the address's cap either.
    for i in range(10):
        assert limiter.attempt(f"user{i}", "b") == 0
        limiter.succeeded(f"user{i}", "b")
