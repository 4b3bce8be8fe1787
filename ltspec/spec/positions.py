"""Where everything in a TOML file is written: the line and column of every key, value and array element.

tomllib returns plain values and forgets where they came from, but a problem should point at the thing to change:
`p = [0.2, 1.5]` at the 1.5, not at `p`. `layout` walks the text once, with a loop and an explicit stack rather
than recursion, so it also measures how deeply a file nests before tomllib (which recurses) sees it, and it finds
the bracket that a truncated array left open, which tomllib reports only at the line after it. It is lenient: on
text that is not TOML it records what it can and stops, and tomllib then says what is wrong.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

Where = tuple[int, int]  # (line, column), both 1-based
KeyPath = tuple[str | int, ...]

_SPACE = re.compile(r"[ \t]*")
_SPACE_LINES = re.compile(r"(?:[ \t\r\n]|#[^\n]*)*")
_BARE = re.compile(r"[A-Za-z0-9_-]+")
_BASIC = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_LITERAL = re.compile(r"'[^'\n]*'")
_MULTILINE = {'"""': re.compile(r'"""[\s\S]*?"""(?!")|"""[\s\S]*'),
              "'''": re.compile(r"'''[\s\S]*?'''(?!')|'''[\s\S]*")}
_SCALAR = re.compile(r"[^,\]}\s#]+")
_LINE_REST = re.compile(r"[^\n]*")


@dataclass(frozen=True)
class Layout:
    """Positions of one TOML text, by key path (list elements by index, as in tomllib's result)."""

    keys: dict[KeyPath, Where]  # each key and table header, and every table a dotted key implies
    values: dict[KeyPath, Where]  # each scalar, array and array element
    too_deep: Where | None  # where the text first nests past the limit; nothing after it was scanned
    unclosed: Where | None  # the opening bracket of an array or inline table that is never closed


@dataclass
class _Open:
    """An array or inline table being scanned."""

    path: KeyPath
    bracket: str
    where: Where
    index: int = 0


def layout(text: str, max_depth: int) -> Layout:
    """Scan `text`, stopping where a key path gets longer than `max_depth` parts (tables, keys and brackets)."""
    starts = [0] + [match.end() for match in re.finditer(r"\n", text)]

    def where(offset: int) -> Where:
        line = bisect.bisect_right(starts, offset)
        return line, offset - starts[line - 1] + 1

    keys: dict[KeyPath, Where] = {}
    values: dict[KeyPath, Where] = {}
    stack: list[_Open] = []
    table: KeyPath = ()
    array_tables: dict[KeyPath, int] = {}
    i, end = 0, len(text)

    def read_key(at: int) -> tuple[list[str], int] | None:
        """A dotted key's parts (bare or quoted) and the offset after it, or None if no key starts at `at`."""
        parts = []
        while True:
            at = _SPACE.match(text, at).end()
            match = _BARE.match(text, at) or _BASIC.match(text, at) or _LITERAL.match(text, at)
            if not match:
                return None
            token = match.group()
            parts.append(token if token[0] not in "\"'" else token[1:-1])
            at = _SPACE.match(text, match.end()).end()
            if not text.startswith(".", at):
                return parts, at
            at += 1

    def assignment(at: int) -> tuple[list[str], int] | None:
        """`key =` at `at`: the key's parts and the offset after `=`."""
        found = read_key(at)
        if found is None or not text.startswith("=", found[1]):
            return None
        return found[0], found[1] + 1

    def name(prefix: KeyPath, parts: list[str], at: int) -> KeyPath:
        for cut in range(1, len(parts) + 1):
            keys.setdefault(prefix + tuple(parts[:cut]), where(at))
        return prefix + tuple(parts)

    def value(at: int, path: KeyPath) -> int:
        """Record the value starting at `at`; open a bracket on the stack; return the offset after a scalar."""
        at = _SPACE.match(text, at).end()
        if at >= end:
            return at
        if text[at] in "[{":
            stack.append(_Open(path, text[at], where(at)))
            if text[at] == "[":
                values.setdefault(path, where(at))
            return at + 1
        values.setdefault(path, where(at))
        quote = text[at: at + 3]
        match = (_MULTILINE[quote].match(text, at) if quote in _MULTILINE else
                 _BASIC.match(text, at) or _LITERAL.match(text, at) or _SCALAR.match(text, at))
        return max(match.end() if match else at, at + 1)

    while i < end:
        i = _SPACE_LINES.match(text, i).end()
        if i >= end:
            return Layout(keys, values, None, stack[0].where if stack else None)
        top = stack[-1] if stack else None
        if top is None and text[i] == "[":
            double = text.startswith("[[", i)
            header = read_key(i + 1 + double)
            if header:
                table = tuple(header[0])
                if double:
                    array_tables[table] = array_tables.get(table, -1) + 1
                    table += (array_tables[table],)
                keys.setdefault(table, where(i))
            i = _LINE_REST.match(text, i).end()
            path = table
        elif top is not None and text[i] in ",]}":
            if text[i] == ",":
                top.index += 1
            elif text[i] == ("]" if top.bracket == "[" else "}"):
                stack.pop()
            else:
                return Layout(keys, values, None, None)
            i += 1
            continue
        elif top is None or top.bracket == "{":
            found = assignment(i)
            if found is None:
                i = _LINE_REST.match(text, i).end()
                if top is None:
                    continue
                return Layout(keys, values, None, None)
            path = name(top.path if top else table, found[0], i)
            i = value(found[1], path)
        elif assignment(i):  # `key = ...` where an element belongs: the array above was never closed
            return Layout(keys, values, None, stack[0].where)
        else:
            path = top.path + (top.index,)
            i = value(i, path)
        if len(path) > max_depth:
            return Layout(keys, values, where(i - 1) if stack else keys[path], None)
    return Layout(keys, values, None, stack[0].where if stack else None)
