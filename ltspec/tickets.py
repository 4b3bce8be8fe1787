"""Tickets as results: the trained network of one arm on one mask, found by what it is rather than by its key.

    ticket = ltspec.load("specs/quickstart.toml", generator="imp", sparsity=0.875, arm="lottery", seed=0, lr=0.01)
    ticket.model(x); ticket.mask.sparsity(); ticket.points["init"]   # with points=True

A ticket is named by its spec and its labels: the mask generator, the sparsity (0.875 finds the 87.5% mask), the
arm, the seed and, when the spec sweeps, the sweep values (`lr=0.01` or `**{"train.lr": 0.01}`). A label the spec
has only one value of may be left out. `export` writes it as plain files any torch program loads: the state dict,
the mask, and a JSON of what it is and how to build the model it fits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltspec.kinds.mask import MASK, MASK_EXCLUDED
from ltspec.kinds.train import FINAL
from ltspec.plan import Plan, Stage, compile_plan
from ltspec.plan.select import SelectionError, check, matches
from ltspec.spec import LoadedSpec, load_spec
from ltspec.store import CHECKPOINT, Store

if TYPE_CHECKING:
    from torch import Tensor, nn

    from ltspec.pruning import Mask

STATE, MASK_FILE, ABOUT = "state_dict.pt", "mask.pt", "ticket.json"


class TicketError(ValueError):
    """A ticket the spec does not have, or has not trained yet; the message says which and what to do."""


@dataclass(frozen=True)
class Ticket:
    """A trained arm: its network (final weights, mask applied), its mask, and optionally its trunk's dense points
    (`init` θ0, `reinit` θ0', `rewind@k` θk, `trained` θT) as state dicts."""

    model: nn.Module
    mask: Mask
    stage: Stage
    spec_name: str
    record: dict
    points: dict[str, dict[str, Tensor]] = field(default_factory=dict)

    def about(self) -> dict[str, Any]:
        """What the ticket is, as JSON: its labels, stage key, final metrics, and the `build_model` arguments."""
        return {"spec": self.spec_name, "stage_key": self.stage.key, "description": self.stage.describe(),
                "labels": self.stage.labels, "metrics": self.record["metrics"], "build_model": model_arguments(
                    self.stage), "files": {"state_dict": STATE, "mask": MASK_FILE}}


def model_arguments(stage: Stage) -> dict[str, Any]:
    """Keyword arguments of `ltspec.nets.build_model` that build the network a train stage trains (but the seed)."""
    return stage.config.model.build_arguments(stage.config.data.dataset)


def find(plan: Plan, *, generator: str | None = None, sparsity: float | None = None, arm: str | None = None,
         seed: int | None = None, **sweep: Any) -> Stage:
    """The one train stage of the plan with these labels; TicketError naming what is missing or ambiguous."""
    wanted = {name: (value,) for name, value in {"generator": generator, "sparsity": sparsity, "arm": arm,
                                                  "seed": seed, **sweep}.items() if value is not None}
    trains = plan.arm_stages
    try:
        check(Plan(plan.name, plan.spec_hash, trains, (), ()), wanted)
    except SelectionError as error:
        raise TicketError(f"{plan.name} has no such ticket: {error}") from None
    found = [stage for stage in trains if matches(stage, wanted)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise TicketError(f"{plan.name} has no ticket with {_listed(wanted)}")
    values = {name: sorted({str(stage.labels.get(name)) for stage in found}) for name in found[0].labels
              if name not in ("trunk", "round")}
    choices = "; ".join(f"{name.removeprefix('sweep.')} ({', '.join(seen)})" for name, seen in values.items()
                        if len(seen) > 1)
    raise TicketError(f"{len(found)} tickets of {plan.name} have {_listed(wanted) or 'no label given'}; "
                      f"say which by {choices}")


def _listed(wanted: dict) -> str:
    return ", ".join(f"{name}={values[0]}" for name, values in wanted.items())


def load(spec: str | Path | LoadedSpec, *, generator: str | None = None, sparsity: float | None = None,
         arm: str | None = None, seed: int | None = None, points: bool = False, device: str = "cpu",
         **sweep: Any) -> Ticket:
    """The trained ticket of `spec` with these labels, read from the spec's store (see the module docstring)."""
    import torch

    from ltspec.nets import build_model
    from ltspec.pruning import Mask

    loaded = spec if isinstance(spec, LoadedSpec) else load_spec(spec)
    stage = find(compile_plan(loaded), generator=generator, sparsity=sparsity, arm=arm, seed=seed, **sweep)
    store = Store(Path(loaded.spec.storage.root))
    if not store.is_complete(stage.key):
        raise TicketError(f"{stage.describe()} (stage {stage.key[:10]}) is not trained yet in {store.root}; "
                          f"run `ltspec run {loaded.path}` first")
    trunk, mask_key = stage.parents
    model = build_model(**model_arguments(stage), seed=stage.config.seed)
    model.load_state_dict(store.read_tensors(stage.key, FINAL))
    mask = Mask(store.read_tensors(mask_key, MASK), frozenset(store.read_json(mask_key, MASK_EXCLUDED)))
    dense = {}
    if points:
        dense = {path.stem: torch.load(path, map_location="cpu", weights_only=True)
                 for path in sorted(store.stage_dir(trunk).glob("*.pt")) if path.name != CHECKPOINT}
    return Ticket(model.to(device).eval(), mask, stage, loaded.spec.name, store.record(stage.key), dense)


def export(ticket: Ticket, out: Path) -> list[Path]:
    """Write the ticket to `out`: its state dict and mask (dicts of tensors for `torch.load(weights_only=True)`)
    and `ticket.json`, what it is; returns the files written."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu() for name, tensor in ticket.model.state_dict().items()}
    files = [out / STATE, out / MASK_FILE, out / ABOUT]
    torch.save(state, files[0])
    torch.save({name: kept.cpu() for name, kept in ticket.mask.tensors.items()}, files[1])
    files[2].write_text(json.dumps(ticket.about(), indent=2, sort_keys=True, default=str) + "\n")
    return files
