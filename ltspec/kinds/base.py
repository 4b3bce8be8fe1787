"""What a stage is, what a stage kind is, and what a kind's `run` is handed.

A stage is one node of a plan (`Stage`): its kind, its typed config, its parents. Its key hashes the kind's name,
the canonical form of the config (`canonical`) and the parents' keys (a Merkle DAG), so that two specs that need
the same dense run share one result.

A stage kind is a `StageKind` record, declared in one module of this package and listed once in its registry
(`ltspec/kinds/__init__.py`), as a mask generator is. It says:
- `config`: the frozen record of everything a stage of the kind computes from, and only that (the compiler builds
  it once, typed; names, tracking, storage and speed settings stay out, in `Stage.runtime` and `Stage.labels`);
- `run(stage, runtime, log) -> Outcome`: what the stage computes from its parents' artifacts, through the
  `Runtime` it is handed (`ltspec.stages.runtime` implements it), so that a kind module imports no torch at import
  time and the compiler can read it;
- `describe(stage)`: a short name for people; `run_name(stage)`: its MLflow run's name;
- `logged(stage, log_weights)`: the store files its MLflow run carries as artifacts;
- `place`: where `ltspec plan --tree` shows it: `trunk` (a tree of its own), `generator` (under its mask
  generator), `mask` (under the mask it is on, or under its trunk when it is on none).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel

from ltspec import architectures, datasets
from ltspec.spec.models import SCHEMA_VERSION

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from ltspec.hooks import Hook
    from ltspec.pruning import Mask
    from ltspec.recipe import Recipe
    from ltspec.store import Store

CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False)
OMITTED_IF_NONE = {"omitted_if_none": True}  # field metadata: a None value is left out of the canonical form
FLATTENED = {"flattened": True}  # field metadata: a mapping whose items stand beside the record's other fields
LogEpochs = Callable[[list], None]


def canonical(value: Any) -> Any:
    """A config as the plain JSON data its key hashes: records as dicts (fields marked `OMITTED_IF_NONE` left out
    when None, the items of a `FLATTENED` one beside the others), settings tables as their dump, tuples as lists."""
    if is_dataclass(value) and not isinstance(value, type):
        found = {}
        for f in fields(value):
            item = getattr(value, f.name)
            if f.metadata.get("flattened"):
                found.update(canonical(item))
            elif not (f.metadata.get("omitted_if_none") and item is None):
                found[f.name] = canonical(item)
        return found
    if isinstance(value, BaseModel):
        return canonical(value.model_dump())
    if isinstance(value, Mapping):
        return {name: canonical(item) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    return value


def stage_key(kind: str, config: Any, parents: tuple[str, ...]) -> str:
    """Content hash of a stage; the schema version is in it so that a format change never reuses old results."""
    payload = {"schema_version": SCHEMA_VERSION, "kind": kind, "config": canonical(config), "parents": list(parents)}
    return hashlib.sha256(CANONICAL_JSON.encode(payload).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class DataConfig:
    """The data a stage trains or evaluates on, as far as it changes the result (not where the files live)."""

    dataset: str
    batch_size: int
    augmentation: Literal["standard", "none"]
    validation_split: float


@dataclass(frozen=True)
class ModelConfig:
    """The network; `shortcut` only for an architecture that has one (ResNets), so other keys do not carry it."""

    arch: str
    width: float
    shortcut: str | None = field(default=None, metadata=OMITTED_IF_NONE)

    def build_arguments(self, dataset: str) -> dict[str, Any]:
        """`ltspec.nets.build_model`'s arguments (but the seed) for this model on `dataset`: the input shape comes
        from the dataset table, so building a model never loads the data."""
        data = datasets.info(dataset)
        return {"arch": self.arch, "num_classes": data.num_classes, "in_channels": data.in_channels,
                "input_size": data.input_size, "width": self.width, "shortcut": self.shortcut,
                "input_kind": data.input_kind}

    def weight_names(self, kinds: list[str]) -> list[str]:
        """Names of the model's weight tensors of the given kinds (conv, linear), in model order."""
        return architectures.weight_names(self.arch, self.shortcut, kinds)


@dataclass(frozen=True)
class Outcome:
    """What running a stage produced: final metrics, per-epoch history, small JSON artifacts."""

    metrics: dict[str, float]
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    artifacts: dict[str, Any] = field(default_factory=dict)


class Runtime(Protocol):
    """What a stage kind's `run` draws on (`ltspec.stages.runtime`): the device, the plan's stages, the store, and
    the operations every kind shares, each reading and writing the store under the keys it is given."""

    device: torch.device
    stages: dict[str, Stage]
    store: Store

    def model(self, data: DataConfig, model: ModelConfig, seed: int) -> nn.Module:
        """The network, initialised from `seed` (on the CPU)."""

    def loaders(self, stage: Stage, data: DataConfig, seed: int) -> tuple[Any, dict[str, Any]]:
        """The training loader (batch order seeded by `seed`) and the evaluation loaders by metric prefix."""

    def train(self, stage: Stage, network: nn.Module, recipe: Recipe, data: DataConfig, seed: int, log: LogEpochs,
              hooks: list[Hook] = (), epochs: int | None = None) -> tuple[list, Any]:
        """Train `network` on the device, checkpointed under the stage's key and resumed from its checkpoint;
        returns the per-epoch history and the last evaluation."""

    def write_weights(self, key: str, name: str, network: nn.Module) -> None:
        """Store a network's state under a stage's key."""

    def dense_point(self, trunk: str, name: str) -> dict[str, Tensor]:
        """A dense weight point of a trunk (`init`, `reinit`, `trained`, `rewind@k`)."""

    def start_weights(self, trunk: str, mask: str, start: str) -> dict[str, Tensor]:
        """The weights an arm on `mask` starts from."""

    def point_weights(self, trunk: str, term: str, results: Mapping[str, str],
                      mask: Mask | None) -> dict[str, Tensor]:
        """The whole state of a weight point (`ltspec.points`): a dense point of the trunk, under `mask` for
        `X*mask`, or the trained result of the stage that `results` names for it (an arm, a copy of an arm)."""

    def load_mask(self, key: str, name: str = "mask") -> Mask:
        """A mask stage's mask (or, by `name`, another mask it stored: `mask@e`, a snapshot of its run)."""

    def save_mask(self, key: str, mask: Mask, name: str = "mask") -> None:
        """Store a mask under a mask stage's key (as `name`: its mask, or a snapshot of its run)."""


class StageFailed(Exception):
    """A stage that cannot finish (a diverged loss, a missing dataset); the runner goes on with the others."""

    def __init__(self, stage: Stage, message: str):
        self.stage = stage
        super().__init__(f"stage {stage.key[:10]} ({stage.describe()}): {message}")


def sweep_point(labels: dict) -> str:
    """`lr=0.01`: the sweep values of a stage's labels."""
    return " ".join(f"{name.removeprefix('sweep.')}={value}" for name, value in labels.items()
                    if name.startswith("sweep."))


def named_with_its_point(stage: Stage) -> str:
    """`train lottery on imp r3 (87.5%) seed=0 lr=0.01`: what the stage is and which seed and sweep point it is
    of, so that no two runs of an experiment share a name."""
    return f"{stage.describe()} seed={stage.labels.get('seed')} {sweep_point(stage.labels)}".strip()


def nothing_logged(stage: Stage, log_weights: bool) -> list[str]:
    return []


@dataclass(frozen=True)
class StageKind:
    """One kind of stage, as the compiler, the runners, MLflow and the plan tree need it."""

    name: str
    config: type
    run: Callable[[Stage, Runtime, LogEpochs], Outcome]
    describe: Callable[[Stage], str]
    place: Literal["trunk", "generator", "mask"]
    logged: Callable[[Stage, bool], list[str]] = nothing_logged
    run_name: Callable[[Stage], str] = named_with_its_point


@dataclass(frozen=True)
class Stage:
    """One unit of work of a plan: a kind, its config (what the key hashes), its parents' keys.

    `runtime` says how to run it (speed settings, where the data lives, which rewind points to keep) and `labels`
    what it is to a person (seed, sweep values, generator, arm, round, sparsity): neither is in the key.
    """

    kind: StageKind
    config: Any
    parents: tuple[str, ...] = ()
    epochs: int = 0
    runtime: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    key: str = ""

    def __post_init__(self):
        if not isinstance(self.kind, StageKind) or not isinstance(self.config, self.kind.config):
            raise TypeError(f"a stage needs a StageKind and its config, got {self.kind!r} and {self.config!r}")
        object.__setattr__(self, "key", stage_key(self.kind.name, self.config, self.parents))

    def describe(self) -> str:
        """A short human name: `dense seed=0 lr=0.1`, `mask imp r3 (48.8%)`, `train lottery on imp r3 (87.5%)`."""
        return self.kind.describe(self)

    @property
    def trunk(self) -> str:
        """The key of the dense trunk the stage belongs to (its own, for a trunk)."""
        return self.labels.get("trunk") or self.key


def where_on_mask(stage: Stage) -> str:
    """`imp r3 (48.8%)`: the generator and the mask a stage is of."""
    labels = stage.labels
    if labels.get("round") is not None:
        mask = f"r{labels['round']} ({labels['sparsity']:.1%})"
    elif labels.get("sparsity") is not None:
        mask = f"{labels['sparsity']:.1%}"
    else:
        mask = ""
    return f"{labels.get('generator')} {mask}".strip()


def final_metrics(history: list, result: Any) -> dict[str, float]:
    """A training stage's final metrics: the last epoch's training loss and the last evaluation."""
    metrics = {"final_train_loss": history[-1][1]["train_loss"]} if history else {}
    if result is not None:
        metrics.update(final_test_accuracy=result.accuracy, final_test_loss=result.loss)
    return metrics


def stages_of(stages: Iterator[Stage] | tuple[Stage, ...], kind: StageKind) -> list[Stage]:
    return [stage for stage in stages if stage.kind == kind]
