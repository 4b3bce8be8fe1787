"""ADMM pruning (Zhang et al., ECCV 2018): train from θT with the penalty ρ/2·‖W − Z + U‖², then keep Z's support.

The math is `ltspec.admm_hook`; here it is a generator: the ADMM training is a hook on the ordinary training harness,
with its own recipe (`epochs`, and lr = train.lr / 10 unless given). The network it trains is the `trained` start
point of arms on its masks (prune, then fine-tune, as Zhang et al.), and the one the evaluate stage scores.
"""

from typing import Literal

from pydantic import Field

from ltspec.masks.base import AtSparsities, Expansion, Generator, Made, Sources, per_sparsity
from ltspec.strict import Epochs, Steps


class Admm(AtSparsities):
    """ADMM pruning (Zhang et al. 2018) from the trained dense weights."""

    kind: Literal["admm"]
    rho: float = Field(1e-3, gt=0.0, description="Initial penalty weight.")
    rho_factor: float = Field(1.0, ge=1.0, description="rho is multiplied by this at every Z/U update.")
    rho_max: float = Field(1.0, gt=0.0, description="Upper bound of rho under its schedule.")
    epochs: Epochs = Field(30, description="Epochs of ADMM training.")
    update_every: Steps | None = Field(
        None, description="Optimizer steps between Z/U updates; null: once per epoch.")
    lr: float | None = Field(None, gt=0.0, description="ADMM training lr; null: train.lr / 10.")


def expand(settings: Admm, plan: Expansion):
    extra = {**plan.base, "rho": settings.rho, "rho_factor": settings.rho_factor, "rho_max": settings.rho_max,
             "update_every": settings.update_every,
             "train": plan.recipe(settings.epochs, settings.lr or plan.dense_lr() / 10)}
    return per_sparsity(settings, plan, extra, epochs=settings.epochs)


def make(config: dict, sources: Sources) -> Made:
    from ltspec.admm_hook import AdmmHook
    from ltspec.nets import state_on_cpu

    model = sources.network("trained", mode="train")
    weights, excluded = sources.prunable(model)
    admm = AdmmHook(weights, config["sparsity"], config["rho"], scope=config["scope"], exclude=excluded,
                    rho_factor=config["rho_factor"], rho_max=config["rho_max"], update_every=config["update_every"])
    history = sources.train(model, [admm])
    return Made(admm.mask(), trained=state_on_cpu(model), history=history)


GENERATOR = Generator("admm", Admm, frozenset({"trained", "data", "recipe"}), expand, make,
                      description="ADMM training from θT, pruned to the support of Z")
