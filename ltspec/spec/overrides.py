"""Command-line overrides, Hydra style: `ltspec run spec.toml train.lr=0.05 seeds=[0]`.

Each `key=value` is one TOML assignment: the key a dotted TOML key (`sweep."train.lr"` too), the value a TOML value
(`0.05`, `[0, 1]`, `"sgd"`, `{ kind = "step", milestones = [8] }`); a value that is not TOML is taken as a plain
string, so `data.dataset=synthetic` needs no quotes. Overrides are applied to the file's data before any check, so
they are checked exactly like the file, and a problem in an overridden value names the override instead of a line
of the file. An override of a setting the sweep varies fixes the sweep to that one value.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ltspec.spec.errors import Problem, SpecError

Blame = Callable[[Problem], Problem]


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """(the key's path, the value) of one `key=value`; raises ValueError saying what is wrong with it."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise ValueError("an override is key=value, e.g. train.lr=0.05")
    try:
        table = tomllib.loads(f"{key.strip()} = 0")
    except tomllib.TOMLDecodeError:
        raise ValueError(f"`{key.strip()}` is not a dotted key, e.g. train.lr or sweep.\"train.lr\"") from None
    path: tuple[str, ...] = ()
    while isinstance(table, dict):
        (name, table), = table.items()
        path += (name,)
    try:
        parsed = tomllib.loads(f"value = {value.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    except ValueError:  # an integer of more digits than Python reads (4,300)
        raise ValueError("its value holds an integer beyond TOML's 64-bit integers") from None
    return path, parsed


def apply_overrides(data: dict, overrides: tuple[str, ...], file: str | Path) -> tuple[dict, Blame]:
    """The data with every override applied, and a function that re-words a problem an override caused."""
    if not overrides:
        return data, lambda problem: problem
    data, applied = copy.deepcopy(data), []
    for text in overrides:
        try:
            path, value = parse_override(text)
        except ValueError as error:
            raise SpecError(file, [Problem((), f"override `{text}`: {error}", line=0, column=0)]) from None
        sweep = data.get("sweep")
        swept = ".".join(path)
        if isinstance(sweep, dict) and swept in sweep:
            sweep[swept] = [value]
            applied.append((("sweep", swept), text))
            continue
        node = data
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
        applied.append((path, text))

    def blame(problem: Problem) -> Problem:
        for path, text in applied:
            if problem.path[:len(path)] == path:
                return replace(problem, message=f"{problem.message} (set by the override `{text}`)", line=0, column=0)
        return problem

    return data, blame
