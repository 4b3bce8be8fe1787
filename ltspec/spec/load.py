"""Reading a spec file: TOML, then pydantic, then the cross-field checks, once per sweep point.

Everything that can go wrong with a user's file (missing, a directory, not UTF-8, empty, bad TOML, a wrong value
in one sweep point) ends as one `SpecError` listing every problem with its file:line:column, so the CLI can print
it and exit 2 without a traceback.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ltspec import architectures, masks, plugins
from ltspec.datasets import DATASETS
from ltspec.spec.checks import check
from ltspec.spec.errors import Problem, SpecError, key_positions, locate
from ltspec.spec.models import Spec

UNSWEEPABLE = ("schema_version", "name", "description", "seeds", "sweep", "report", "tracking", "storage")


@dataclass(frozen=True)
class SweepPoint:
    """One point of the sweep product: the values it sets, and the spec with them applied."""

    values: tuple[tuple[str, Any], ...]
    spec: Spec


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec file: every sweep point, each a complete `Spec`."""

    path: Path
    data: dict
    points: tuple[SweepPoint, ...]

    @property
    def spec(self) -> Spec:
        """The settings common to all points (name, tracking, storage) are read from the first."""
        return self.points[0].spec

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_spec(path: str | Path) -> LoadedSpec:
    """Read, validate and expand a spec file; raises `SpecError` on any problem."""
    path = Path(path)
    source = _read(path)
    return parse_spec(source, path)


def _read(path: Path) -> str:
    def fail(message: str, hint: str = "") -> SpecError:
        return SpecError(path, [Problem((), message, hint)])

    if not path.exists():
        raise fail("no such file", "check the path; shipped specs live in specs/")
    if path.is_dir():
        raise fail("is a directory, not a spec file", "name a .toml file inside it")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise fail(f"cannot be read: {error.strerror}") from None
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise SpecError(path, [Problem((), f"is not UTF-8 text (byte {raw[error.start]:#04x})",
                                       "save the file as UTF-8", line, 1)]) from None
    if not source.strip():
        raise fail("is empty", "start from specs/quickstart.toml")
    return source


def parse_spec(source: str, path: str | Path = "<spec>") -> LoadedSpec:
    """Validate TOML text as a spec; `path` is only used in messages."""
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as error:
        where = re.search(r"\(at line (\d+), column (\d+)\)", str(error))
        message = re.sub(r"\s*\(at line.*\)", "", str(error))
        line, column = (int(where.group(1)), int(where.group(2))) if where else (None, None)
        raise SpecError(path, [Problem((), f"TOML syntax error: {message}", "", line, column)]) from None
    positions = key_positions(source)
    _load_plugins_if_named(data, path)
    problems = _sweep_problems(data)
    points: list[SweepPoint] = []
    sweep = data.get("sweep", {})
    if problems:  # the sweep cannot be expanded; still report what is wrong with the rest of the spec
        found = _validate({**data, "sweep": {}})
        problems += [] if isinstance(found, Spec) else found
    else:
        for values in _sweep_product(sweep if isinstance(sweep, dict) else {}):
            point_data = _apply(data, values)
            found = _validate(point_data)
            if isinstance(found, Spec):
                points.append(SweepPoint(values, found))
                continue
            problems += [_blame_sweep(problem, values) for problem in found if problem not in problems]
    if problems:
        unique = list(dict.fromkeys(locate(problem, positions) for problem in problems))
        raise SpecError(path, unique)
    return LoadedSpec(Path(path), data, tuple(points))


def _load_plugins_if_named(data: dict, path: str | Path) -> None:
    """Register the installed plugins when the spec names a model, dataset or mask kind that is not built in."""
    tables = [data.get(name) if isinstance(data.get(name), dict) else {} for name in ("model", "data", "masks")]
    kinds = {table.get("kind") for table in tables[2].values() if isinstance(table, dict)}
    if (tables[0].get("arch") in (None, *architectures.TABLE) and tables[1].get("dataset") in (None, *DATASETS)
            and kinds <= {None, *masks.REGISTRY}):
        return
    try:
        plugins.load()
    except plugins.PluginError as error:
        raise SpecError(path, [Problem((), str(error), "fix the plugin, or uninstall its package")]) from None


def _validate(data: dict) -> Spec | list[Problem]:
    """The spec, or every problem: pydantic's, and the cross-field ones that can still be checked.

    Cross-field checks need a typed spec, so after type errors they run on a copy without the offending keys
    (defaults take their place); a user then sees a misspelt key and a milestone past the last epoch at once.
    """
    try:
        spec = Spec.model_validate(data)
    except ValidationError as error:
        problems = [_from_pydantic(item, data) for item in error.errors()]
        pruned = _without(data, [problem.path for problem in problems])
        try:
            repaired = Spec.model_validate(pruned) if pruned is not None else None
        except ValidationError:
            return problems
        return problems + check(repaired) if repaired is not None else problems
    return check(spec) or spec


def _without(data: dict, paths: list[tuple]) -> dict | None:
    """A copy of the data with the values at `paths` removed; None when one is a whole table (a mask generator,
    an arm), whose absence would only raise problems the user does not have."""
    pruned = copy.deepcopy(data)
    for path in paths:
        node = pruned
        for part in path[:-1]:
            node = node[part] if isinstance(node, (dict, list)) and _has(node, part) else None
        if isinstance(node, dict) and path[-1] in node:
            if isinstance(node[path[-1]], dict):
                return None
            del node[path[-1]]
    return pruned


def _has(node, part) -> bool:
    return part in node if isinstance(node, dict) else isinstance(part, int) and -len(node) <= part < len(node)


def _from_pydantic(error: dict, data: dict) -> Problem:
    """Turn one pydantic error into a Problem whose path follows the user's file (union tags dropped)."""
    path, node = [], data
    for index, part in enumerate(error["loc"]):
        last = index == len(error["loc"]) - 1
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int):
            node = node[part]
            path.append(part)
        elif last:
            path.append(part)
    found = error.get("input")
    if error["type"] == "extra_forbidden":
        fields = _fields_at(tuple(path[:-1]), data)
        hint = difflib.get_close_matches(str(path[-1]), fields, n=1)
        return Problem(tuple(path), f"unknown key `{path[-1]}`",
                       f"did you mean `{hint[0]}`?" if hint else "allowed here: " + ", ".join(fields))
    if error["type"] == "missing":
        return Problem(tuple(path), "required field is missing")
    return Problem(tuple(path), f"{error['msg']}; found {_show(found)}")


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _members(annotation: Any) -> tuple:
    annotation = _unwrap(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(_unwrap(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    return (annotation,)


def _model_at(path: tuple, data: Any) -> type[BaseModel] | None:
    """The model class describing `path` in the spec tree, picking union members by the data's `kind`."""
    node: Any = Spec
    for part in path:
        node = _pick(node, data)
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(part))
            if field is None:
                return None
            node = field.annotation
        elif typing.get_origin(node) is dict and isinstance(data, dict) and part in data:
            node = typing.get_args(node)[1]
        elif typing.get_origin(node) in (list, tuple) and isinstance(part, int):
            node = typing.get_args(node)[0]
        else:
            return None
        data = data.get(part) if isinstance(data, dict) else (data[part] if isinstance(data, list) else None)
    node = _pick(node, data)
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None


def _pick(annotation: Any, data: Any) -> Any:
    members = _members(annotation)
    if len(members) == 1:
        return members[0]
    kind = data.get("kind") if isinstance(data, dict) else None
    for member in members:
        if isinstance(member, type) and issubclass(member, BaseModel) and "kind" in member.model_fields:
            allowed = typing.get_args(member.model_fields["kind"].annotation)
            if kind in allowed or kind is None and member.model_fields["kind"].default in allowed:
                return member
    return members[0]


def _fields_at(path: tuple, data: dict) -> list[str]:
    model = _model_at(path, data)
    return list(model.model_fields) if model else []


def _sweep_problems(data: dict) -> list[Problem]:
    sweep = data.get("sweep", {})
    if not isinstance(sweep, dict):
        return []
    problems = []
    for dotted, values in sweep.items():
        parts = tuple(dotted.split("."))
        if parts[0] in UNSWEEPABLE:
            problems.append(Problem(("sweep", dotted), f"`{parts[0]}` cannot be swept",
                                    "sweep settings that change what is trained, e.g. \"train.lr\""))
        elif _model_at(parts[:-1], data) is None or parts[-1] not in _fields_at(parts[:-1], data):
            fields = _fields_at(parts[:-1], data)
            close = difflib.get_close_matches(parts[-1], fields, n=1)
            hint = f"did you mean `{'.'.join(parts[:-1] + (close[0],))}`?" if close else \
                "a sweep key is a dotted path to an existing field, e.g. \"train.lr\""
            problems.append(Problem(("sweep", dotted), f"`{dotted}` is not a field of the spec", hint))
        elif not isinstance(values, list) or not values:
            problems.append(Problem(("sweep", dotted), "a sweep entry needs a non-empty list of values"))
    return problems


def _sweep_product(sweep: dict) -> list[tuple[tuple[str, Any], ...]]:
    keys = list(sweep)
    return [tuple(zip(keys, combo)) for combo in itertools.product(*(sweep[key] for key in keys))]


def _apply(data: dict, values: tuple[tuple[str, Any], ...]) -> dict:
    point = copy.deepcopy(data)
    for dotted, value in values:
        *parents, leaf = dotted.split(".")
        node = point
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break  # the table itself has the wrong type; validation reports that
        else:
            node[leaf] = value
    return point


def _blame_sweep(problem: Problem, values: tuple[tuple[str, Any], ...]) -> Problem:
    """A problem in a field that the sweep sets is reported at the sweep entry, naming the value."""
    for dotted, value in values:
        if tuple(str(p) for p in problem.path[: len(dotted.split("."))]) == tuple(dotted.split(".")):
            return Problem(("sweep", dotted), f"with {dotted} = {_show(value)}: {problem.message}", problem.hint)
    return problem
