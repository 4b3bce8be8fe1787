"""Checks that need several fields of a spec at once, each with the reason a user would want it.

Pydantic checks each field on its own (types, ranges, unknown keys); what only makes sense together (a milestone
past the last epoch, an exclusion naming a layer the model does not have, p too large for a sparse-vs-dense pair)
is checked here, so that each problem points at the one field to change.
"""

from __future__ import annotations

import fnmatch
import re

from ltspec import architectures, datasets, masks, points
from ltspec.spec.errors import Problem
from ltspec.spec.messages import did_you_mean
from ltspec.spec.models import Spec


def check(spec: Spec, unknown: frozenset[tuple] = frozenset()) -> list[Problem]:
    """Every cross-field problem of an already type-checked spec.

    `unknown` holds the paths whose values are stand-ins for values the user got wrong (already reported): a check
    that reads one is skipped, so no problem is reasoned from a value the user never wrote.
    """
    def known(*paths: tuple) -> bool:
        return not any(bad[:len(path)] == path or path[:len(bad)] == bad for bad in unknown for path in paths)

    problems = _check_seeds(spec) if known(("seeds",)) else []
    problems += _check_dataset(spec) if known(("data", "dataset")) else []
    problems += _check_model(spec, known)
    problems += _check_schedule(spec) if known(("train", "epochs"), ("train", "schedule")) else []
    problems += _check_masks(spec, known)
    problems += _check_arms(spec, known)
    problems += _check_pairs(spec) if known(("measure",), ("arms",), ("masks",), ("train", "epochs")) else []
    problems += _check_analyses(spec) if known(("interpolation",), ("instability",), ("arms",), ("masks",),
                                               ("train", "epochs")) else []
    problems += _check_overlap(spec) if known(("mask_overlap",), ("masks",), ("seeds",)) else []
    return problems


def _check_seeds(spec: Spec) -> list[Problem]:
    """Each seed once: a repeat is the same trunk under the same key, so "2 seeds" would be one."""
    first: dict[int, int] = {}
    problems = []
    for index, seed in enumerate(spec.seeds):
        if seed in first:
            problems.append(Problem(("seeds", index), f"seed {seed} is listed twice (also seeds[{first[seed]}])",
                                    "each seed is a dense trunk of its own: remove the repeat"))
        first.setdefault(seed, index)
    return problems


def _check_dataset(spec: Spec) -> list[Problem]:
    """A dataset of the table, built in or a plugin's, or a stand-in of one."""
    if datasets.known(spec.data.dataset):
        return []
    names = list(datasets.DATASETS)
    hint = did_you_mean(spec.data.dataset, names) or "one of " + ", ".join(names)
    return [Problem(("data", "dataset"), f"unknown dataset `{spec.data.dataset}`", hint)]


def _check_model(spec: Spec, known) -> list[Problem]:
    arch = spec.model.arch
    if not known(("model", "arch")):
        return []
    if not architectures.known(arch):
        names = architectures.names()
        hint = did_you_mean(arch, names) or "one of " + ", ".join(names)
        return [Problem(("model", "arch"), f"unknown architecture `{arch}`", hint)]
    if spec.model.shortcut is not None and architectures.entry(arch)["shortcut"] is None:
        return [Problem(("model", "shortcut"), f"`{arch}` has no shortcut to choose",
                        "shortcut applies to resnet18/20/32/44/56; remove it")]
    if not known(("data", "dataset")) or not datasets.known(spec.data.dataset):
        return []
    kind, data = architectures.input_kind(arch), datasets.info(spec.data.dataset)
    if kind not in ("any", data.input_kind):
        suggestion = "`conv1d`, `mlp` or `lenet300100`" if data.input_kind == "signal" else "an image model"
        return [Problem(("model", "arch"), f"`{arch}` takes {_inputs(kind)} but `{data.name}` holds "
                        f"{_inputs(data.input_kind)}", f"use {suggestion} for {data.name}")]
    if data.input_size < architectures.min_input_size(arch):
        return [Problem(("model", "arch"), f"`{arch}` needs images of at least "
                        f"{architectures.min_input_size(arch)} pixels but `{data.name}` has {data.input_size}",
                        "use `convnet`, `resnet20` or an MLP for small images")]
    return []


def _inputs(kind: str) -> str:
    return {"image": "images", "signal": "1-D signals"}[kind]


def _check_schedule(spec: Spec) -> list[Problem]:
    train, problems = spec.train, []
    milestones = getattr(train.schedule, "milestones", [])
    for index, epoch in enumerate(milestones):
        if epoch >= train.epochs:
            problems.append(Problem(("train", "schedule", "milestones", index),
                                    f"milestone {epoch} is not inside the {train.epochs} training epochs",
                                    f"milestones must be below train.epochs = {train.epochs}"))
    if milestones != sorted(set(milestones)):
        problems.append(Problem(("train", "schedule", "milestones"), f"milestones {milestones} are not increasing"))
    if train.schedule.warmup_epochs >= train.epochs:
        problems.append(Problem(("train", "schedule", "warmup_epochs"),
                                f"warmup of {train.schedule.warmup_epochs} epochs leaves no training epochs",
                                f"keep it below train.epochs = {train.epochs}"))
    return problems


def _check_rewind(point: str, spec: Spec, path: tuple) -> list[Problem]:
    k = points.rewind_epoch(point)
    if k is not None and not 0 < k < spec.train.epochs:
        return [Problem(path, f"`{point}` rewinds to epoch {k}, outside the dense run's epochs 1..{spec.train.epochs - 1}",
                        "use `init` for epoch 0 and `trained` for the last epoch")]
    return []


def _check_exclusions(patterns: list[str], spec: Spec, path: tuple) -> list[Problem]:
    if not architectures.known(spec.model.arch):
        return []
    names = [layer.name for layer in architectures.prunable_layers(spec.model.arch)]
    problems = []
    for index, pattern in enumerate(patterns):
        if not any(fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name + ".weight", pattern)
                   for name in names):
            hint = did_you_mean(pattern, names) or f"{spec.model.arch}'s layers start " + ", ".join(names[:4])
            problems.append(Problem(path + (index,), f"`{pattern}` matches no prunable layer of {spec.model.arch}", hint))
    return problems


def _check_masks(spec: Spec, known) -> list[Problem]:
    problems = []
    for name, generator in spec.masks.items():
        path = ("masks", name)
        if not known(path):
            continue
        if known(("model",)):
            problems += _check_exclusions(generator.exclude or [], spec, path + ("exclude",))
        declared = masks.generator(generator.kind)
        problems += [Problem(path + where, message, hint) for where, message, hint in declared.check(generator)]
        if known(("train", "epochs")):
            for field, point in declared.start_points(generator).items():
                problems += _check_rewind(point, spec, path + (field,))
        for field, table in declared.sources(generator).items():
            problems += _check_source(spec, name, table, path + (field,))
    return problems


def _check_source(spec: Spec, name: str, table: str, path: tuple) -> list[Problem]:
    """A table made from another's masks names another table of the spec, and no circle of them."""
    if table == name:
        return [Problem(path, f"`{name}` cannot be made from its own masks", "name another [masks] table")]
    if table not in spec.masks:
        hint = did_you_mean(table, list(spec.masks)) or "the spec's tables: " + ", ".join(spec.masks)
        return [Problem(path, f"`{table}` is not a [masks] table of this spec", hint)]
    chain, seen = [name, table], {name}
    while chain[-1] not in seen:
        seen.add(chain[-1])
        upstream = masks.generator(spec.masks[chain[-1]].kind).sources(spec.masks[chain[-1]]).values()
        following = [source for source in upstream if source in spec.masks]
        if not following:
            return []
        chain.append(following[0])
    if chain[-1] != name:
        return []
    return [Problem(path, "the tables are made from each other's masks: " + " -> ".join(chain),
                    "one of them must be made by a generator of its own")]


def _check_arms(spec: Spec, known) -> list[Problem]:
    problems = []
    if spec.arms and not spec.masks and known(("masks",)):
        problems.append(Problem(("arms",), "arms train on masks, but the spec has no [masks] generator",
                                "add e.g. [masks.oneshot] kind = \"oneshot\", sparsities = [0.5]"))
    for name, arm in spec.arms.items():
        if not re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", name):
            problems.append(Problem(("arms", name), f"`{name}` cannot name an arm",
                                    "an arm name starts with a letter and has letters, digits, `_` or `-`"))
        if known(("arms", name), ("train", "epochs")):
            problems += _check_rewind(arm.start, spec, ("arms", name, "start"))
    return problems


def _term_problem(term: str, spec: Spec) -> str | None:
    """A term names a dense weight point (which wins over an arm of the same name, e.g. an arm called `reinit`),
    that point under the mask, or an arm's trained result."""
    point = points.parse(term)
    if point.dense or not point.masked and term in spec.arms:
        return None
    return f"`{term}` is not a weight set"


def _check_pairs(spec: Spec) -> list[Problem]:
    problems = _check_terms(spec, spec.measure.pairs, ("measure", "pairs"))
    sparsities = [(name, s) for name, generator in spec.masks.items() for s in generator.target_sparsities()]
    for pair in spec.measure.pairs:
        masked = [points.parse(term).sparse for term in pair]
        if masked[0] != masked[1]:
            for generator, sparsity in sparsities:
                bad = [p for p in spec.measure.p if p >= 1.0 - sparsity]
                if bad:
                    problems.append(Problem(
                        ("measure", "p"), f"p = {bad[0]} is too large for the sparse-vs-dense pair {list(pair)} at "
                        f"sparsity {sparsity:.3f} of mask generator `{generator}`",
                        f"a sparse network has only {1 - sparsity:.3f} of its weights; use p < 1 - sparsity"))
                    break
    return problems


def _check_terms(spec: Spec, pairs: list, path: tuple) -> list[Problem]:
    """Each side of each pair names a weight set, and a pair that needs a mask has masks to be on."""
    problems = []
    names = list(points.DENSE) + [f"{point}{points.MASKED}" for point in points.DENSE] + list(spec.arms)
    for index, pair in enumerate(pairs):
        for side, term in enumerate(pair):
            message = _term_problem(term, spec)
            if message:
                problems.append(Problem((*path, index, side), message, did_you_mean(term, names) or
                                        "use init, trained, reinit, rewind@k, X*mask, or an arm's name"))
                continue
            problems += _check_rewind(term.removesuffix("*mask"), spec, (*path, index, side))
        if any(points.parse(term).sparse for term in pair) and not spec.masks:
            problems.append(Problem((*path, index), f"{list(pair)} needs a mask, and the spec has none"))
    return problems


def _check_overlap(spec: Spec) -> list[Problem]:
    """Each comparison of masks asked for has masks to compare."""
    problems = []
    stepwise = [kind for kind, generator in masks.REGISTRY.items() if generator.trajectory]
    for index, what in enumerate(spec.mask_overlap.compare):
        path = ("mask_overlap", "compare", index)
        if what == "seeds" and len(spec.seeds) < 2:
            problems.append(Problem(path, "comparing masks across seeds needs two seeds or more",
                                    "list more seeds, e.g. seeds = [0, 1]"))
        if what == "generators" and not _tables_share_a_sparsity(spec):
            problems.append(Problem(path, "no two [masks] tables make masks at the same sparsity",
                                    "give two tables a sparsity in common (IMP's are 1 - (1 - rate)^r)"))
        if what == "rounds" and not any(_has_a_run(table) for table in spec.masks.values()):
            problems.append(Problem(path, "no [masks] table prunes in steps that could be followed",
                                    "add a table of kind " + " or ".join(f"`{kind}`" for kind in stepwise)
                                    + " (IMP with two rounds or more)"))
    return problems


def _has_a_run(table) -> bool:
    """A table whose masks along its run can be compared: a gradual run, or IMP with a ticket before its last."""
    trajectory = masks.generator(table.kind).trajectory
    return trajectory == "epochs" or trajectory == "tickets" and len(table.target_sparsities()) > 1


def _tables_share_a_sparsity(spec: Spec) -> bool:
    """Whether two tables have a target sparsity in common (to 6 decimals, as the compiler pairs them)."""
    seen: set[float] = set()
    for name in spec.masks:
        own = {round(sparsity, 6) for sparsity in _sparsities(spec, name, frozenset())}
        if own & seen:
            return True
        seen |= own
    return False


def _sparsities(spec: Spec, name: str, seen: frozenset[str]) -> list[float]:
    """A table's target sparsities; a table made from another's masks has its source's."""
    table = spec.masks[name]
    sources = [source for source in masks.generator(table.kind).sources(table).values()
               if source in spec.masks and source not in seen | {name}]
    if sources:
        return [sparsity for source in sources for sparsity in _sparsities(spec, source, seen | {name})]
    return table.target_sparsities()


def _check_analyses(spec: Spec) -> list[Problem]:
    """The interpolation pairs name weight sets; the arms to copy are arms of the spec."""
    problems = _check_terms(spec, spec.interpolation.pairs, ("interpolation", "pairs"))
    for table, settings in (("interpolation", spec.interpolation), ("instability", spec.instability)):
        for index, name in enumerate(settings.masks or []):
            if name not in spec.masks:
                hint = did_you_mean(name, list(spec.masks)) or "the spec's tables: " + ", ".join(spec.masks)
                problems.append(Problem((table, "masks", index), f"`{name}` is not a [masks] table of this spec",
                                        hint))
    for index, arm in enumerate(spec.instability.arms):
        if arm not in spec.arms:
            hint = did_you_mean(arm, list(spec.arms)) or ("the spec's arms: " + ", ".join(spec.arms) if spec.arms
                                                          else "add it under [arms] first")
            problems.append(Problem(("instability", "arms", index), f"`{arm}` is not an arm of this spec", hint))
    return problems
