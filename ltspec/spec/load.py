"""Reading a spec file: TOML, then the spec's checks (`ltspec.spec.validate`), once per sweep point.

Everything that can go wrong with a user's file (missing, a directory, not UTF-8, too large or too deep, bad TOML,
a wrong value in one sweep point) ends as one `SpecError` listing every problem with its file:line:column, so the
CLI can print it and exit 2 without a traceback. The sweep's values, and the base values it replaces, are part of
the file and are checked too.
"""

from __future__ import annotations

import ast
import copy
import difflib
import hashlib
import itertools
import json
import math
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ltspec import architectures, datasets, masks, plugins
from ltspec.spec import messages
from ltspec.spec.errors import Problem, SpecError, dotted, locate
from ltspec.spec.limits import MAX_DEPTH, MAX_FILE_BYTES, MAX_PROBLEMS, MAX_STAGES, MAX_SWEEP_POINTS, stage_bound
from ltspec.spec.models import Spec, rebuild
from ltspec.spec.overrides import Blame, apply_overrides
from ltspec.spec.positions import Layout, layout
from ltspec.spec.validate import type_problems, validate

UNSWEEPABLE = ("schema_version", "name", "description", "seeds", "sweep", "report", "tracking", "storage")
TOML_INTEGERS = range(-2**63, 2**63)  # TOML 1.0: a reader must refuse an integer it cannot hold in 64 bits
_INTEGER = re.compile(r"[+-]?[0-9](?:_?[0-9])*")


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
    overrides: tuple[str, ...] = ()  # the command line's `key=value`s, applied to `data`
    rehearsal: bool = False  # the file's spec at toy scale (`ltspec.rehearsal`): nothing it makes is a result

    @property
    def spec(self) -> Spec:
        """The settings common to all points (name, tracking, storage) are read from the first."""
        return self.points[0].spec

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.data, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def swept(self) -> list[tuple[str, Any, list]]:
        """(dotted path, the value the file sets there or None, the sweep's values) for every sweep entry."""
        return [(key, messages.value_at(self.data, tuple(key.split("."))), values)
                for key, values in self.data.get("sweep", {}).items()]


def load_spec(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> LoadedSpec:
    """Read, validate and expand a spec file, with the command line's `key=value` overrides applied (see
    `ltspec.spec.overrides`); raises `SpecError` on any problem."""
    path = Path(path)
    source = _read(path)
    return parse_spec(source, path, tuple(overrides))


def _read(path: Path) -> str:
    def fail(message: str, hint: str = "") -> SpecError:
        return SpecError(path, [Problem((), message, hint)])

    if not path.exists():
        raise fail("no such file", "check the path; shipped specs live in specs/")
    if path.is_dir():
        raise fail("is a directory, not a spec file", "name a .toml file inside it")
    try:
        with path.open("rb") as file:  # at most one byte past the limit: /dev/zero is a file too
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise fail(f"cannot be read: {error.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise fail(f"is larger than {MAX_FILE_BYTES:,} bytes, the most a spec may be",
                   "is this the spec file? a spec is a page of TOML")
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise SpecError(path, [Problem((), f"is not UTF-8 text (byte {raw[error.start]:#04x})",
                                       "save the file as UTF-8", line, 1)]) from None
    if not source.strip():
        raise fail("is empty", "start from specs/quickstart.toml")
    return source


def parse_spec(source: str, path: str | Path = "<spec>", overrides: tuple[str, ...] = ()) -> LoadedSpec:
    """Validate TOML text as a spec; `path` is only used in messages."""
    where = layout(source, MAX_DEPTH)
    data = _toml(source, path, where)
    data, blame = apply_overrides(data, overrides, path)
    return expand(data, path, overrides, where=where, blame=blame)


def expand(data: dict, path: str | Path = "<spec>", overrides: tuple[str, ...] = (), *, where: Layout | None = None,
           blame: Blame = lambda problem: problem) -> LoadedSpec:
    """Validate a spec's data (its TOML document, overrides applied) and expand its sweep. `where` places each
    problem at its line of the file (without it, problems name their field only); `blame` re-words a problem
    that an override caused."""
    too_large = _integer_problems(data)
    if too_large:  # not TOML, as a syntax error is not: nothing else is checked
        raise SpecError(path, _report([blame(problem) for problem in too_large], where))
    _load_plugins_if_named(data, path)
    problems = _nul_problems(data) + _sweep_problems(data)
    sweep = data.get("sweep") if not problems and isinstance(data.get("sweep"), dict) else {}
    size = math.prod(len(values) for values in sweep.values() if isinstance(values, list))
    if size > MAX_SWEEP_POINTS:
        problems.append(Problem(("sweep",), f"the sweep has {size:,} points; a spec has at most "
                                f"{MAX_SWEEP_POINTS:,}", "split it into several specs"))
        sweep = {}
    if sweep:  # the sweep's values, and the base values it replaces, are part of the file: check them as typed
        swept = [("sweep",)] + [tuple(key.split(".")) for key in sweep]
        base = [problem for problem in type_problems(data) if any(problem.path[:len(key)] == key for key in swept)]
        problems += base
        sweep = {} if any(problem.path[0] == "sweep" for problem in base) else sweep
    checked = data if sweep else {**data, "sweep": {}}
    points: list[SweepPoint] = []
    for indices in itertools.product(*(range(len(values)) for values in sweep.values())):
        if len(problems) > MAX_PROBLEMS:  # more would not be listed: stop early, whatever the file holds
            break
        values = tuple((key, sweep[key][index]) for key, index in zip(sweep, indices))
        spec, found = validate(_apply(checked, values))
        if spec is not None and not found:
            points.append(SweepPoint(values, spec))
        problems += [_blame_sweep(problem, values, indices) for problem in found]
    stages = sum(stage_bound(point.spec) for point in points)
    if not problems and stages > MAX_STAGES:
        problems.append(Problem(("sweep",), f"the plan would have up to {stages:,} stages; a spec has at most "
                                f"{MAX_STAGES:,}", "fewer seeds, sweep values, sparsities or arms"))
    if problems:
        raise SpecError(path, _report([blame(problem) for problem in problems], where))
    return LoadedSpec(Path(path), data, tuple(points), overrides)



def _load_plugins_if_named(data: dict, path: str | Path) -> None:
    """Register the installed plugins when the spec names a model, dataset or mask kind that is not built in."""
    tables = [data.get(name) if isinstance(data.get(name), dict) else {} for name in ("model", "data", "masks")]
    kinds = {table.get("kind") for table in tables[2].values() if isinstance(table, dict)}
    if (tables[0].get("arch") in (None, *architectures.TABLE) and _known_dataset(tables[1].get("dataset"))
            and kinds <= {None, *masks.REGISTRY}):
        return
    try:
        plugins.load()
    except plugins.PluginError as error:
        raise SpecError(path, [Problem((), str(error), "fix the plugin, or uninstall its package")]) from None
    rebuild()


def _known_dataset(name: Any) -> bool:
    return name is None or isinstance(name, str) and datasets.known(name)


def _toml(source: str, path: str | Path, where: Layout) -> dict:
    """The TOML document, or a syntax error at the line to fix."""
    def fail(message: str, hint: str, line: int | None = None, column: int | None = None) -> SpecError:
        return SpecError(path, [Problem((), message, hint, line, column)])

    if len(source) > MAX_FILE_BYTES:
        raise fail(f"is {len(source):,} characters; a spec is at most {MAX_FILE_BYTES:,}",
                   "is this the spec file? a spec is a page of TOML", 1, 1)
    if where.too_deep:
        raise fail(f"nests deeper than {MAX_DEPTH} levels of tables, keys and brackets",
                   "no spec value is more than 4 deep; check the brackets", *where.too_deep)
    try:
        return tomllib.loads(source)
    except tomllib.TOMLDecodeError as error:
        at = re.search(r"\(at line (\d+), column (\d+)\)", str(error))
        message = re.sub(r"\s*\(at (line|end of document).*\)", "", str(error)).rstrip(".")
        declared = re.match(r"Cannot declare \((.*)\) twice", message)  # tomllib names the table as a Python tuple
        if declared:
            message = f"the table [{dotted(tuple(ast.literal_eval(f'({declared.group(1)})')))}] is declared twice"
        lines = source.splitlines() or [""]
        line, column = (int(at.group(1)), int(at.group(2))) if at else (len(lines), len(lines[-1]) + 1)
        if where.unclosed and where.unclosed[0] <= line:
            raise fail("TOML syntax error: this bracket is never closed", f"close it before line {line}",
                       *where.unclosed) from None
        raise fail(f"TOML syntax error: {message[0].lower()}{message[1:]}", "", line, column) from None
    except ValueError:  # an integer of more digits than Python reads (4,300): far beyond TOML's 64 bits
        raise SpecError(path, [_unreadable_integer(source, where)]) from None
    except RecursionError:
        raise fail(f"nests deeper than {MAX_DEPTH} levels", "check the brackets", 1, 1) from None


def _report(problems: list[Problem], where: Layout | None) -> list[Problem]:
    """Located (given the file's layout), each once, in the file's order (as an editor lists them; a command-line
    override, line 0, first); past MAX_PROBLEMS, a line saying there are more."""
    located = dict.fromkeys(locate(problem, where) if where else problem for problem in problems)
    unique = sorted(located, key=lambda problem: (problem.line or 0, problem.column or 0))
    if len(unique) <= MAX_PROBLEMS:
        return unique
    return unique[:MAX_PROBLEMS] + [Problem((), f"and more problems: these are the first {MAX_PROBLEMS}",
                                            "fix them and validate again", 1, 1)]


def _entries(data: dict) -> Iterator[tuple[tuple, Any]]:
    """(path, value) of every table entry and array element in the file's order, with a stack, not recursion."""
    def children(path: tuple, node: Any) -> Iterator[tuple[tuple, Any]]:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        return ((path + (key,), value) for key, value in items)

    stack = [children((), data)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        yield entry
        stack.append(children(*entry))


def _nul_problems(data: dict) -> list[Problem]:
    """No name or path can hold a NUL character (`\\u0000`): MLflow would cut the name there, the OS refuse it."""
    return [Problem(path, "contains a NUL character (\\u0000)", "remove it; no name or path can hold it")
            for path, value in _entries(data)
            if isinstance(path[-1], str) and "\0" in path[-1] or isinstance(value, str) and "\0" in value]


def _integer_problems(data: dict) -> list[Problem]:
    """Integers beyond 64 bits, which TOML cannot hold and a TOML reader must refuse (tomllib reads any size)."""
    return [_beyond_64_bits(path, str(value) if len(str(abs(value))) <= 30 else f"an integer of "
                            f"{len(str(abs(value))):,} digits")
            for path, value in _entries(data) if type(value) is int and value not in TOML_INTEGERS]


def _unreadable_integer(source: str, where: Layout) -> Problem:
    """The integer too long for Python to read (`sys.get_int_max_str_digits`), found by its place in the layout."""
    starts = [0, *itertools.accumulate(len(line) for line in source.splitlines(keepends=True))]
    for path, (line, column) in where.values.items():
        literal = _INTEGER.match(source, starts[line - 1] + column - 1)
        digits = len(literal.group().lstrip("+-").replace("_", "")) if literal else 0
        if digits > sys.get_int_max_str_digits():
            return _beyond_64_bits(path, f"an integer of {digits:,} digits", line, column)
    return _beyond_64_bits((), "an integer", 1, 1)


def _beyond_64_bits(path: tuple, what: str, line: int | None = None, column: int | None = None) -> Problem:
    return Problem(path, f"{what} is beyond TOML's 64-bit integers, {TOML_INTEGERS.start} to "
                   f"{TOML_INTEGERS.stop - 1}", "no TOML reader can hold it; write a smaller number", line, column)


def _sweep_problems(data: dict) -> list[Problem]:
    sweep = data.get("sweep", {})
    if not isinstance(sweep, dict):
        return []
    problems = []
    for key, values in sweep.items():
        parts = tuple(key.split("."))
        if parts[0] in UNSWEEPABLE:
            problems.append(Problem(("sweep", key), f"`{parts[0]}` cannot be swept",
                                    "sweep settings that change what is trained, e.g. \"train.lr\"", at_key=True))
        elif parts[-1] not in messages.fields_at(parts[:-1], data):
            fields = messages.fields_at(parts[:-1], data)
            close = difflib.get_close_matches(parts[-1], fields, n=1)
            hint = f"did you mean `{'.'.join(parts[:-1] + (close[0],))}`?" if close else \
                "a sweep key is a dotted path to an existing field, e.g. \"train.lr\""
            problems.append(Problem(("sweep", key), f"`{key}` is not a field of the spec", hint, at_key=True))
        elif not isinstance(values, list) or not values:
            problems.append(Problem(("sweep", key), "a sweep entry needs a non-empty array of values"))
    return problems


def _apply(data: dict, values: tuple[tuple[str, Any], ...]) -> dict:
    point = copy.deepcopy(data)
    for key, value in values:
        *parents, leaf = key.split(".")
        node = point
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break  # the table itself has the wrong type; validation reports that
        else:
            node[leaf] = value
    return point


def _blame_sweep(problem: Problem, values: tuple[tuple[str, Any], ...], indices: tuple[int, ...]) -> Problem:
    """A problem in a field that the sweep sets is reported at the sweep's value, naming it."""
    for (key, value), index in zip(values, indices):
        if problem.path[:len(key.split("."))] == tuple(key.split(".")):
            return Problem(("sweep", key, index), f"with {key} = {json.dumps(value, default=str)}: {problem.message}",
                           problem.hint)
    return problem
