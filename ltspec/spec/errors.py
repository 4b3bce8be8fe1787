"""Spec errors that point at the line to fix.

A problem is found on the parsed data, which has no positions; `locate` then attaches the line and column of the
value at the problem's path (of the key, for an unknown key), or of the deepest enclosing key the file has.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ltspec.spec.positions import Layout

Path_ = tuple[str | int, ...]
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, and where."""

    path: Path_
    message: str
    hint: str = ""
    line: int | None = None
    column: int | None = None
    at_key: bool = False  # point at the key rather than its value (an unknown key)

    def render(self, file: str | Path) -> str:
        where = f"{file}:{self.line}:{self.column}" if self.line else f"{file}"
        text = f"{where}: {dotted(self.path) or '(top level)'}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


def dotted(path: Path_) -> str:
    """A path as TOML writes it: `measure.pairs[0][1]`, `sweep."train.lr"`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + (part if _BARE.match(part) else json.dumps(part))
    return text


class SpecError(Exception):
    """A spec that cannot be run; carries every problem found, each with its location."""

    def __init__(self, file: str | Path, problems: list[Problem]):
        self.file = str(file)
        self.problems = problems
        super().__init__("\n".join(p.render(self.file) for p in problems))


def locate(problem: Problem, layout: Layout) -> Problem:
    """Attach the position of the problem's value (or key), else of the deepest enclosing key in the file."""
    if problem.line is not None:
        return problem
    path = problem.path
    exact = (layout.keys if problem.at_key else layout.values).get(path)
    if exact:
        return replace(problem, line=exact[0], column=exact[1])
    for cut in range(len(path), -1, -1):
        where = layout.keys.get(path[:cut]) or layout.values.get(path[:cut])
        if where:
            return replace(problem, line=where[0], column=where[1])
    return replace(problem, line=1, column=1)
