"""Spec -> Plan: the DAG of stages one spec needs, with shared work merged by key.

For every sweep point and seed: one dense trunk; for every mask generator, its masks (IMP as a chain of rounds,
each round's mask pruned from the previous round's ticket); on every mask, every arm; an evaluation of the pruned
dense weights; R_p measurements of the spec's pairs; the interpolations of the spec's `[interpolation]` pairs; for
the instability analysis, copies of the chosen arms trained under other SGD noise, each interpolated with its arm;
and the comparisons of masks `[mask_overlap]` asks for (across tables, across seeds, along a generator's run). A stage that two parts of the plan need (the dense run
that every generator starts from, the IMP round that *is* the lottery arm) is built twice with the same key and
stored once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import cached_property

from ltspec import architectures, datasets, masks, points
from ltspec.kinds import compare, dense, evaluate, interpolate, measure, train
from ltspec.kinds import mask as mask_kind
from ltspec.kinds.base import DataConfig, ModelConfig, Stage
from ltspec.masks.base import MaskMade, MaskSettings
from ltspec.recipe import Recipe
from ltspec.spec.load import LoadedSpec
from ltspec.spec.models import Spec


@dataclass(frozen=True)
class ArmRun:
    """One arm trained on one mask: the unit the paper compares, with its epoch budget."""

    trunk: str
    mask: str
    stage: str
    generator: str
    arm: str
    sparsity: float
    round: int | None
    prefix_epochs: int
    own_epochs: int
    equal_budget: bool


@dataclass(frozen=True)
class Plan:
    """The stages of a spec in an order where every parent comes before its children."""

    name: str
    spec_hash: str
    stages: tuple[Stage, ...]
    arms: tuple[ArmRun, ...]
    deliverables: tuple[str, ...]

    def stage(self, key: str) -> Stage:
        return self._index[key]

    @cached_property
    def _index(self) -> dict[str, Stage]:
        return {stage.key: stage for stage in self.stages}

    @cached_property
    def _ancestors(self) -> dict[str, frozenset[str]]:
        found: dict[str, frozenset[str]] = {}
        for stage in self.stages:
            found[stage.key] = frozenset(stage.parents).union(*(found[parent] for parent in stage.parents))
        return found

    def ancestors(self, key: str) -> frozenset[str]:
        return self._ancestors[key]

    def prefix_epochs(self, key: str) -> int:
        """Epochs trained by everything a stage depends on: the shared prefix of its result."""
        return sum(self._index[parent].epochs for parent in self._ancestors[key])

    @property
    def epochs(self) -> int:
        """Epochs this plan trains, each shared stage once."""
        return sum(stage.epochs for stage in self.stages)

    @property
    def naive_epochs(self) -> int:
        """Epochs if every result (dense run, mask, arm run) were trained from scratch with nothing shared."""
        return sum(self.prefix_epochs(key) + self._index[key].epochs for key in self.deliverables)

    @property
    def trunks(self) -> tuple[Stage, ...]:
        return tuple(stage for stage in self.stages if stage.kind == dense.KIND)

    @property
    def measures(self) -> tuple[Stage, ...]:
        """The stages that measure R_p: one per trunk for the dense pairs, one per mask for the masked ones."""
        return tuple(stage for stage in self.stages if stage.kind == measure.KIND)

    @property
    def interpolations(self) -> tuple[Stage, ...]:
        """The stages that measure the error along a path between two weight points (label `analysis`: `lmc`, an
        `[interpolation]` pair; `instability`, an arm and a copy of it)."""
        return tuple(stage for stage in self.stages if stage.kind == interpolate.KIND)

    @property
    def comparisons(self) -> tuple[Stage, ...]:
        """The stages that compare masks (label `comparison`: `generators`, `seeds` or `rounds`)."""
        return tuple(stage for stage in self.stages if stage.kind == compare.KIND)

    @property
    def arm_stages(self) -> tuple[Stage, ...]:
        """The stages that train an arm on a mask (an IMP round that is also its lottery arm among them), once each."""
        return tuple(self._index[key] for key in dict.fromkeys(arm.stage for arm in self.arms) if key in self._index)


class _Builder:
    """Collects stages in dependency order, merging the ones that share a key."""

    def __init__(self):
        self.stages: dict[str, Stage] = {}
        self.arms: list[dict] = []
        self.deliverables: dict[str, None] = {}

    def add(self, stage: Stage) -> str:
        known = self.stages.get(stage.key)
        if known is None:
            self.stages[stage.key] = stage
        else:
            known.labels.update(_merge_labels(known.labels, stage.labels))
            known.runtime.update(_merge_runtime(known.runtime, stage.runtime))
        return stage.key

    def deliver(self, key: str) -> None:
        self.deliverables[key] = None


def _merge_labels(known: dict, new: dict) -> dict:
    """A stage serving two roles keeps the labels they agree on, fills the ones it lacked, marks the rest `*`."""
    merged = {}
    for name, value in new.items():
        if known.get(name) is None:
            merged[name] = value
        elif known[name] != value and value is not None:
            merged[name] = "*"
    return merged


def _merge_runtime(known: dict, new: dict) -> dict:
    saves = sorted(set(known.get("saves", ())) | set(new.get("saves", ())))
    snapshots = {"snapshots": True} if new.get("snapshots") else {}
    return {"saves": saves, **snapshots} if saves else snapshots


def compile_plan(loaded: LoadedSpec) -> Plan:
    """Expand every sweep point and seed of a validated spec into one plan."""
    builder = _Builder()
    for point in loaded.points:
        sweep = {f"sweep.{path}": value for path, value in point.values}
        made = {seed: _compile_trunk(builder, point.spec, seed, sweep) for seed in point.spec.seeds}
        if "seeds" in point.spec.mask_overlap.compare:
            _compare_seeds(builder, point.spec, made, sweep)
    plan = Plan(loaded.spec.name, loaded.spec_hash, tuple(builder.stages.values()), (), tuple(builder.deliverables))
    arms = tuple(ArmRun(**arm, prefix_epochs=plan.prefix_epochs(arm["stage"])) for arm in builder.arms)
    return replace(plan, arms=arms)


def data_config(spec: Spec) -> DataConfig:
    """The data as it enters stage keys: augmentation only where the dataset takes it."""
    data = spec.data
    augment = data.augmentation if datasets.info(data.dataset).augmentable else "none"
    return DataConfig(data.dataset, data.batch_size, augment, data.validation_split)


def model_config(spec: Spec) -> ModelConfig:
    """The model with its shortcut, where the architecture has one, made explicit."""
    reference = architectures.entry(spec.model.arch)["shortcut"]
    return ModelConfig(spec.model.arch, spec.model.width, spec.model.shortcut or reference if reference else None)


def recipe(spec: Spec, epochs: int | None = None, lr: float | None = None) -> Recipe:
    """The dense training recipe; arms and training generators reuse it with their own epochs and lr."""
    train = spec.train
    return Recipe(epochs or train.epochs, lr or train.lr, train.optimizer, train.schedule, train.precision)


def runtime(spec: Spec) -> dict:
    return {"root": spec.data.root, "download": spec.data.download, "eval_batch_size": spec.data.eval_batch_size,
            "channels_last": spec.train.channels_last, "compile": spec.train.compile,
            "eval_every": spec.train.eval_every, "checkpoint_every": spec.storage.checkpoint_every,
            "checkpoint_seconds": spec.storage.checkpoint_seconds}


def rewind_points(spec: Spec) -> list[int]:
    """Every k for which some child needs the dense weights after k epochs."""
    starts = [arm.start for arm in spec.arms.values()]
    starts += [point for table in spec.masks.values() for point in masks.generator(table.kind).start_points(table).values()]
    starts += [points.parse(term).base for pair in spec.measure.pairs for term in pair]
    return sorted({k for k in map(points.rewind_epoch, starts) if k is not None})


def excluded_layers(spec: Spec, patterns: list[str] | None) -> list[str]:
    """Exclusion patterns as given, or the model's first conv (the paper never prunes it) when unset."""
    if patterns is not None:
        return sorted(patterns)
    first = architectures.first_conv(spec.model.arch)
    return [first] if first else []


def _compile_trunk(builder: _Builder, spec: Spec, seed: int, sweep: dict) -> dict[str, list[MaskMade]]:
    """One seed's trunk and everything on it; returns the masks of each table, for comparisons across seeds."""
    base = {"data": data_config(spec), "model": model_config(spec), "seed": seed}
    labels = {"seed": seed, **sweep}
    trunk_stage = Stage(dense.KIND, dense.DenseConfig(**base, train=recipe(spec)), epochs=spec.train.epochs,
                        runtime={**runtime(spec), "saves": rewind_points(spec)}, labels=dict(labels))
    trunk = builder.add(trunk_stage)
    builder.deliver(trunk)
    labels["trunk"] = trunk
    _compile_measure(builder, spec, trunk, None, {}, labels)
    _compile_interpolations(builder, spec, base, trunk, None, {}, labels)
    made: dict[str, list[MaskMade]] = {}
    for name in expansion_order(spec):
        table = spec.masks[name]
        expansion = _Expansion(builder, spec, base, trunk, {**labels, "generator": name}, made)
        made[name] = []
        for mask_key in masks.generator(table.kind).expand(table, expansion):
            mask_labels = expansion.labels_of[mask_key]
            made[name].append(MaskMade(mask_key, mask_labels["sparsity"], mask_labels["round"]))
            _compile_on_mask(builder, spec, base, trunk, mask_key, mask_labels)
        if "rounds" in spec.mask_overlap.compare:
            _compare_along_the_run(builder, spec, expansion, made[name])
    if "generators" in spec.mask_overlap.compare:
        _compare_generators(builder, spec, trunk, made, labels)
    return made


def expansion_order(spec: Spec) -> list[str]:
    """The `[masks]` tables in spec order, except that a table made from other tables' masks comes after them."""
    left, order = list(spec.masks), []
    while left:
        ready = [name for name in left if all(source in order or source not in spec.masks
                                              for source in _sources(spec, name))]
        order.append(ready[0] if ready else left[0])
        left.remove(order[-1])
    return order


def _sources(spec: Spec, name: str) -> list[str]:
    table = spec.masks[name]
    return list(masks.generator(table.kind).sources(table).values())


@dataclass
class _Expansion:
    """What a mask generator expands its table with (`ltspec.masks.base.Expansion`): stages added to the plan,
    labelled with the generator's name, sparsity and round."""

    builder: _Builder
    spec: Spec
    base: dict
    trunk: str
    labels: dict
    made: dict[str, list[MaskMade]]
    labels_of: dict = field(default_factory=dict)
    retrained: list[str] = field(default_factory=list)

    def common(self, settings: MaskSettings) -> dict:
        config = {"kind": settings.kind, "scope": settings.scope, "prunable": sorted(settings.prunable),
                  "exclude": excluded_layers(self.spec, settings.exclude)}
        version = masks.generator(settings.kind).version
        return config if version == 1 else {**config, "version": version}

    def recipe(self, epochs: int | None = None, lr: float | None = None) -> dict:
        return recipe(self.spec, epochs, lr)

    def dense_lr(self) -> float:
        return self.spec.train.lr

    def mask(self, config: dict, *, sparsity: float, parents: tuple[str, ...] = (), epochs: int = 0,
             round: int | None = None, result: bool = True) -> str:
        labels = {**self.labels, "sparsity": sparsity, "round": round}
        stage = Stage(mask_kind.KIND, mask_kind.MaskConfig.of(config), parents or (self.trunk,), epochs=epochs,
                      runtime=runtime(self.spec), labels=labels)
        key = self.builder.add(stage)
        if result:
            self.builder.deliver(key)
        self.labels_of[key] = labels
        return key

    def retrain(self, mask_key: str, start: str) -> str:
        stage = Stage(train.KIND, train.TrainConfig(**self.base, start=start, train=recipe(self.spec)),
                      (self.trunk, mask_key), epochs=self.spec.train.epochs, runtime=runtime(self.spec),
                      labels={**self.labels_of[mask_key], "arm": None})
        key = self.builder.add(stage)
        self.builder.deliver(key)
        self.retrained.append(key)
        return key

    def masks_of(self, table: str) -> list[MaskMade]:
        return self.made[table]


def _compile_on_mask(builder, spec, base, trunk, mask_key, mask_labels) -> None:
    arm_keys = {}
    for arm_name, arm in spec.arms.items():
        epochs = arm.epochs or spec.train.epochs
        stage = Stage(train.KIND, train.TrainConfig(**base, start=arm.start, train=recipe(spec, epochs, arm.lr)),
                      (trunk, mask_key), epochs=epochs, runtime=runtime(spec), labels={**mask_labels, "arm": arm_name})
        key = arm_keys[arm_name] = builder.add(stage)
        builder.deliver(key)
        builder.arms.append(dict(
            trunk=trunk, mask=mask_key, stage=key, generator=mask_labels["generator"], arm=arm_name,
            sparsity=mask_labels["sparsity"], round=mask_labels["round"], own_epochs=epochs,
            equal_budget=epochs == spec.train.epochs))
    scored = evaluate.EvaluateConfig(base["data"], base["model"], spec.train.precision)
    builder.add(Stage(evaluate.KIND, scored, (trunk, mask_key), runtime=runtime(spec), labels=dict(mask_labels)))
    _compile_measure(builder, spec, trunk, mask_key, arm_keys, mask_labels)
    _compile_interpolations(builder, spec, base, trunk, mask_key, arm_keys, mask_labels)
    _compile_instability(builder, spec, base, trunk, mask_key, arm_keys, mask_labels)


def _compile_measure(builder, spec, trunk, mask_key, arm_keys, labels) -> None:
    """One R_p stage per trunk for the dense pairs, and one per mask for the pairs that involve the mask."""
    pairs = tuple(tuple(pair) for pair in spec.measure.pairs
                  if any(points.parse(term).sparse for term in pair) == (mask_key is not None))
    if not pairs:
        return
    used = sorted({term for pair in pairs for term in pair if not points.parse(term).dense})
    config = measure.MeasureConfig(pairs, {arm: arm_keys[arm] for arm in used}, tuple(sorted(spec.measure.p)),
                                   tuple(sorted(spec.measure.tensors)), tuple(sorted(spec.measure.exclude)),
                                   model_config(spec))
    parents = (trunk,) if mask_key is None else (trunk, mask_key, *(arm_keys[arm] for arm in used))
    builder.add(Stage(measure.KIND, config, parents, runtime=runtime(spec), labels=dict(labels)))


def copy_seed(seed: int, copy: int) -> int:
    """The data order of copy `copy` of an arm of the trunk of `seed`: derived, never the trunk's own in practice."""
    return int.from_bytes(hashlib.sha256(f"copy:{seed}:{copy}".encode()).digest()[:4], "big")


def _interpolation(spec, base, trunk, mask_key, pair, results, labels) -> Stage:
    settings = spec.interpolation
    config = interpolate.InterpolateConfig(tuple(pair), results, settings.points, settings.batch_norm, base["data"],
                                           base["model"], base["seed"], spec.train.precision)
    parents = (trunk,) if mask_key is None else (trunk, mask_key, *dict.fromkeys(results.values()))
    return Stage(interpolate.KIND, config, parents, runtime=runtime(spec), labels=labels)


def _on(tables: list[str] | None, labels: dict) -> bool:
    """Whether an analysis limited to `tables` (None: every table) runs here: on the trunk, or on a mask of one."""
    return tables is None or labels.get("generator") is None or labels["generator"] in tables


def _compile_interpolations(builder, spec, base, trunk, mask_key, arm_keys, labels) -> None:
    """One interpolation per `[interpolation]` pair: on the trunk for a pair of dense points, on every mask for a
    pair with a sparse side."""
    if not _on(spec.interpolation.masks, labels):
        return
    for pair in spec.interpolation.pairs:
        if any(points.parse(term).sparse for term in pair) != (mask_key is not None):
            continue
        results = {term: arm_keys[term] for term in pair if not points.parse(term).dense}
        builder.add(_interpolation(spec, base, trunk, mask_key, pair, results, {**labels, "analysis": "lmc"}))


def _compile_instability(builder, spec, base, trunk, mask_key, arm_keys, labels) -> None:
    """Each chosen arm's copies on this mask, trained from the arm's start with a data order of their own, and the
    interpolation between the arm and each copy."""
    if not _on(spec.instability.masks, labels):
        return
    for arm_name in spec.instability.arms:
        arm = spec.arms[arm_name]
        epochs = arm.epochs or spec.train.epochs
        for copy in range(1, spec.instability.copies + 1):
            config = train.TrainConfig(**base, start=arm.start, train=recipe(spec, epochs, arm.lr),
                                       data_seed=copy_seed(base["seed"], copy))
            copied = {**labels, "arm": arm_name, "copy": copy}
            key = builder.add(Stage(train.KIND, config, (trunk, mask_key), epochs=epochs, runtime=runtime(spec),
                                    labels=copied))
            builder.deliver(key)
            term = interpolate.copy_term(arm_name, copy)
            ends = {arm_name: arm_keys[arm_name], term: key}
            builder.add(_interpolation(spec, base, trunk, mask_key, (arm_name, term), ends,
                                       {**copied, "analysis": "instability"}))


def _comparison(spec, masks, parents, labels, drawn=None) -> Stage:
    return Stage(compare.KIND, compare.CompareConfig(tuple(masks), drawn), tuple(parents), runtime=runtime(spec),
                 labels=labels)


def _compare_generators(builder, spec, trunk, made, labels) -> None:
    """Every two tables' masks at a sparsity they share, on one trunk."""
    at: dict[float, list[tuple[str, MaskMade]]] = {}
    for name, found in made.items():
        for mask in found:
            at.setdefault(round(mask.sparsity, 6), []).append((name, mask))
    for sparsity, masks_there in at.items():
        for index, (name, mask) in enumerate(masks_there):
            for other, other_mask in masks_there[index + 1:]:
                builder.add(_comparison(spec, ((0, mask_kind.MASK), (1, mask_kind.MASK)), (mask.key, other_mask.key),
                                        {**labels, "comparison": "generators", "a": name, "b": other,
                                         "sparsity": sparsity}))


def _compare_seeds(builder, spec, made, sweep) -> None:
    """Every two seeds' masks of each table, mask by mask (the same table makes the same masks on every trunk)."""
    seeds = list(made)
    for name in spec.masks:
        for position, mask in enumerate(made[seeds[0]][name]):
            for index, seed in enumerate(seeds):
                for other in seeds[index + 1:]:
                    first, second = made[seed][name][position], made[other][name][position]
                    labels = {"seed": None, **sweep, "trunk": builder.stages[first.key].trunk, "generator": name,
                              "comparison": "seeds", "a": seed, "b": other, "sparsity": mask.sparsity,
                              "round": mask.round}
                    builder.add(_comparison(spec, ((0, mask_kind.MASK), (1, mask_kind.MASK)),
                                            (first.key, second.key), labels))


def _compare_along_the_run(builder, spec, expansion, made) -> None:
    """The masks a table passes through while it prunes, each with the next: for IMP, the masks at its last target
    drawn from θT and from each round's retrained ticket but the last (round r's mask is drawn from ticket r − 1,
    so the last of these masks is IMP's own); for gradual pruning, the snapshots its run keeps."""
    table = spec.masks[expansion.labels["generator"]]
    trajectory = masks.generator(table.kind).trajectory
    labels = {**expansion.labels, "comparison": "rounds"}
    tickets = expansion.retrained[:-1]  # the last ticket trained on the last mask, which is its own at the target
    if trajectory == "tickets" and tickets:
        drawn = compare.Drawn(made[-1].sparsity, table.scope, tuple(sorted(table.prunable)),
                              tuple(excluded_layers(spec, table.exclude)), model_config(spec))
        points_of = ((0, dense.TRAINED), *((index, train.FINAL) for index in range(1, len(tickets) + 1)))
        builder.add(_comparison(spec, points_of, (expansion.trunk, *tickets),
                                {**labels, "sparsity": made[-1].sparsity}, drawn))
    if trajectory == "epochs":
        for mask in made:
            stage = builder.stages[mask.key]
            stage.runtime["snapshots"] = True
            snapshots = tuple((0, mask_kind.snapshot_name(epoch)) for epoch in range(stage.epochs + 1))
            builder.add(_comparison(spec, snapshots, (mask.key,), {**expansion.labels_of[mask.key], **labels}))
