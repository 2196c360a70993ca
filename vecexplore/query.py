"""The selection language of ``export --where`` and the app's query box: conditions on image columns.

An expression is Python syntax over the image table's columns, evaluated for
every image at once::

    error_rate > 0.5 and split == 'val'
    fn >= 2 or (brightness < 0.2 and not readable)
    cluster in [3, 5] and 'hard' in tags
    file_name.startswith('night/')  # not allowed: no calls, no attributes

Allowed: column names; numbers, strings, True / False / None and lists or
tuples of them; ``and``, ``or``, ``not`` (also ``&``, ``|``, ``~``);
comparisons ``== != < <= > >=`` (chained too), ``in`` / ``not in`` a list;
``+ - * / %`` and unary minus. ``'name' in tags`` tests an image's tags (see
:mod:`vecexplore.selections`). Nothing else parses: no function calls, no
attribute access, no subscripts, no names other than columns, so a query
cannot run code (the app takes queries from the page).

:func:`evaluate` returns an (N,) bool mask; every mistake is a
:class:`~vecexplore.errors.ConfigError` that names it and lists the columns.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping

import numpy as np

from vecexplore.errors import ConfigError

#: Longest expression accepted (a query is a line, not a program).
MAX_LENGTH = 2000
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.Mod: operator.mod}


class _Error(Exception):
    """A mistake in the expression (turned into a ConfigError with the context)."""


def evaluate(expression: str, columns: Mapping[str, np.ndarray], *, n: int,
             tags: Mapping[str, np.ndarray] | None = None, what: str = "query") -> np.ndarray:
    """The (n,) bool mask of the images for which ``expression`` holds.

    Args:
        expression: the condition (see the module docstring).
        columns: name → (n,) array; strings as object or unicode arrays.
        n: the number of images.
        tags: tag name → sorted image_idx carrying it (for ``'x' in tags``).
        what: how the error messages name the expression ("--where", "query").

    Raises:
        ConfigError: a syntax error, an unknown column, a construct that is not
            allowed, a comparison of incompatible types, or a result that is not
            one true/false per image.
    """
    text = (expression or "").strip()
    if not text:
        raise ConfigError(f"{what}: empty condition; {_help(columns)}")
    if len(text) > MAX_LENGTH:
        raise ConfigError(f"{what}: longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"{what} {text!r}: not a valid condition ({exc.msg} at column {exc.offset}); "
                          f"{_help(columns)}") from None
    try:
        value = _Eval(columns, n, tags or {}).eval(tree.body)
        mask = _as_mask(value, n)
    except _Error as exc:
        raise ConfigError(f"{what} {text!r}: {exc}; {_help(columns)}") from None
    return mask


def _help(columns: Mapping[str, np.ndarray]) -> str:
    return "columns: " + ", ".join(sorted(columns)) + ", tags (as in 'hard' in tags)"


def _as_mask(value, n: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype != bool:
        raise _Error(f"is not a true/false condition (it gives {arr.dtype} values)")
    if arr.shape == ():
        return np.full(n, bool(arr))
    if arr.shape != (n,):
        raise _Error("is not one true/false per image")
    return arr


class _Eval:
    def __init__(self, columns, n: int, tags):
        self.columns, self.n, self.tags = columns, n, tags

    def eval(self, node):
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise _Error(f"{_describe(node)} is not allowed (only columns, constants, comparisons, and / or / not, "
                         "arithmetic)")
        return method(node)

    # -- leaves

    def _Constant(self, node):
        if isinstance(node.value, (bool, int, float, str)) or node.value is None:
            return node.value
        raise _Error(f"the constant {node.value!r} is not allowed")

    def _Name(self, node):
        if node.id == "tags":
            raise _Error("'tags' is used as: 'name' in tags")
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        if node.id not in self.columns:
            raise _Error(f"unknown column {node.id!r}")
        return np.asarray(self.columns[node.id])

    def _List(self, node):
        values = [self.eval(e) for e in node.elts]
        if any(isinstance(v, np.ndarray) for v in values):
            raise _Error("a list may hold constants only")
        return values

    _Tuple = _List

    # -- operators

    def _BoolOp(self, node):
        values = [_as_mask(self.eval(v), self.n) for v in node.values]
        out = values[0]
        for v in values[1:]:
            out = (out & v) if isinstance(node.op, ast.And) else (out | v)
        return out

    def _UnaryOp(self, node):
        value = self.eval(node.operand)
        if isinstance(node.op, (ast.Not, ast.Invert)):
            return ~_as_mask(value, self.n)
        if isinstance(node.op, ast.USub):
            return self._numeric(lambda v: -v, value)
        if isinstance(node.op, ast.UAdd):
            return value
        raise _Error(f"{_describe(node)} is not allowed")

    def _BinOp(self, node):
        if isinstance(node.op, (ast.BitAnd, ast.BitOr)):  # pandas' & and | spellings
            a, b = _as_mask(self.eval(node.left), self.n), _as_mask(self.eval(node.right), self.n)
            return (a & b) if isinstance(node.op, ast.BitAnd) else (a | b)
        op = _ARITH.get(type(node.op))
        if op is None:
            raise _Error(f"the operator {type(node.op).__name__} is not allowed")
        left, right = self.eval(node.left), self.eval(node.right)
        try:
            with np.errstate(divide="ignore", invalid="ignore"):
                return op(_numeric_array(left), _numeric_array(right))
        except (TypeError, ValueError):
            raise _Error("arithmetic needs numbers") from None

    def _numeric(self, fn, value):
        try:
            return fn(_numeric_array(value))
        except (TypeError, ValueError):
            raise _Error("arithmetic needs numbers") from None

    def _Compare(self, node):
        out = np.ones(self.n, bool)
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            out &= _as_mask(self._compare_one(left, op, right), self.n)
            left = right
        return out

    def _compare_one(self, left_node, op, right_node):
        if isinstance(op, (ast.In, ast.NotIn)):
            if isinstance(right_node, ast.Name) and right_node.id == "tags":
                tag = self.eval(left_node)
                if not isinstance(tag, str):
                    raise _Error("'... in tags' needs a tag name in quotes")
                mask = np.zeros(self.n, bool)
                mask[np.asarray(self.tags.get(tag, []), np.int64)] = True
                return mask if isinstance(op, ast.In) else ~mask
            left, right = self.eval(left_node), self.eval(right_node)
            if not isinstance(right, list):
                raise _Error("'in' needs a list of constants on its right, as in cluster in [1, 2]")
            mask = np.isin(np.asarray(left, dtype=object), np.asarray(right, dtype=object))
            return mask if isinstance(op, ast.In) else ~mask
        fn = _COMPARE.get(type(op))
        if fn is None:
            raise _Error(f"the comparison {type(op).__name__} is not allowed")
        left, right = self.eval(left_node), self.eval(right_node)
        if isinstance(left, list) or isinstance(right, list):
            raise _Error("a list can only follow 'in'")
        return _compare(fn, left, right)


def _numeric_array(value):
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError("not numeric")
        return value.astype(np.float64) if value.dtype.kind == "b" else value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("not numeric")
    return value


def _kind(value) -> str:
    """"num", "str", "bool" or "none" for a constant or a column."""
    if value is None:
        return "none"
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "b":
            return "bool"
        if value.dtype.kind in "iuf":
            return "num"
        return "str"
    if isinstance(value, bool):
        return "bool"
    return "num" if isinstance(value, (int, float)) else "str"


def _compare(fn, left, right):
    kl, kr = _kind(left), _kind(right)
    if "none" in (kl, kr):
        if fn not in (operator.eq, operator.ne):
            raise _Error("None can only be compared with == or !=")
        other = right if kl == "none" else left
        if not isinstance(other, np.ndarray):
            return np.asarray(fn(other, None))
        missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) or v == "" for v in other.tolist()])
        return missing if fn is operator.eq else ~missing
    if {kl, kr} == {"num", "bool"}:
        pass  # True == 1, as in Python
    elif kl != kr:
        raise _Error(f"cannot compare {kl} with {kr}")
    if kl == "str":
        return fn(np.asarray(left, dtype=object), np.asarray(right, dtype=object))
    with np.errstate(invalid="ignore"):
        return fn(np.asarray(left), np.asarray(right))


def _describe(node) -> str:
    names = {ast.Call: "a function call", ast.Attribute: "attribute access (.)", ast.Subscript: "indexing ([])",
             ast.Lambda: "lambda", ast.IfExp: "an if-expression", ast.NamedExpr: "an assignment",
             ast.JoinedStr: "an f-string", ast.Dict: "a dict", ast.Set: "a set"}
    return names.get(type(node), type(node).__name__)


__all__ = ["MAX_LENGTH", "evaluate"]
