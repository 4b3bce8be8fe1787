"""One spec's data to a typed `Spec` and every problem with it, found in one pass.

Pydantic checks each value; the cross-field checks (`ltspec.spec.checks`) need a typed spec. So that a user sees
every problem at once, each value pydantic rejects gets a stand-in (its default, a neutral value of its type, or,
for an entry of a table of named things, its absence), the copy is validated again, and the cross-field checks run
on it with the replaced paths marked unknown, so that no check reasons from a value the user never wrote.
"""

from __future__ import annotations

import copy
import itertools
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from ltspec.spec import messages
from ltspec.spec.checks import check
from ltspec.spec.errors import Problem
from ltspec.spec.limits import MAX_PROBLEMS, MAX_STAGES, mask_count, stage_bound
from ltspec.spec.models import Spec


def type_problems(data: dict) -> list[Problem]:
    """Pydantic's problems alone, in the spec's words."""
    return _typed(data)[1]


def validate(data: dict) -> tuple[Spec | None, list[Problem]]:
    """The spec (None if anything is wrong) and every problem: pydantic's, then the cross-field ones."""
    spec, problems = _typed(data)
    if spec is not None:
        return spec, _cross(spec, frozenset())
    repaired, unknown = _stand_ins(data, problems)
    stand_in = _typed(repaired)[0] if repaired is not None else None
    return None, problems + (_cross(stand_in, unknown) if stand_in is not None else [])


def _typed(data: dict) -> tuple[Spec | None, list[Problem]]:
    try:
        return Spec.model_validate(data), []
    except ValidationError as error:  # the first MAX_PROBLEMS are listed, so more need no words
        return None, messages.problems(error.errors(include_url=False)[:MAX_PROBLEMS + 1], data)


def _cross(spec: Spec, unknown: frozenset) -> list[Problem]:
    stages = stage_bound(spec)
    if stages > MAX_STAGES:  # checked first: the checks list every mask, and IMP may ask for 10**9 rounds
        largest = max(spec.masks, key=lambda name: mask_count(spec, name), default=None)
        return [Problem(("masks", largest) if largest else ("seeds",), f"one sweep point would have up to "
                        f"{stages:,} stages; a spec has at most {MAX_STAGES:,}", "fewer seeds, sparsities, rounds "
                        "or arms")]
    return check(spec, unknown)


def _stand_ins(data: dict, problems: list[Problem]) -> tuple[dict | None, frozenset]:
    """A copy of the data with every rejected value replaced, and the set of replaced paths; None if a whole
    required table is wrong. A field with a default takes it; an entry of a table of named things (a mask
    generator, an arm, a sweep entry) is left out; a required field takes a neutral value of its type."""
    repaired, unknown = copy.deepcopy(data), set()
    for problem in problems:
        path = tuple(itertools.takewhile(lambda part: not isinstance(part, int), problem.path))
        path = path[:-1] if path[-1:] == ("kind",) else path  # a wrong `kind` makes its whole table unknown
        entry = messages.entry_at(path, repaired)
        path = entry or path
        parent = messages.value_at(repaired, path[:-1])
        if not path or not isinstance(parent, dict):
            return None, frozenset()
        unknown.add(path)
        field = messages.field_at(path, repaired)
        if entry or problem.at_key or field is None or not field.is_required():
            parent.pop(path[-1], None)
            continue
        stand_in = _neutral(field)
        if stand_in is None:
            return None, frozenset()
        parent[path[-1]] = stand_in
    return repaired, frozenset(unknown)


def _neutral(field) -> Any:
    """A value the field accepts: the first of its closed vocabulary, or a plain one of its type."""
    if any(isinstance(member, type) and issubclass(member, BaseModel) for member in messages.members(field.annotation)):
        return None  # a whole table is wrong: no neutral value stands in for it
    annotation = typing.Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    adapter = TypeAdapter(annotation, config=ConfigDict(strict=True))
    for candidate in [*messages.vocabulary(field.annotation), 1, 0.5, "x"]:
        try:
            return adapter.validate_python(candidate)
        except ValidationError:
            continue
    return None
