"""Positions: the scanner finds every key and value where tomllib reads it, however the TOML is laid out."""

import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import toml_key, toml_value
from ltspec.spec.positions import layout

KEYS = st.sampled_from(["a", "b", "lr", "masks", "x-y", "k_2", "with space", "dotted.key"])
SCALARS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                    st.booleans(), st.text(alphabet="ab #[]{}=,\"'\\\n", max_size=8))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(KEYS, inner, max_size=3)), max_leaves=8)


def document(tables: dict, newlines: bool) -> str:
    lines = []
    for table, entries in tables.items():
        lines.append(f"[{toml_key(table)}]  # a table")
        lines += [f"{toml_key(name)} = {toml_value(value, newlines)}" for name, value in entries.items()]
    return "\n".join(lines) + "\n"


def leaves(value, path=()):
    if isinstance(value, dict):
        for name, item in value.items():
            yield from leaves(item, path + (name,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, path + (index,))
    else:
        yield path, value


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(KEYS, st.dictionaries(KEYS, VALUES, max_size=4), max_size=3), st.booleans())
def test_every_scalar_is_found_where_it_is_written(tables, newlines):
    text = document(tables, newlines)
    data = tomllib.loads(text)
    found = layout(text, max_depth=16)
    lines = text.splitlines()
    assert found.too_deep is None and found.unclosed is None
    for path, value in leaves(data):
        line, column = found.values[path]
        assert lines[line - 1][column - 1:].startswith(toml_value(value)), (path, value)
        for cut in range(1, len(path) + 1):
            if not isinstance(path[cut - 1], int):
                assert path[:cut] in found.keys, path[:cut]
