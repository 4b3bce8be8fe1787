"""A rehearsal: a whole study at toy scale, every stage of its plan run once, offline, before a GPU is booked.

`rehearse(loaded)` turns a spec into its rehearsal: a spec that compiles to the same plan (the same stages, of the
same kinds, with the same edges; other keys, since their configs differ) and trains each stage in seconds, so that
every mask generator, arm, measure and report layout of the study runs once on every architecture:

- **Epochs.** Every epoch-valued setting (typed `Epochs`, `EpochIndex` or `WeightPoint` in the spec's models:
  train.epochs, milestones, warmups, arms' epochs, rewind@k wherever it is named, ADMM's epochs, gradual pruning's
  epochs and window) maps by one rule, `EpochScale`: e -> ceil(e * S / M), with M the spec's largest epoch value
  and S = `MIN_EPOCHS` (or M, if smaller), each image raised where needed to one more than the image of the next
  smaller epoch value of the spec. Increasing on the spec's values, the rule keeps every order and equality the
  checks and the compiler read: milestones stay before the end, rewind points inside the dense run, an arm at the
  dense budget at it, a pruning window inside its run. IMP rounds, sparsities, seeds, p and sweeps are no epochs
  and stay.
- **Steps.** Settings counted in optimizer steps (ADMM's `update_every`, gradual pruning's `frequency`) keep their
  period in epochs: s -> max(1, round(s * steps' / steps)), steps' and steps the optimizer steps of an epoch of the
  rehearsal and of the real run.
- **Data.** A stand-in (`ltspec.datasets.stand_in`): `<name>-sample`, the first 8 train and 8 test examples of
  the real data where it is; `<name>-synthetic`, synthetic examples of its shape and classes where it is not (a
  rehearsal never downloads). Batch sizes map, in order, to 4, 8, 12, ...: an epoch is two batches of 4 (or one
  batch, at a larger one). Validation splits other than none map, in order, to 1/8, 2/8, ...: one of the 8
  examples held out, or two, ...
- **Where.** Its own store (`<root>/rehearsal`), its own MLflow experiment (`<experiment> (rehearsal)`, each run
  tagged `ltspec.rehearsal`), its own report folder (the spec is named `<name>-rehearsal`), so that nothing it
  writes is ever taken for a result, and no result for its.

The rehearsed data is validated like a file, so a rule that broke a check would fail loudly here.
"""

from __future__ import annotations

import copy
import functools
import math
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ltspec import datasets, points
from ltspec.strict import EPOCHS, STEPS, WEIGHT_POINTS, Unit
from ltspec.spec import LoadedSpec, SpecError
from ltspec.spec.load import expand
from ltspec.spec.models import Data

# The epochs a rehearsal's largest epoch value becomes: 6 keeps the paper's epoch values (10, 30, 80, 120, 150) apart
# as 1, 2, 4, 5, 6 with none raised, so that every spec of specs/paper/ is rehearsed on the same 6-epoch dense runs,
# shared across the specs as they are in the real study.
MIN_EPOCHS = 6
BATCH_SIZE = 4  # the smallest batch size of a rehearsal; a stand-in's 8 training examples are two such batches
NAME_SUFFIX = "-rehearsal"
STORE_FOLDER = "rehearsal"
EXPERIMENT_SUFFIX = " (rehearsal)"

Present = Callable[[str, str], bool]


@dataclass(frozen=True)
class EpochScale:
    """The rehearsal's epochs: e -> ceil(e * epochs / largest), raised where needed to one more than the image of
    the spec's next smaller epoch value, so that the spec's distinct epoch values stay distinct and in order (and
    no later epoch than the start becomes the start). No value grows: e -> at most e."""

    largest: int
    epochs: int
    images: tuple[tuple[int, int], ...]  # (epoch value, its image) of the spec's epoch values, ascending

    @classmethod
    def of(cls, values: Iterable[int]) -> EpochScale:
        """The scale of a spec whose epoch values are `values`: its largest to `MIN_EPOCHS` (if larger)."""
        distinct = sorted(set(values))
        largest = max(distinct, default=1)
        scale = cls(largest, min(largest, MIN_EPOCHS), ())
        images: list[tuple[int, int]] = []
        for value in distinct:
            images.append((value, replace(scale, images=tuple(images))(value)))
        return replace(scale, images=tuple(images))

    def __call__(self, epoch: int) -> int:
        scaled = -(-epoch * self.epochs // self.largest)
        below = [image for value, image in self.images if value < epoch]
        return max(scaled, below[-1] + 1) if below else scaled


@dataclass(frozen=True)
class Rehearsal:
    """A rehearsed spec, and what a person should know about it (the stand-ins, the epochs)."""

    loaded: LoadedSpec
    notes: tuple[str, ...]


def rehearse(loaded: LoadedSpec, present: Present | None = None) -> Rehearsal:
    """The rehearsal of a loaded spec (see the module's docstring). `present(dataset, root)` says whether a
    dataset is there to take a sample of; by default, whether it loads without a download."""
    present = present or data_present
    specs = [point.spec for point in loaded.points]
    scale = EpochScale.of(epoch_values(specs))
    first = specs[0]
    batch_sizes = _in_order({spec.data.batch_size for spec in specs}, lambda rank: BATCH_SIZE * rank)
    held_out = _in_order({spec.data.validation_split for spec in specs} - {0.0},
                         lambda rank: rank / datasets.STAND_IN_SIZE[0])
    steps = _step_scale(first.data, batch_sizes[first.data.batch_size])
    roots = {spec.data.dataset: spec.data.root for spec in specs}
    stand_ins = {name: _stand_in(name, present(name, root)) for name, root in roots.items()}

    data = copy.deepcopy(loaded.data)
    for path, value, unit in marked(first):  # a setting the sweep leaves alone has one value in every point
        rescaled = functools.partial(_rescaled, unit=unit, scale=scale, steps=steps)
        if ".".join(path) in data.get("sweep", {}):
            _rewrite(data, ".".join(path), rescaled)
        elif rescaled(value) != _plain(value):
            _set(data, path, rescaled(value))
    _rewrite(data, "data.dataset", lambda name: stand_ins.get(name) or _stand_in(name, present(name, first.data.root)),
             first.data.dataset)
    _rewrite(data, "data.batch_size", lambda size: batch_sizes.get(size, BATCH_SIZE), first.data.batch_size)
    _rewrite(data, "data.validation_split", lambda fraction: held_out.get(fraction, fraction))
    data["data"]["download"] = False
    data["name"] = first.name + NAME_SUFFIX
    data["description"] = "Rehearsal at toy scale, not a result" + (f": {first.description}" if first.description
                                                                      else "")
    data.setdefault("tracking", {})["experiment"] = (first.tracking.experiment or first.name) + EXPERIMENT_SUFFIX
    data.setdefault("storage", {})["root"] = str(PurePosixPath(first.storage.root) / STORE_FOLDER)
    try:
        rehearsed = expand(data, loaded.path, loaded.overrides)
    except SpecError as error:
        raise SpecError(error.file, [replace(problem, message=f"in its rehearsal: {problem.message}")
                                     for problem in error.problems]) from None
    return Rehearsal(replace(rehearsed, rehearsal=True), _notes(scale, specs, stand_ins, roots))


def epoch_values(specs: Iterable[BaseModel]) -> set[int]:
    """Every epoch a spec names: its epoch-valued settings, and the k of each `rewind@k`."""
    found = set()
    for spec in specs:
        for _, value, unit in marked(spec):
            for item in _leaves(value):
                if unit is EPOCHS:
                    found.add(item)
                elif unit is WEIGHT_POINTS and points.parse(item).rewind is not None:
                    found.add(points.parse(item).rewind)
    return found


def marked(model: BaseModel, path: tuple = ()) -> Iterator[tuple[tuple, Any, Unit]]:
    """(path, value, unit) of every setting of a model, and of the tables inside it, whose type carries a `Unit`."""
    for name, field in type(model).model_fields.items():
        value, unit = getattr(model, name), unit_of(field)
        if unit is not None:
            yield path + (name,), value, unit
        elif isinstance(value, BaseModel):
            yield from marked(value, path + (name,))
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    yield from marked(item, path + (name, key))


def unit_of(field: FieldInfo) -> Unit | None:
    """The unit marked on a field's type, however deep (`list[Epochs]`, `Epochs | None`, pairs of `WeightPoint`)."""
    stack: list[Any] = [field.annotation, *field.metadata]
    while stack:
        item = stack.pop()
        if isinstance(item, Unit):
            return item
        stack += typing.get_args(item)
    return None


@functools.cache
def data_present(name: str, root: str) -> bool:
    """Whether a dataset loads from `root` without a download (loading is the check, as before a run)."""
    from ltspec.data import load_dataset
    from ltspec.datasets import DatasetError

    try:
        load_dataset(name, root=root)
    except DatasetError:
        return False
    return True


def _stand_in(name: str, present: bool) -> str:
    """The stand-in a rehearsal trains on for a dataset; a stand-in stands for itself."""
    if datasets.info(name).stand_in_for is not None:
        return name
    return f"{name}-{'sample' if present else 'synthetic'}"


def _in_order(values: set, image: Callable[[int], Any]) -> dict:
    """Each value to `image(rank)`, ranks from 1 in increasing order of the values."""
    return {value: image(rank) for rank, value in enumerate(sorted(values), start=1)}


def _step_scale(data: Data, batch_size: int) -> Callable[[int], int]:
    """s -> max(1, round(s * steps' / steps)): a period in optimizer steps kept as a period in epochs, with steps
    and steps' those of an epoch of `data` and of its stand-in at `batch_size` (1: every step, for a dataset of
    unknown size)."""
    real, kept = datasets.info(data.dataset), 1 - data.validation_split
    if real.train_size is None:
        return lambda steps: 1
    rehearsed = math.ceil(datasets.STAND_IN_SIZE[0] * kept / batch_size)
    ratio = rehearsed / math.ceil(real.train_size * kept / data.batch_size)
    return lambda steps: max(1, round(steps * ratio))


def _rescaled(value: Any, unit: Unit, scale: EpochScale, steps: Callable[[int], int]) -> Any:
    """A marked value in the rehearsal's scale, in the form the spec's data holds it (lists, not tuples)."""
    if isinstance(value, list | tuple):
        return [_rescaled(item, unit, scale, steps) for item in value]
    if value is None:
        return None
    if unit is EPOCHS:
        return scale(value)
    if unit is STEPS:
        return steps(value)
    point = points.parse(value)
    if unit is WEIGHT_POINTS and point.rewind is not None:
        return f"rewind@{scale(point.rewind)}" + (points.MASKED if point.masked else "")
    return value


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    elif value is not None:
        yield value


def _plain(value: Any) -> Any:
    return [_plain(item) for item in value] if isinstance(value, list | tuple) else value


def _set(data: dict, path: tuple, value: Any) -> None:
    *parents, leaf = path
    functools.reduce(lambda node, part: node.setdefault(part, {}), parents, data)[leaf] = value


def _rewrite(data: dict, path: str, convert: Callable[[Any], Any], default: Any = None) -> None:
    """Convert the value at a dotted path and the sweep's values for it; where the data lacks the value, set the
    conversion of `default` (unless None)."""
    sweep = data.get("sweep", {})
    if path in sweep:
        sweep[path] = [convert(value) for value in sweep[path]]
    *parents, leaf = path.split(".")
    table = functools.reduce(lambda node, part: node.setdefault(part, {}), parents, data)
    if leaf in table or default is not None:
        table[leaf] = convert(table.get(leaf, default))


def _notes(scale: EpochScale, specs: list, stand_ins: dict[str, str], roots: dict[str, str]) -> tuple[str, ...]:
    values = sorted(epoch_values(specs) - {0})
    notes = [f"{specs[0].name}: epochs {', '.join(map(str, values))} -> "
             f"{', '.join(str(scale(value)) for value in values)} (e -> ceil(e * {scale.epochs} / {scale.largest}), "
             f"kept apart); {datasets.STAND_IN_SIZE[0]} training examples in batches of {BATCH_SIZE}"]
    for name, stand_in in stand_ins.items():
        if stand_in.endswith("-synthetic"):
            notes.append(f"{name} is not in {roots[name]}/ (a rehearsal never downloads): it trains on {stand_in}, "
                         "synthetic inputs of its shape and classes")
        elif stand_in != name:
            notes.append(f"{name}: it trains on {stand_in}, its first examples")
    return tuple(notes)
