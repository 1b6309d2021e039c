"""The sandbox rule templates render in: Jinja2's immutable sandbox (no Python internals, no
mutating the context), made cheap enough that no template can stall the server.

Why caps and a work budget rather than a timer: a render runs Python in-process, and a thread
cannot be stopped from outside. Worse, one big operation (``9 ** 9 ** 7``, ``' ' * 10 ** 9``)
is a single C call that holds the GIL, so every other thread, the event loop and ``/healthz``
included, waits until it ends; no timeout can cut it short. So the bound is built in:

- a template is text with ``{{ expressions }}`` and ``{% if %}``: no loops, macros or ``set``,
  so a render does a number of operations bounded by the template's length;
- every operation that can make a value much bigger than its inputs is checked *before* it
  runs (``**``, ``*``, ``+``, ``%``, ``range``, the sizing filters, and the ``str`` methods that
  pad or replace are refused in favour of the checked filters), so each costs little;
- each render has a budget (operations plus the size of what they produce, and a wall-clock
  deadline), spent in the sandbox's hooks, so the sum of cheap operations stays cheap too.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any, cast

from jinja2 import StrictUndefined, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_SIZE = 10_000  # characters or items in one value a template makes, and in its result
MAX_INT_BITS = 4096  # about 1,200 decimal digits
MAX_WORK = 200_000  # per render: operations, plus the characters and items they produce
RENDER_S = 0.25  # per render, wall clock
# The str methods that pad, repeat or replace: refused, so the checked filters are the only way.
SIZING_STR_METHODS = frozenset(
    {
        "center",
        "expandtabs",
        "format",
        "format_map",
        "join",
        "ljust",
        "replace",
        "rjust",
        "translate",
        "zfill",
    }
)
ALLOWED_STATEMENTS = (nodes.Output, nodes.If)
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?[a-zA-Z%]")


class SandboxLimit(Exception):
    """A template asked for more than the sandbox allows; the message says what and the limit."""


@dataclass
class _Budget:
    seconds: float
    deadline: float
    work_left: int


_budget: ContextVar[_Budget | None] = ContextVar("rule_render_budget", default=None)


@contextlib.contextmanager
def budget(seconds: float = RENDER_S, work: int = MAX_WORK) -> Iterator[None]:
    """Renders inside share one budget; a budget already open is kept (a render's nested values)."""
    if _budget.get() is not None:
        yield
        return
    token = _budget.set(_Budget(seconds, time.monotonic() + seconds, work))
    try:
        yield
    finally:
        _budget.reset(token)


def spend(units: int = 1) -> None:
    """Charge the open budget; SandboxLimit once it is spent or its deadline passed."""
    current = _budget.get()
    if current is None:
        return
    current.work_left -= units
    if current.work_left < 0:
        raise SandboxLimit(f"the template does too much work (over {MAX_WORK:,} operations and characters)")
    if time.monotonic() > current.deadline:
        raise SandboxLimit(f"rendering took over {current.seconds:g} s")


def size(value: Any, limit: int = MAX_SIZE) -> int:
    """Characters and items in ``value``, counting into containers (a list repeated inside a list
    counts each time); stops counting once past ``limit``."""
    total, pending = 0, [value]
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, str | bytes | range):
            total += len(item)
        elif isinstance(item, dict):
            total += len(item)
            pending += item.values()
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item)
            pending += item
    return total


def _check_size(estimate: int, what: str) -> None:
    if estimate > MAX_SIZE:
        raise SandboxLimit(f"{what} would make about {estimate:,} characters or items (at most {MAX_SIZE:,})")


def _check_bits(bits: int, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise SandboxLimit(f"{what} would make a number of about {bits:,} bits (at most {MAX_INT_BITS:,})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_sequence(value: Any) -> bool:
    return isinstance(value, str | bytes | list | tuple)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "**" and _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
        _check_bits(left.bit_length() * right, "`**`")
    elif operator == "*" and _is_int(left) and _is_int(right):
        _check_bits(left.bit_length() + right.bit_length(), "`*`")
    elif operator == "*" and (_is_sequence(left) or _is_sequence(right)):
        sequence, times = (left, right) if _is_sequence(left) else (right, left)
        if _is_int(times):
            _check_size(size(sequence, MAX_SIZE) * max(times, 0), "`*`")
    elif operator == "+" and _is_int(left) and _is_int(right):
        _check_bits(max(left.bit_length(), right.bit_length()) + 1, "`+`")
    elif operator == "+" and _is_sequence(left) and _is_sequence(right):
        _check_size(size(left) + size(right), "`+`")
    elif operator == "%" and isinstance(left, str):
        _check_printf(left, right)


def _check_printf(template: str, values: Any) -> None:
    """``%`` formatting pads to any width it is given: bound the result before making it."""
    specs, widest = 0, 0
    for match in _PRINTF.finditer(template):
        specs += 1
        for number in match.groups():
            if number == "*":
                raise SandboxLimit("a `*` width in a % format is not allowed: write the width out")
            if number and len(number) > len(str(MAX_SIZE)):
                _check_size(10 ** len(number), "a % format's width")
            widest = max(widest, int(number or 0))
    _check_size(len(template) + specs * (size(values) + widest), "a % format")


def _safe_range(*args: Any) -> range:
    numbers = range(*args)
    try:
        length = len(numbers)
    except OverflowError:  # longer than a C size: far over any cap
        length = MAX_SIZE + 1
    _check_size(length, "range()")
    return numbers


# --- filters: each one spends from the budget; the ones that can make a value bigger than their
# input are checked first, by their own arguments.


def _check_center(a: dict) -> None:
    if _is_int(a["width"]):
        _check_size(a["width"], "center")


def _check_indent(a: dict) -> None:
    width = a["width"]
    per_line = len(width) if isinstance(width, str) else width if _is_int(width) else 0
    text = str(a["s"])
    _check_size(len(text) + per_line * (text.count("\n") + 1), "indent")


def _check_count(a_filter: str, name: str) -> Callable[[dict], None]:
    def check(a: dict) -> None:  # batch(n) and slice(n) make n lists, padded when fill_with is given
        if _is_int(a[name]):
            _check_size(a[name], f"{a_filter} with {name}={a[name]}")

    return check


def _check_replace(a: dict) -> None:
    text, old, new, count = str(a["s"]), str(a["old"]), str(a["new"]), a["count"]
    times = text.count(old)
    if _is_int(count) and count >= 0:
        times = min(times, count)
    _check_size(len(text) + times * len(new), "replace")


def _check_join(a: dict) -> None:
    items = a["value"] = list(a["value"])  # a generator would be spent by counting it
    _check_size(size(items) + len(str(a["d"])) * max(len(items) - 1, 0), "join")


def _check_format(a: dict) -> None:
    _check_printf(str(a["value"]), a["args"] or a["kwargs"])


def _check_sum(a: dict) -> None:
    if not isinstance(a["start"], int | float):  # sum(start=[]) would concatenate, quadratically
        raise SandboxLimit("sum adds numbers: its start must be a number")


FILTER_CHECKS: dict[str, Callable[[dict], None]] = {
    "center": _check_center,
    "indent": _check_indent,
    "batch": _check_count("batch", "linecount"),
    "slice": _check_count("slice", "slices"),
    "replace": _check_replace,
    "join": _check_join,
    "format": _check_format,
    "sum": _check_sum,
}


def _budgeted(name: str, original: Callable) -> Callable:
    check = FILTER_CHECKS.get(name)
    signature = inspect.signature(original) if check else None

    @wraps(original)  # keeps jinja_pass_arg, so Jinja still passes the context where it should
    def run(*args: Any, **kwargs: Any) -> Any:
        spend()
        if check is not None and signature is not None:  # both or neither
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            check(bound.arguments)
            args, kwargs = bound.args, bound.kwargs
        result = original(*args, **kwargs)
        spend(size(result))
        return result

    return run


class RuleSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with every costly operation checked and charged."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined)
        # lipsum(n), cycler, joiner and namespace: nothing a rule needs, and lipsum(10**9) is costly.
        self.globals = {"range": _safe_range, "dict": dict}
        self.filters = {name: _budgeted(name, f) for name, f in self.filters.items() if name != "urlize"}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        spend()
        _check_binop(operator, left, right)
        result = super().call_binop(context, operator, left, right)
        spend(size(result))
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        spend()
        result = super().call(__context, __obj, *args, **kwargs)
        spend(size(result))
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        spend()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        spend()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format is refused (is_safe_attribute): it pads to any width asked

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str | bytes) and attr in SIZING_STR_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, str | bytes) and attribute in SIZING_STR_METHODS:
            raise SandboxLimit(f"the str method {attribute!r} is not allowed: use the {attribute} filter")
        return super().unsafe_undefined(obj, attribute)


ENV = RuleSandbox()


def check_template(ast: nodes.Template) -> None:
    """Refuse what the sandbox does not bound: statements other than ``if`` (a loop's work is not
    bounded by the template's length), and constant parts too costly to compute. Run inside a
    budget: the constant parts are computed, through the same checks as a render."""
    for node in ast.find_all(nodes.Stmt):
        if not isinstance(node, ALLOWED_STATEMENTS):
            name = {"Assign": "set", "AssignBlock": "set"}.get(
                type(node).__name__, type(node).__name__.lower()
            )
            allowed = "a rule template is text with {{ expressions }} and {% if %}"
            raise SandboxLimit(f"{{% {name} %}} is not allowed: {allowed}")
    _refuse_costly_constants(ast)


class _NotConstant(Exception):
    pass


def _refuse_costly_constants(node: nodes.Node) -> None:
    try:
        _fold(node)
        return
    except _NotConstant:
        pass
    except SandboxLimit:
        raise
    except Exception:  # noqa: BLE001 - a constant that fails (1/0) fails at render, naming the rule
        return
    for child in node.iter_child_nodes():
        _refuse_costly_constants(child)


def _fold(node: nodes.Node) -> Any:
    """The value of a constant expression, computed through the sandbox's checks."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.List | nodes.Tuple):
        return [_fold(item) for item in node.items]
    if isinstance(node, nodes.BinExpr) and node.operator in ENV.binop_table:
        return ENV.call_binop(None, node.operator, _fold(node.left), _fold(node.right))
    if isinstance(node, nodes.UnaryExpr) and node.operator in ENV.unop_table:
        return ENV.unop_table[node.operator](_fold(node.node))
    if isinstance(node, nodes.Call | nodes.Filter) and (node.dyn_args or node.dyn_kwargs):
        raise _NotConstant
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "range":
        return _safe_range(*(_fold(arg) for arg in node.args))
    if isinstance(node, nodes.Filter) and node.node is not None and node.name in ENV.filters:
        run = ENV.filters[node.name]
        if hasattr(run, "jinja_pass_arg"):  # wants a context: not computed ahead
            raise _NotConstant
        # Jinja annotates a filter's kwargs as Pair; its parser makes Keyword (key: str), as for Call.
        keywords = cast("list[nodes.Keyword]", node.kwargs)
        kwargs = {pair.key: _fold(pair.value) for pair in keywords}
        return run(_fold(node.node), *(_fold(arg) for arg in node.args), **kwargs)
    raise _NotConstant
