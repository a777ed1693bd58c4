"""Jinja2 templates an operator writes and a server renders per device, in a bounded sandbox.

A template reaches only the variables it is given (plain JSON-like data): no attribute of any
Python object, no method, no file (no loader: no include, import or extends), no network.
It cannot make the server run without end or fill its memory: loops are counted against a
budget per render, every text or list an expression makes is bounded before it is made, the
output is bounded, and the constructs whose cost has no bound here (macros, call blocks,
recursive loops, blocks that capture output) are refused when the template is compiled.
Whatever goes wrong is a TemplateError naming the template's line.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, NoReturn

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.filters import FILTERS
from jinja2.runtime import LoopContext
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer

from .errors import SztpError

# The longest text a template renders, or any expression in it makes.
MAX_TEXT: Final = 1024 * 1024
# The most items a list an expression makes may hold, and loop iterations in one render.
MAX_ITEMS: Final = 100_000
MAX_ITERATIONS: Final = 100_000
# Integer powers beyond this many bits are refused (`2 ** 10 ** 9` would not end).
MAX_POWER_BITS: Final = 4096

# Constructs refused at compile time, and why (the message an operator reads).
_REFUSED: Final[Mapping[type[nodes.Node], str]] = {
    nodes.Macro: "macros are not allowed",
    nodes.CallBlock: "call blocks are not allowed",
    nodes.Include: "include is not allowed: a template reads no file",
    nodes.Import: "import is not allowed: a template reads no file",
    nodes.FromImport: "import is not allowed: a template reads no file",
    nodes.Extends: "extends is not allowed: a template reads no file",
    nodes.Block: "blocks are not allowed",
    nodes.AssignBlock: "{% set %}...{% endset %} blocks are not allowed; use {% set x = ... %}",
    nodes.FilterBlock: "{% filter %} blocks are not allowed; apply the filter to an expression",
}
# What a loop's `loop` variable offers (its other attributes are Python internals).
_LOOP_FIELDS: Final = frozenset(
    {
        "index",
        "index0",
        "revindex",
        "revindex0",
        "first",
        "last",
        "length",
        "previtem",
        "nextitem",
        "cycle",
        "changed",
    }
)
# The filters a template may use; each either keeps sizes as they are or is bounded below.
_PLAIN_FILTERS: Final = (
    "abs",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "filesizeformat",
    "first",
    "float",
    "int",
    "items",
    "last",
    "length",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "reject",
    "rejectattr",
    "reverse",
    "round",
    "select",
    "selectattr",
    "sort",
    "striptags",
    "title",
    "trim",
    "truncate",
    "unique",
    "upper",
    "urlencode",
    "wordcount",
)
_LOOP_FILTER: Final = "sandbox_loop_items"
_CONCAT_FILTER: Final = "sandbox_concat"


class TemplateError(SztpError):
    """A template that does not compile or render; `line` is the template's line, if known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.reason = message
        self.line = line


@dataclass
class _Budget:
    iterations: int = MAX_ITERATIONS


_budget: ContextVar[_Budget] = ContextVar("template_budget")


class BoundedTemplate:
    """A compiled template; `render` is safe to call from several threads at once."""

    def __init__(self, name: str, render: Callable[[Mapping[str, Any]], Iterator[str]]) -> None:
        self.name = name
        self._generate = render

    def render(self, variables: Mapping[str, Any]) -> str:
        token = _budget.set(_Budget())
        try:
            chunks: list[str] = []
            size = 0
            for chunk in self._generate(variables):
                size += len(chunk)
                if size > MAX_TEXT:
                    raise SecurityError(f"renders more than {MAX_TEXT} characters")
                chunks.append(chunk)
            return "".join(chunks)
        except TemplateError:
            raise
        except (JinjaTemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
            raise TemplateError(_reason(exc), _template_line(exc, self.name)) from None
        except RecursionError:
            raise TemplateError("nested too deeply", None) from None
        finally:
            _budget.reset(token)


def compile_template(source: str, name: str) -> BoundedTemplate:
    """`source` compiled in the sandbox; TemplateError (with its line) when it does not
    parse or uses a refused construct. `name` names it in Python's view of the code only."""
    try:
        tree = _ENVIRONMENT.parse(source, name=name)
    except TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error", exc.lineno) from None
    for refused, message in _REFUSED.items():
        for node in tree.find_all(refused):
            raise TemplateError(message, node.lineno)
    for loop in tree.find_all(nodes.For):
        if loop.recursive:
            raise TemplateError("recursive loops are not allowed", loop.lineno)
    bounded = _Bounding().visit(tree)
    try:
        code = _ENVIRONMENT.compile(bounded, name=name, filename=name)
    except TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error", exc.lineno) from None
    template = _ENVIRONMENT.template_class.from_code(_ENVIRONMENT, code, _ENVIRONMENT.globals)
    return BoundedTemplate(name, template.generate)


class _Bounding(NodeTransformer):
    """Counts each loop's items against the render's budget, and bounds what `~` makes
    (the one operator Jinja2 compiles without a hook)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(
            nodes.List(node.nodes, lineno=node.lineno),
            _CONCAT_FILTER,
            [],
            [],
            None,
            None,
            lineno=node.lineno,
        )


def _refuse(message: str) -> NoReturn:
    raise SecurityError(message)


def _size(value: Any, limit: int = MAX_TEXT) -> int:
    """About how many characters `value` takes as text, counted no further than `limit`."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        items: Iterable[Any] = (part for pair in value.items() for part in pair)
    elif isinstance(value, list | tuple):
        items = value
    else:
        return 24
    total = 2
    for item in items:
        total += _size(item, limit - total) + 2
        if total > limit:
            break
    return total


def _bounded_text(size: int, what: str) -> None:
    if size > MAX_TEXT:
        _refuse(f"{what} would make more than {MAX_TEXT} characters")


def _loop_items(value: Any) -> Iterator[Any]:
    budget = _budget.get()
    for item in value:
        budget.iterations -= 1
        if budget.iterations < 0:
            _refuse(f"loops run more than {MAX_ITERATIONS} times in one render")
        yield item


def _concat(parts: list[Any]) -> str:
    _bounded_text(sum(_size(part) for part in parts), "~")
    return "".join(map(str, parts))


def _join(value: Iterable[Any], separator: str = "") -> str:
    items = list(value)
    _bounded_text(sum(_size(item) for item in items) + len(separator) * len(items), "join")
    return str(separator).join(map(str, items))


def _replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text, old, new = str(value), str(old), str(new)
    found = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        found = min(found, count)
    _bounded_text(len(text) + found * max(len(new) - len(old), 0), "replace")
    return text.replace(old, new, -1 if count is None else count)


def _indent(value: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(value)
    pad = width if isinstance(width, str) else " " * min(max(int(width), 0), 64)
    _bounded_text(len(text) + (text.count("\n") + 1) * len(pad), "indent")
    return str(FILTERS["indent"](text, pad, first, blank))


def _tojson(value: Any, indent: int | None = None) -> str:
    _bounded_text(_size(value) * (2 if indent else 1), "tojson")
    return json.dumps(value, indent=indent, sort_keys=True)


def _string(value: Any) -> str:
    _bounded_text(_size(value), "string")
    return str(value)


def _escape(value: Any) -> str:
    # No autoescaping here: escape returns plain text, for configuration that is XML.
    _bounded_text(_size(value) * 6, "escape")
    return str(FILTERS["escape"](value))


def _sum(value: Iterable[Any], attribute: Any = None, start: int | float = 0) -> int | float:
    total = start
    for item in value:
        if not isinstance(item, int | float) or isinstance(item, bool):
            _refuse("sum adds numbers only")
        total += item
    return total


def _finalize(value: Any) -> Any:
    _bounded_text(_size(value), "an expression")
    return value


def _namespace(*args: Any, **kwargs: Any) -> Namespace:
    return Namespace(*args, **kwargs)


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_ITEMS:
        _refuse(f"range of more than {MAX_ITEMS} items")
    return numbers


class _Sandbox(SandboxedEnvironment):
    """Item lookup in plain data is all a template may do with the values it gets."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        return self._lookup(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        return self._lookup(obj, argument)

    def _lookup(self, obj: Any, key: Any) -> Any:
        if isinstance(obj, Undefined):
            return getattr(obj, str(key))  # StrictUndefined: names what is missing
        if isinstance(obj, Mapping):
            if key in obj:
                return obj[key]
            return self.undefined(f"{key!r} is undefined", obj=obj, name=key)
        if isinstance(obj, str | list | tuple) and isinstance(key, int | slice):
            try:
                return obj[key]
            except IndexError:
                return self.undefined(f"[{key}] is out of range", obj=obj, name=str(key))
        if isinstance(obj, LoopContext) and key in _LOOP_FIELDS:
            return getattr(obj, key)
        if isinstance(obj, Namespace) and isinstance(key, str):
            try:
                return getattr(obj, key)
            except AttributeError:
                return self.undefined(obj=obj, name=key)
        _refuse(f"{key!r} of a {type(obj).__name__} is not for templates: only data is")

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "%" and isinstance(left, str):
            _refuse("% formatting is not allowed; join text with ~")
        if operator_name == "+" and isinstance(left, str | list | tuple):
            limit = MAX_TEXT if isinstance(left, str) else MAX_ITEMS
            if _length(left) + _length(right) > limit:
                _refuse(f"+ would make more than {limit} characters or items")
        if operator_name == "*":
            sequence, times = (
                (left, right) if isinstance(left, str | list | tuple) else (right, left)
            )
            if isinstance(sequence, str | list | tuple) and isinstance(times, int):
                limit = MAX_TEXT if isinstance(sequence, str) else MAX_ITEMS
                if len(sequence) * times > limit:
                    _refuse(f"* would make more than {limit} characters or items")
        if (
            operator_name == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right > 0
            and abs(left).bit_length() * right > MAX_POWER_BITS
        ):
            _refuse(f"** would make a number of more than {MAX_POWER_BITS} bits")
        return _OPERATORS[operator_name](left, right)


def _length(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 0


_OPERATORS: Final[Mapping[str, Callable[[Any, Any], Any]]] = {
    "+": operator.add,
    "*": operator.mul,
    "**": operator.pow,
    "%": operator.mod,
}


def _environment() -> _Sandbox:
    environment = _Sandbox(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,  # a configuration file keeps its last newline
        finalize=_finalize,
        loader=None,
    )
    environment.globals.clear()
    environment.globals.update(range=_bounded_range, namespace=_namespace)
    environment.filters.clear()
    environment.filters.update({name: FILTERS[name] for name in _PLAIN_FILTERS})
    environment.filters.update(
        {
            "join": _join,
            "replace": _replace,
            "indent": _indent,
            "tojson": _tojson,
            "string": _string,
            "e": _escape,
            "escape": _escape,
            "sum": _sum,
            _LOOP_FILTER: _loop_items,
            _CONCAT_FILTER: _concat,
        }
    )
    return environment


def _reason(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message)


def _template_line(exc: BaseException, name: str) -> int | None:
    """The line of the template where `exc` was raised: the last frame of the traceback
    that Jinja2 maps to the template's source."""
    line: int | None = None
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return getattr(exc, "lineno", None) or line


_ENVIRONMENT: Final = _environment()
