"""What a mask generator is, and the two interfaces it is handed: one by the compiler, one by the mask stage.

A generator is a `Generator` record, declared in one module of this package and listed once in its registry
(`ltspec/masks/__init__.py`). It says:
- `settings`: the pydantic model of its `[masks.NAME]` table, whose `kind` is a one-value Literal; the spec's
  union of mask tables, and so the JSON schema, is built from the registry;
- `consumes`: what its masks are made from (`init` θ0, `trained` θT, `ticket` the previous IMP round's result,
  `data` training batches, `recipe` a training recipe, `source` a mask of another table); the mask stage hands it
  exactly these;
- `sources`: the other `[masks.NAME]` tables whose masks it is made from (a control built on another generator's
  masks), so that the compiler expands those first;
- `expand`: how the compiler turns the table into mask stages (`Expansion`), yielding each mask's key in order;
- `make`: how a mask stage makes its mask from the stage config and its `Sources`.

Nothing here imports torch: the spec checker reads these modules. `make` functions import torch when called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import Field

from ltspec.strict import Fraction, NetworkMode, Scope, Strict, TensorKind

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from ltspec.pruning import Mask
    from ltspec.hooks import Hook

CONSUMABLE = frozenset({"init", "trained", "ticket", "data", "recipe", "source"})


class MaskSettings(Strict):
    """The settings every generator's table shares: how pruning is scoped, and which tensors it may touch."""

    scope: Scope = Field("layerwise", description="`layerwise`: the same sparsity in every prunable tensor (the "
                         "paper); `global`: one magnitude threshold over all of them.")
    exclude: list[str] | None = Field(
        None, description="Layers kept dense, by module name or fnmatch pattern (`features.0`, `layer*.conv1`). "
        "Default (null): the model's first convolution, as in the paper.")
    prunable: list[TensorKind] = Field(["conv", "linear"], min_length=1,
                                       description="Which weight kinds can be pruned.")

    def target_sparsities(self) -> list[float]:
        raise NotImplementedError


class AtSparsities(MaskSettings):
    """A generator that makes one mask per target sparsity, each independently of the others."""

    sparsities: list[Fraction] = Field(min_length=1, description="Target sparsities, each a mask of its own.")

    def target_sparsities(self) -> list[float]:
        return list(self.sparsities)


class Expansion(Protocol):
    """What the compiler offers a generator that expands its table into stages (`ltspec.plan.compile`)."""

    base: dict  # the trunk's canonical {"data", "model", "seed"}

    def common(self, settings: MaskSettings) -> dict:
        """The canonical settings every mask config holds: kind, scope, prunable, exclude (default made explicit),
        and the generator's `version` from 2 on."""

    def recipe(self, epochs: int | None = None, lr: float | None = None) -> dict:
        """The dense training recipe, with its epochs or initial lr replaced."""

    def dense_lr(self) -> float:
        """The initial lr of the dense run."""

    def mask(self, config: dict, *, sparsity: float, parents: tuple[str, ...] = (), epochs: int = 0,
             round: int | None = None, result: bool = True) -> str:
        """Add a mask stage (its parents: the trunk, unless given) and return its key. `result`: the mask counts
        as a result of its own in the plan's from-scratch total (an IMP round's result is its retrained ticket)."""

    def retrain(self, mask: str, start: str) -> str:
        """Add the stage that trains the dense recipe from `start` (a weight point) on `mask`; return its key."""

    def masks_of(self, table: str) -> list[MaskMade]:
        """The masks another table of the spec made on this trunk, in order (it is expanded first when the
        generator names it in `sources`)."""


class Sources(Protocol):
    """What a generator's `make` draws on (`ltspec.stages.mask`); each is loaded only when asked for, and only
    what the generator declared in `consumes` may be asked for."""

    device: torch.device
    snapshots: bool  # the plan compares this mask's run epoch by epoch: return `Made.snapshots`

    def network(self, point: str, *, mode: NetworkMode) -> nn.Module:
        """The model with the weights of `init`, `trained` or `ticket`, on the device, in `mode`: `eval` (batch norm
        normalises with its running statistics, dropout is off) or `train` (batch statistics). A generator that
        scores by a forward pass must choose, because batch norm makes the scores depend on it."""

    def prunable(self, model: nn.Module) -> tuple[dict[str, nn.Parameter], list[str]]:
        """The model's weights of the configured kinds, and the names of those excluded from pruning."""

    def previous_mask(self) -> Mask | None:
        """The previous IMP round's mask; None in the first round."""

    def source_mask(self) -> Mask:
        """The mask of another table this mask is made from (the stage's only parent)."""

    def batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch of training batches on the device, augmented as the recipe trains (seeded by the trunk)."""

    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input example, (C, H, W) or (C, L)."""

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one training epoch."""

    def train(self, model: nn.Module, hooks: list[Hook]) -> list:
        """Train `model` with the config's recipe and `hooks`, checkpointed and logged; returns the history."""


@dataclass(frozen=True)
class MaskMade:
    """A mask stage the compiler added: its key, its target sparsity, its IMP round (None for other generators)."""

    key: str
    sparsity: float
    round: int | None


@dataclass(frozen=True)
class Made:
    """A generator's result: the mask; the network it trained, if it trained one (the `trained` start point of
    arms on its masks, and the network the evaluate stage scores); the per-epoch history of that training; and,
    for a generator that prunes along a run when `Sources.snapshots` asks, the mask at its target it would draw
    after each epoch (epoch 0: before the first)."""

    mask: Mask
    trained: dict[str, Tensor] | None = None
    history: list = field(default_factory=list)
    snapshots: dict[int, Mask] = field(default_factory=dict)


def no_start_points(settings: Any) -> dict[str, str]:
    return {}


def no_problems(settings: Any) -> list[tuple[tuple, str, str]]:
    return []


def no_sources(settings: Any) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Generator:
    """One pruning method, as the compiler, the spec checker and the mask stage need it."""

    kind: str
    settings: type[MaskSettings]
    consumes: frozenset[str]
    expand: Callable[[Any, Expansion], Iterator[str]]
    make: Callable[[dict, Sources], Made]
    # The dense weight points its stages start from, by the field that names them (`{"reset": "rewind@10"}`), so
    # that the trunk keeps each `rewind@k` and the checker can point at the field.
    start_points: Callable[[Any], dict[str, str]] = no_start_points
    # Problems of a table that pydantic cannot see alone: (path inside the table, message, hint).
    check: Callable[[Any], list[tuple[tuple, str, str]]] = no_problems
    # The other tables whose masks its masks are made from, by the field that names them (`{"of": "snip"}`), so
    # that the compiler expands them first and the checker can point at the field.
    sources: Callable[[Any], dict[str, str]] = no_sources
    description: str = ""
    # How the mask-overlap `rounds` comparison follows its pruning: `tickets`, the masks at the last target drawn
    # from θT and every retrained ticket (IMP); `epochs`, the masks at its target it keeps after every epoch of its
    # run when `Sources.snapshots` asks (gradual); None, not at all.
    trajectory: Literal["tickets", "epochs"] | None = None
    # Raised when `make` makes a different mask from the same config (a defect fixed), so that masks made the old
    # way are never taken for new ones: from 2 on it is in every mask config of the generator, and so in its keys.
    # Version 1 stays out of the config, so that the keys of a generator that never changed stay as they were.
    version: int = 1

    def __post_init__(self):
        unknown = self.consumes - CONSUMABLE
        if unknown:
            raise ValueError(f"generator `{self.kind}` consumes {sorted(unknown)}; known: {sorted(CONSUMABLE)}")
        declared = self.settings.model_fields.get("kind")
        if declared is None or getattr(declared.annotation, "__args__", ()) != (self.kind,):
            raise ValueError(f"generator `{self.kind}`: its settings need `kind: Literal[{self.kind!r}]`")


def magnitude_pruning_of(point: str) -> Callable[[dict, Sources], Made]:
    """`make` of a generator that prunes a dense weight point (`init`, `trained`) by magnitude."""
    def make(config: dict, sources: Sources) -> Made:
        from ltspec.pruning import magnitude_mask

        weights, excluded = sources.prunable(sources.network(point, mode="eval"))
        return Made(magnitude_mask(weights, config["sparsity"], scope=config["scope"], exclude=excluded))

    return make


def per_sparsity(settings: AtSparsities, plan: Expansion, extra: dict | None = None,
                 epochs: int = 0) -> Iterator[str]:
    """The usual expansion: one mask stage from the trunk per target sparsity, its config the common settings,
    the sparsity and `extra`."""
    for sparsity in settings.target_sparsities():
        yield plan.mask({**plan.common(settings), "sparsity": sparsity, **(extra or {})}, sparsity=sparsity,
                        epochs=epochs)
