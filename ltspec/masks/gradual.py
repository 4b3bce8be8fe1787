"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune"): prune θT while it trains.

Starting from θT, the network trains for `epochs` epochs with its own recipe (lr = train.lr / 10 unless given, as
for ADMM); from `start_epoch` to `end_epoch`, every `frequency` optimizer steps, it is pruned by magnitude to
s_t = s_f + (s_i − s_f)(1 − (t − t_0)/(t_end − t_0))³ — the cubic schedule from `initial_sparsity` s_i to the
target s_f — each mask nested in the last, and the last one exactly at the target at `end_epoch`. The first mask,
at s_i, lands at t_0 itself, as in Zhu & Gupta and TF-MOT's PolynomialDecay: from epoch 0 that is before the first
step, so no step trains dense. Pruned weights
stay zero after every step; the epochs after `end_epoch` let the network recover. The network it trains is the
`trained` start point of arms on its masks (as ADMM's is).
"""

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ltspec.hooks import Hook

from ltspec.masks.base import AtSparsities, Expansion, Generator, Made, Sources, per_sparsity
from ltspec.strict import EpochIndex, Epochs, Steps

if TYPE_CHECKING:
    from torch import Tensor

    from ltspec.pruning import Mask


class Gradual(AtSparsities):
    """Gradual magnitude pruning of θT during training, on a cubic schedule (Zhu & Gupta 2017)."""

    kind: Literal["gradual"]
    epochs: Epochs = Field(30, description="Epochs of training while (and after) pruning.")
    lr: float | None = Field(None, gt=0.0, description="Initial lr of that training; null: train.lr / 10.")
    initial_sparsity: float = Field(0.0, ge=0.0, lt=1.0, description="Sparsity at the first pruning step, s_i.")
    start_epoch: EpochIndex = Field(0, description="Epoch at whose start pruning begins, t_0.")
    end_epoch: Epochs | None = Field(None, description="Epoch at whose start the target is reached; null: "
                                     "half of `epochs`, leaving the rest to recover.")
    frequency: Steps = Field(100, description="Optimizer steps between pruning steps, Δt.")

    def pruning_end(self) -> int:
        return self.end_epoch if self.end_epoch is not None else max(self.start_epoch + 1, self.epochs // 2)


class GradualPruning(Hook):
    """Gradual magnitude pruning during training (Zhu & Gupta 2017) as a hook: at `start_step`, every
    `frequency` optimizer steps after it and at `end_step`, prune by magnitude to the cubic schedule's sparsity
    (from `initial` to `sparsity`), each mask nested in the last; pruned weights are zeroed after every step.
    Step t is the moment t optimizer steps have run: step 0 is before the first (`begin`), step t ≥ 1 right after
    the t-th (`after_step`)."""

    name = "gradual"

    def __init__(self, weights: Mapping[str, "Tensor"], sparsity: float, *, initial: float, start_step: int,
                 end_step: int, frequency: int, scope: str = "layerwise", exclude: Collection[str] = (),
                 snapshots: bool = False):
        self.weights, self.sparsity, self.initial = weights, sparsity, initial
        self.start_step, self.end_step, self.frequency = start_step, end_step, frequency
        self.scope, self.exclude = scope, exclude
        self.mask: "Mask | None" = None
        self.steps = 0
        # With `snapshots`, the mask at the target drawn from the weights before the first epoch and after each
        # (You et al.'s early-bird masks, whose distance from one epoch to the next says when the mask settles).
        self.snapshots: dict[int, "Mask"] | None = {} if snapshots else None

    def sparsity_at(self, step: int) -> float:
        """s_f + (s_i − s_f)(1 − (t − t_0)/(t_end − t_0))³, clamped to [t_0, t_end]."""
        progress = min(1.0, max(0, step - self.start_step) / max(1, self.end_step - self.start_step))
        return self.sparsity + (self.initial - self.sparsity) * (1.0 - progress) ** 3

    def begin(self, epoch: int) -> None:
        if epoch == 0:  # a fresh run (a resumed one has its mask restored)
            self._snapshot(0)
            self._prune_if_due()

    def end_epoch(self, epoch: int, values: dict[str, float]) -> None:
        self._snapshot(epoch)

    def _snapshot(self, epoch: int) -> None:
        if self.snapshots is not None:
            from ltspec.pruning import magnitude_mask

            self.snapshots[epoch] = magnitude_mask(self.weights, self.sparsity, scope=self.scope,
                                                   exclude=self.exclude).to("cpu")

    def after_step(self) -> None:
        self.steps += 1
        self._prune_if_due()

    def _prune_if_due(self) -> None:
        due = (self.start_step <= self.steps <= self.end_step
               and ((self.steps - self.start_step) % self.frequency == 0 or self.steps == self.end_step))
        if due:
            from ltspec.pruning import magnitude_mask

            self.mask = magnitude_mask(self.weights, self.sparsity_at(self.steps), scope=self.scope,
                                       previous=self.mask, exclude=self.exclude)
        if self.mask is not None:
            self.mask.apply_(self.weights)

    def state_dict(self) -> dict:
        tensors = {name: kept.cpu() for name, kept in self.mask.items()} if self.mask is not None else None
        state = {"steps": self.steps, "mask": tensors, "excluded": sorted(self.mask.excluded) if self.mask else []}
        if self.snapshots is not None:
            state["snapshots"] = {epoch: dict(snapshot.tensors) for epoch, snapshot in self.snapshots.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        from ltspec.pruning import Mask

        self.steps = state["steps"]
        if self.snapshots is not None:
            self.snapshots = {epoch: Mask(tensors, frozenset(self.exclude))
                              for epoch, tensors in state["snapshots"].items()}
        if state["mask"] is not None:
            device = next(iter(self.weights.values())).device
            self.mask = Mask({name: kept.to(device) for name, kept in state["mask"].items()},
                             frozenset(state["excluded"]))


def expand(settings: Gradual, plan: Expansion):
    extra = {**plan.base, "train": plan.recipe(settings.epochs, settings.lr or plan.dense_lr() / 10),
             "initial_sparsity": settings.initial_sparsity, "start_epoch": settings.start_epoch,
             "end_epoch": settings.pruning_end(), "frequency": settings.frequency}
    return per_sparsity(settings, plan, extra, epochs=settings.epochs)


def make(config: dict, sources: Sources) -> Made:
    from ltspec.nets import state_on_cpu

    network = sources.network("trained", mode="train")
    weights, excluded = sources.prunable(network)
    steps = sources.steps_per_epoch()
    pruning = GradualPruning(weights, config["sparsity"], initial=config["initial_sparsity"],
                             start_step=config["start_epoch"] * steps, end_step=config["end_epoch"] * steps,
                             frequency=config["frequency"], scope=config["scope"], exclude=excluded,
                             snapshots=sources.snapshots)
    history = sources.train(network, [pruning])
    return Made(pruning.mask, trained=state_on_cpu(network), history=history, snapshots=pruning.snapshots or {})


def check(settings: Gradual) -> list[tuple[tuple, str, str]]:
    problems = []
    if settings.pruning_end() <= settings.start_epoch:
        problems.append((("end_epoch",), f"pruning ends at epoch {settings.pruning_end()}, not after it starts "
                         f"(start_epoch = {settings.start_epoch})", "make end_epoch larger than start_epoch"))
    if settings.pruning_end() > settings.epochs:
        problems.append((("end_epoch",), f"pruning ends at epoch {settings.pruning_end()}, after the "
                         f"{settings.epochs} training epochs", "keep end_epoch <= epochs"))
    if any(settings.initial_sparsity >= target for target in settings.sparsities):
        problems.append((("initial_sparsity",), "the initial sparsity is not below every target",
                         "initial_sparsity must be smaller than each of sparsities"))
    return problems


GENERATOR = Generator("gradual", Gradual, frozenset({"trained", "data", "recipe"}), expand, make, check=check,
                      description="gradual magnitude pruning of θT during training (Zhu & Gupta 2017)",
                      trajectory="epochs",
                      version=2)  # 2: the first mask lands at t_0 (it came one pruning interval late from epoch 0)
