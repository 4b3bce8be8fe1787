"""Pydantic's findings in the spec's words.

Pydantic reports in its own terms: `Input should be a valid number`, a regex pattern, `Unable to extract tag using
discriminator 'kind'`, paths through union members the user never wrote. `problems` turns each error into a
`Problem` at the path of the user's file that says what was expected (in TOML's words: a string, an array, a
table), what was found, and, for every closed vocabulary, the nearest allowed word. The vocabularies are read from
the models (their `Literal` values and the `kind` tags of their unions), so a new kind is known here at once.
"""

from __future__ import annotations

import datetime
import difflib
import json
import re
import types
import typing
from typing import Any

from pydantic import BaseModel

from ltspec.spec.errors import Problem
from ltspec.spec.models import Spec

_EXPECTED = {
    "bool_type": "true or false", "int_type": "a whole number", "int_from_float": "a whole number",
    "float_type": "a number", "string_type": "a string", "list_type": "an array", "tuple_type": "an array",
    "dict_type": "a table", "model_type": "a table", "model_attributes_type": "a table",
}
_BOUNDS = {"gt": "greater than", "ge": "at least", "lt": "less than", "le": "at most"}
_ALTERNATIVES = re.compile(r"^\^\((.*)\)\$$")
_WHOLE = "[0-9]+"


def problems(errors: list[dict], data: dict) -> list[Problem]:
    """One problem per wrong value: the type errors of a union's members (`bool | int | float | str`) merge."""
    found: dict[tuple, list[dict]] = {}
    for error in errors:
        found.setdefault(_user_path(error, data), []).append(error)
    return [_problem(path, group, data) for path, group in found.items()]


def _user_path(error: dict, data: Any) -> tuple:
    """The error's location in the user's file: union members and tags, which the file never names, dropped."""
    path, node, loc = [], data, error["loc"]
    for index, part in enumerate(loc):
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int) \
                and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        elif index == len(loc) - 1 and error["type"] == "missing":
            path.append(part)
    return tuple(path)


def _problem(path: tuple, group: list[dict], data: dict) -> Problem:
    error, kind = group[0], group[0]["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        fields = fields_at(path[:-1], data)
        close = difflib.get_close_matches(str(path[-1]), fields, n=1)
        return Problem(path, f"unknown key `{path[-1]}`", f"did you mean `{close[0]}`?" if close else
                       "allowed here: " + ", ".join(fields), at_key=True)
    if kind == "missing" and isinstance(path[-1], int):
        return Problem(path[:-1], f"has too few items: item {path[-1] + 1} is missing")
    if kind == "missing":
        return Problem(path, "required field is missing")
    if all(error["type"] in _EXPECTED for error in group):
        expected = _either(sorted({_EXPECTED[error["type"]] for error in group}, key=list(_EXPECTED.values()).index))
        return Problem(path, f"expected {expected}, found {found(value)}", _retype_hint(value, expected))
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        kinds = vocabulary(annotation_at(path, data))
        if kind == "union_tag_not_found":
            hint = f'add kind = "{kinds[0]}"' if kinds else ""
            return Problem(path, "needs a `kind`: one of " + _words(kinds), hint)
        tag = str(error["ctx"]["tag"])
        return Problem(path + ("kind",), f"unknown kind `{tag}`: expected one of {_words(kinds)}",
                       did_you_mean(tag, kinds))
    if kind == "literal_error":
        words = vocabulary(annotation_at(path, data))
        return Problem(path, f"expected one of {_words(words)}, found {found(value)}", did_you_mean(str(value), words))
    if kind == "string_pattern_mismatch":
        return _pattern_problem(path, error["ctx"]["pattern"], value, data)
    return Problem(path, _plain(error, value))


def _plain(error: dict, value: Any) -> str:
    """Range, size and the remaining checks, as a sentence about the value."""
    kind, ctx = error["type"], error.get("ctx", {})
    for bound, words in _BOUNDS.items():
        if bound in ctx and kind.endswith(("than", "than_equal")):
            return f"must be {words} {ctx[bound]}, found {found(value)}"
    if kind == "too_short" or kind == "string_too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else \
            f"needs at least {ctx['min_length']} items, found {found(value)}"
    if kind == "too_long":
        return f"has {ctx['actual_length']} items; at most {ctx['max_length']} are allowed"
    if kind == "string_too_long":
        return f"is {len(value)} characters long; at most {ctx['max_length']} are allowed"
    if kind == "finite_number":
        return f"must be a finite number, found {found(value)}"
    return error["msg"].replace("Input should be", "expected") + f", found {found(value)}"


def _pattern_problem(path: tuple, pattern: str, value: Any, data: dict) -> Problem:
    """A pattern of alternatives (`^(init|reinit|rewind@[0-9]+)$`) is a vocabulary; any other is described by
    its field's description."""
    alternatives = _ALTERNATIVES.match(pattern)
    if alternatives:
        words = [word.replace(_WHOLE, "k") for word in alternatives.group(1).split("|")]
        note = " (k a whole number)" if any(_WHOLE in word for word in alternatives.group(1).split("|")) else ""
        return Problem(path, f"expected one of {_words(words)}{note}, found {found(value)}",
                       did_you_mean(str(value), words))
    field = field_at(path, data)
    described = field.description if field is not None and field.description else "the form this field takes"
    return Problem(path, f"{found(value)} is not allowed here; expected {described[0].lower()}{described[1:]}")


def _either(words: list[str]) -> str:
    if len(words) < 2:
        return words[0] if words else "what the schema allows"
    return ", ".join(words[:-1]) + " or " + words[-1]


def _words(words) -> str:
    return _either([f"`{word}`" for word in words])


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, [str(choice) for choice in choices], n=1)
    return f"did you mean `{close[0]}`?" if close else ""


def found(value: Any) -> str:
    """A value as TOML would call it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value)
        return "the string " + (text if len(text) < 60 else text[:56] + '..."')
    if isinstance(value, int):
        return f"the whole number {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, (datetime.date, datetime.time)):
        return f"the date-time {value}"
    if isinstance(value, list):
        return "an empty array" if not value else f"an array of {len(value)}"
    if isinstance(value, dict):
        return "a table"
    return "nothing" if value is None else type(value).__name__


def _retype_hint(value: Any, expected: str) -> str:
    """`epochs = "12"` is a quoted number: say how to write it."""
    if not isinstance(value, str):
        return 'put it in quotes' if expected == "a string" else ""
    text = value.strip().lower()
    if "true or false" in expected and text in ("true", "false"):
        return f"write {text} without quotes"
    try:
        number = int(text) if "whole number" in expected else float(text) if "number" in expected else None
    except ValueError:
        return ""
    return f"write {number} without quotes" if number is not None else ""


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def members(annotation: Any) -> tuple:
    annotation = _unwrap(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(_unwrap(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    return (annotation,)


def vocabulary(annotation: Any) -> list:
    """The closed set of words an annotation allows: its Literal values, or the `kind` tags of a union's models,
    looking through lists and optionals."""
    words: list = []
    for member in members(annotation):
        origin = typing.get_origin(member)
        if origin is typing.Literal:
            words += [word for word in typing.get_args(member) if word not in words]
        elif origin in (list, tuple):
            words += [word for word in vocabulary(typing.get_args(member)[0]) if word not in words]
        elif isinstance(member, type) and issubclass(member, BaseModel) and "kind" in member.model_fields:
            words += [word for word in vocabulary(member.model_fields["kind"].annotation) if word not in words]
    return words


def annotation_at(path: tuple, data: Any) -> Any:
    """The annotation describing `path` in the spec tree (None off the tree), union members picked by `kind`."""
    node: Any = Spec
    for part in path:
        node = _pick(node, data)
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(part))
            if field is None:
                return None
            node = field.annotation
        elif typing.get_origin(node) is dict and isinstance(part, str):
            node = typing.get_args(node)[1]
        elif typing.get_origin(node) in (list, tuple) and isinstance(part, int):
            node = typing.get_args(node)[0]
        else:
            return None
        data = value_at(data, (part,))
    return node


def model_at(path: tuple, data: Any) -> type[BaseModel] | None:
    node = _pick(annotation_at(path, data), value_at(data, path))
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None


def entry_at(path: tuple, data: Any) -> tuple | None:
    """The prefix of `path` naming an entry of a table of named things (`masks.imp`, `arms.lottery`, a sweep
    entry), or None if the path goes through none."""
    for cut in range(1, len(path) + 1):
        if typing.get_origin(_unwrap(annotation_at(path[:cut - 1], data))) is dict:
            return path[:cut]
    return None


def field_at(path: tuple, data: Any):
    """The pydantic field a path ends in, or None (a list element, a key off the tree)."""
    model = model_at(path[:-1], data) if path else None
    return model.model_fields.get(str(path[-1])) if model is not None else None


def fields_at(path: tuple, data: Any) -> list[str]:
    model = model_at(path, data)
    return list(model.model_fields) if model else []


def value_at(data: Any, path: tuple) -> Any:
    """The value at `path` in parsed TOML, or None."""
    for part in path:
        data = data.get(part) if isinstance(data, dict) else \
            data[part] if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data) else None
    return data


def _pick(annotation: Any, data: Any) -> Any:
    options = members(annotation)
    if len(options) == 1:
        return options[0]
    kind = data.get("kind") if isinstance(data, dict) else None
    for member in options:
        if isinstance(member, type) and issubclass(member, BaseModel) and "kind" in member.model_fields:
            allowed = typing.get_args(member.model_fields["kind"].annotation)
            if kind in allowed or kind is None and member.model_fields["kind"].default in allowed:
                return member
    return options[0]
