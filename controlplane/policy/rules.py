"""The policy rule language: YAML in, validated rules out, with line numbers on every problem."""

from __future__ import annotations

import functools
import re
import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import yaml
from jinja2 import TemplateError, Undefined
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from controlplane.actions.plans import AGENT_KINDS, PLANS
from controlplane.policy import sandbox

# What the engine can carry out: its own plans, and the steps agents take.
KNOWN_KINDS = frozenset(PLANS) | AGENT_KINDS
TRIGGERS = ("event", "metric", "absence")
DAY_S = 86400
MAX_DOCUMENT = 256 * 1024  # characters of YAML: the API, the console and the stored text
MAX_DEPTH = 50  # nesting of YAML collections
# Control characters other than tab, newline and carriage return: PostgreSQL refuses NUL in text,
# and none has a use in an action's target or parameters.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

_env = sandbox.ENV
_QUOTED = re.compile(r"'(.*?)'")
_SINGLE_EXPRESSION = re.compile(r"^\{\{-?(?P<expr>.*?)-?\}\}$", re.DOTALL)


class RuleError(Exception):
    """Rules that cannot be used; ``problems`` lists each as {line, path, message}."""

    def __init__(self, problems: list[dict]) -> None:
        self.problems = problems
        super().__init__("\n".join(_describe(p) for p in problems))


def _describe(problem: dict) -> str:
    where = [f"line {problem['line']}"] if problem["line"] is not None else []
    return ": ".join([*where, *([problem["path"]] if problem["path"] else []), problem["message"]])


def _rule_name(value: str) -> str:
    if not value:
        raise ValueError("name must not be empty")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,99}", value):
        raise ValueError(
            f"name must be 1-100 of a-z 0-9 _ . - starting with a letter or digit (got {value!r})"
        )
    return value


def _action_kind(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_.]*", value) or value not in KNOWN_KINDS:
        raise ValueError(f"unknown action kind {value!r}; known: {', '.join(sorted(KNOWN_KINDS))}")
    return value


def _templates_compile(value: Any, at: tuple = ()) -> Any:
    if isinstance(value, str):
        # `at` carries the nested key into the error's path, so the line points at the string itself.
        if control := _CONTROL.search(value):
            error: dict[str, Any] = {
                "error": f"control character U+{ord(control[0]):04X} in a template",
                "at": at,
            }
            raise PydanticCustomError("template", "{error}: remove it", error)
        try:
            with sandbox.budget():  # the template's constant parts are computed: as in a render
                sandbox.check_template(_env.parse(value))
        except TemplateError as exc:
            error = {"error": exc.message, "at": at}
            raise PydanticCustomError("template", "template does not compile: {error}", error) from None
        except sandbox.SandboxLimit as exc:
            error = {"error": str(exc), "at": at}
            raise PydanticCustomError("template", "template refused: {error}", error) from None
        except RecursionError:
            error = {"error": "nested too deeply", "at": at}
            raise PydanticCustomError("template", "template refused: {error}", error) from None
    elif isinstance(value, dict | list):
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            _templates_compile(item, (*at, key))
    return value


Duration = Annotated[float, Field(ge=0, le=DAY_S)]
AnyService = Annotated[str | None, AfterValidator(lambda v: None if v == "*" else v)]  # one spelling of "any"
Text = Annotated[str, Field(min_length=1)]


class _Closed(BaseModel):
    # strict: `dry_run: "no"` or `threshold: true` in a playbook is a mistake, not something to coerce.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class EventTrigger(_Closed):
    type: Text
    service: AnyService = None
    status: str | None = None
    match: dict[str, Any] | None = None  # equality on keys of the event's details
    for_s: Duration = 0


class MetricTrigger(_Closed):
    name: Text
    service: AnyService = None
    tags: dict[str, str] | None = None
    agg: Literal["avg", "max", "min", "rate"] = "avg"
    window_s: Annotated[float, Field(gt=0, le=DAY_S)] = 60
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    threshold: float
    for_s: Duration = 0  # how long the condition must hold


class AbsenceTrigger(_Closed):
    metric: str | None = None  # None: any metric of the service counts as a sign of life
    service: Text
    for_s: Annotated[float, Field(gt=0)]


class Trigger(_Closed):
    event: EventTrigger | None = None
    metric: MetricTrigger | None = None
    absence: AbsenceTrigger | None = None

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [key for key in data if key in TRIGGERS and data[key] is not None]
            if len(given) != 1:
                got = " and ".join(given) or "none"
                raise ValueError(f"a trigger needs exactly one of {', '.join(TRIGGERS)} (got {got})")
        return data


class Action(_Closed):
    kind: Annotated[str, AfterValidator(_action_kind)]
    target: Annotated[str, AfterValidator(_templates_compile)]
    # String values anywhere inside are templates.
    params: Annotated[dict[str, Any], AfterValidator(_templates_compile)] = Field(default_factory=dict)


class Rule(_Closed):
    name: Annotated[str, AfterValidator(_rule_name)]
    description: str | None = None
    trigger: Trigger
    action: Action
    cooldown_s: Annotated[float, Field(ge=0)] = 60
    max_concurrency: Annotated[int, Field(ge=1)] = 1  # actions of this rule not yet finished
    dry_run: bool = False
    enabled: bool = True


def render(value: Any, context: dict[str, Any], *, rule: str = "?", path: str = "") -> Any:
    """Fill in templates in ``value``, recursing into dicts and lists.

    A string that is exactly one ``{{ expr }}`` yields the expression's own value (a list stays a
    list, a number a number); any other string renders to a string. Undefined names raise RuleError.
    """
    if isinstance(value, dict):
        return {key: render(item, context, rule=rule, path=f"{path}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context, rule=rule, path=f"{path}[{i}]") for i, item in enumerate(value)]
    if not isinstance(value, str):
        return value
    try:
        with sandbox.budget():
            single = _SINGLE_EXPRESSION.match(value)
            if single and "{{" not in single["expr"] and "}}" not in single["expr"]:
                result = _expression(single["expr"])(**context)
                result = str(result) if isinstance(result, Undefined) else result  # str() raises the error
            else:
                result = _template(value).render(context)
            if sandbox.size(result) > sandbox.MAX_SIZE:
                raise sandbox.SandboxLimit(f"the result is over {sandbox.MAX_SIZE:,} characters or items")
            return result
    except Exception as exc:  # an undefined name, 1/0, a bad filter, a sandbox limit: the rule's to fix
        message = f"rule {rule!r}: cannot render {value!r}: {exc}"
        raise RuleError([{"line": None, "path": path, "message": message}]) from exc


# Compiling is the costly part of rendering (about a millisecond a string); the strings are the
# rules' own, so a small cache serves every firing (and every step of a dry-run preview).
@functools.lru_cache(maxsize=1024)
def _expression(source: str) -> Any:
    return _env.compile_expression(source, undefined_to_none=False)


@functools.lru_cache(maxsize=1024)
def _template(source: str) -> Any:
    # Checked again here: a rule saved before the checks existed must not run a loop now.
    sandbox.check_template(_env.parse(source))
    return _env.from_string(source)


def parse_rules(text: str) -> list[Rule]:
    """Rules from a YAML list (or a mapping ``{rules: [...]}``); RuleError lists every problem found.

    An empty document means no rules.
    """
    if len(text) > MAX_DOCUMENT:
        message = f"the document is {len(text):,} characters; at most {MAX_DOCUMENT:,}"
        raise RuleError([{"line": None, "path": "", "message": message}])
    root, data = _load_yaml(text)
    if data is None:
        return []
    assert root is not None  # data came from a node
    node: yaml.Node | None = root
    if isinstance(data, dict) and "rules" in data:
        if extra := sorted(str(key) for key in data if key != "rules"):
            message = f"unknown top-level key {extra[0]!r}; allowed: rules"
            raise RuleError([{"line": _line(root, (extra[0],)), "path": extra[0], "message": message}])
        data, node = data["rules"], _child(root, "rules")
    assert node is not None  # the node of the data just read
    if not isinstance(data, list):
        message = f"expected a list of rules, or a mapping with a 'rules' list (got {reprlib.repr(data)})"
        raise RuleError([_problem(node, (), message)])

    rules: list[Rule] = []
    problems: list[dict] = []
    first_seen: dict[str, int] = {}
    for index, item in enumerate(data):
        try:
            rules.append(Rule.model_validate(item))
        except ValidationError as exc:
            for error in exc.errors():
                loc = (index, *error["loc"], *error.get("ctx", {}).get("at", ()))
                problems.append(_problem(node, loc, _message(error)))
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name in first_seen:
            message = f"duplicate rule name {name!r} (first at line {first_seen[name]})"
            problems.append(_problem(node, (index, "name"), message))
        elif isinstance(name, str):
            first_seen[name] = _line(node, (index, "name"))
    if problems:
        raise RuleError(problems)
    return rules


def dump_rules(rules: list[Rule]) -> list[dict]:
    """JSON-able rules, for storing."""
    return [rule.model_dump(mode="json", exclude_none=True) for rule in rules]


def load_default_rules() -> tuple[str, list[Rule]]:
    """The shipped playbooks: the file's text and its parsed rules."""
    text = (Path(__file__).parent / "default_rules.yaml").read_text(encoding="utf-8")
    return text, parse_rules(text)


class _Refused(yaml.MarkedYAMLError):
    """YAML that parses but that rules do not accept."""


def _load_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    # libyaml (CSafeLoader): the pure-Python loader takes seconds over a 256 KB document, and its
    # scanner's work per token grows with the nesting. One parse gives both the node tree (for
    # line numbers) and the data, after a pass over the events refuses what rules do not need.
    try:
        _refuse_aliases_and_depth(text)
        loader = yaml.CSafeLoader(text)
        try:
            root = loader.get_single_node()
            return root, loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as exc:
        line: int | None = (
            text.encode("utf-8", "replace")[: exc.position].count(b"\n") + 1
        )  # libyaml counts bytes
        message = f"control character U+{exc.character:04X} is not allowed in YAML: remove it"
        raise RuleError([{"line": line, "path": "", "message": message}]) from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        prefix = "" if isinstance(exc, _Refused) else "YAML syntax error: "
        raise RuleError([{"line": line, "path": "", "message": f"{prefix}{exc.problem}"}]) from None


def _mark(event: yaml.Event) -> yaml.Mark | None:
    # CSafeLoader's events carry yaml._yaml.Mark, which MarkedYAMLError reads as it reads yaml.Mark.
    return cast("yaml.Mark | None", event.start_mark)


def _refuse_aliases_and_depth(text: str) -> None:
    """Anchors and aliases are refused: a few hundred bytes of aliases expand to gigabytes (the
    "billion laughs"), and rules have no need for them. Nesting is capped: composing recurses."""
    loader, depth = yaml.CSafeLoader(text), 0
    try:
        while (event := loader.get_event()) is not None:
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                problem = "anchors and aliases (&name, *name) are not allowed in rules: write the value out"
                raise _Refused(problem=problem, problem_mark=_mark(event))
            depth += isinstance(event, yaml.CollectionStartEvent) - isinstance(event, yaml.CollectionEndEvent)
            if depth > MAX_DEPTH:
                raise _Refused(problem=f"nested over {MAX_DEPTH} levels deep", problem_mark=_mark(event))
    finally:
        loader.dispose()


def _message(error: ErrorDetails) -> str:
    kind, ctx, loc = error["type"], error.get("ctx", {}), error["loc"]
    name, got = str(loc[-1]) if loc else "a rule", f" (got {reprlib.repr(error['input'])})"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    expected = {"int": "a whole number", "float": "a finite number", "finite": "a finite number"}
    expected |= {"bool": "true or false", "string": "a string", "dict": "a mapping", "model": "a mapping"}
    if kind == "missing":
        return f"missing required key {name!r}"
    if kind == "extra_forbidden":
        return f"unknown key {name!r}; allowed: {', '.join(_model_at(loc[:-1]).model_fields)}"
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "literal_error":  # pydantic quotes each choice: "'>', '>=' or '<'"
        return f"{name} must be one of {', '.join(_QUOTED.findall(ctx['expected']))}"
    if kind == "template":
        return error["msg"]
    if kind in bounds:
        return f"{name} must be {bounds[kind]} {next(iter(ctx.values())):g}{got}"
    if kind == "string_too_short":
        return f"{name} must not be empty"
    if kind.split("_")[0] in expected:
        return f"{name} must be {expected[kind.split('_')[0]]}{got}"
    return f"{name}: {error['msg']}"


def _model_at(loc: tuple) -> type[BaseModel]:
    model: type[BaseModel] = Rule
    for part in loc:  # through `X | None` to X
        annotation = model.model_fields[part].annotation
        model = next(t for t in (annotation, *getattr(annotation, "__args__", ())) if isinstance(t, type))
    return model


def _problem(node: yaml.Node, loc: tuple, message: str) -> dict:
    path = "rules" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    return {"line": _line(node, loc), "path": path, "message": message}


def _child(node: yaml.Node, part: Any) -> yaml.Node | None:
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]
    if isinstance(node, yaml.MappingNode):
        return next((value for key, value in node.value if key.value == str(part)), None)
    return None


def _line(node: yaml.Node, loc: tuple) -> int:
    """1-based line of the node at ``loc``, or of the deepest one that exists (a missing key's parent)."""
    for part in loc:
        if (child := _child(node, part)) is None:
            break
        node = child
    return node.start_mark.line + 1
