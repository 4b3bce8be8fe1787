"""Spec errors that point at the line to fix.

Python's tomllib forgets where each value came from, so `key_positions` re-reads the source and records the line
and column of every key path; a problem found by pydantic or by a cross-field check is then reported at the deepest
path that exists in the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, and where."""

    path: Path_
    message: str
    hint: str = ""
    line: int | None = None
    column: int | None = None

    def render(self, file: str | Path) -> str:
        where = f"{file}:{self.line}:{self.column}" if self.line else f"{file}"
        field = ".".join(str(p) for p in self.path) or "(top level)"
        text = f"{where}: {field}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class SpecError(Exception):
    """A spec that cannot be run; carries every problem found, each with its location."""

    def __init__(self, file: str | Path, problems: list[Problem]):
        self.file = str(file)
        self.problems = problems
        super().__init__("\n".join(p.render(self.file) for p in problems))


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r'\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_-]+(?:\s*\.\s*[A-Za-z0-9_-]+)*)\s*=')


def _split_key(key: str) -> list[str]:
    """A TOML key, bare (`a.b`) or quoted (`"train.lr"`, one part), as its path parts."""
    key = key.strip()
    if key[0] in "\"'":
        return [key[1:-1]]
    return [part.strip() for part in key.split(".")]


def _scan_inline(text: str, start: int, prefix: tuple[str, ...], line: int, out: dict) -> None:
    """Record the keys inside inline tables (`optimizer = { kind = "sgd", momentum = 0.9 }`) of one line."""
    stack, last, i = [prefix], prefix, start
    while i < len(text):
        ch = text[i]
        if ch in "\"'":
            end = text.find(ch, i + 1)
            i = len(text) if end < 0 else end + 1
            continue
        if ch == "#":
            return
        if ch == "{":
            stack.append(last)
        elif ch == "}" and len(stack) > 1:
            stack.pop()
        if ch in "{," and len(stack) > 1:
            match = _KEY.match(text, i + 1)
            if match:
                last = stack[-1] + tuple(_split_key(match.group(1)))
                out.setdefault(last, (line, match.start(1) + 1))
                i = match.end()
                continue
        i += 1


def key_positions(source: str) -> dict[tuple[str, ...], tuple[int, int]]:
    """Map every key path in a TOML document to its (line, column), 1-based."""
    positions: dict[tuple[str, ...], tuple[int, int]] = {}
    table: tuple[str, ...] = ()
    for number, text in enumerate(source.splitlines(), start=1):
        header = _HEADER.match(text)
        if header and "=" not in text.split("#")[0]:
            table = tuple(_split_key_path(header.group(1)))
            positions.setdefault(table, (number, text.index("[") + 1))
            continue
        match = _KEY.match(text)
        if not match:
            continue
        path = table + tuple(_split_key(match.group(1)))
        positions.setdefault(path, (number, match.start(1) + 1))
        _scan_inline(text, match.end(), path, number, positions)
    return positions


def _split_key_path(header: str) -> list[str]:
    """Table headers may mix bare and quoted parts: `[masks."my imp"]`."""
    return [part.strip("\"'") for part in re.findall(r'"[^"]*"|\'[^\']*\'|[^.\s]+', header)]


def locate(problem: Problem, positions: dict[tuple[str, ...], tuple[int, int]]) -> Problem:
    """Attach the position of the deepest prefix of the problem's path that exists in the file."""
    path = tuple(str(p) for p in problem.path)
    for cut in range(len(path), -1, -1):
        where = positions.get(path[:cut])
        if where:
            return Problem(problem.path, problem.message, problem.hint, *where)
    return Problem(problem.path, problem.message, problem.hint, 1, 1)
