"""The interpolate stage: the test error of (1 − α)·a + α·b at evenly spaced α between two weight points of one
trunk (and mask), and the error barrier of that path (Frankle et al., ICML 2020, `ltspec.interpolation`).

A pair is two arms' results on one mask, an arm and a dense point under the mask (`trained*mask`), two dense points,
or, for the instability analysis, an arm and a copy of it trained under other SGD noise (`lottery/copy1`, whose
stage the config names). The α series is the stage's history, one step per α, so MLflow draws the path; the
barrier and the error at every α are its final metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ltspec import points
from ltspec.kinds.base import DataConfig, LogEpochs, ModelConfig, Outcome, Runtime, Stage, StageKind, where_on_mask


@dataclass(frozen=True)
class InterpolateConfig:
    """The two ends (`pair`), the stage of each end that is a trained result (`results`: an arm's, or a copy's, by
    the name the pair gives it), how many α, and how batch norm gets its statistics: `recompute`d with a pass over
    the training batches of `seed`'s first epoch, or `interpolate`d with the weights."""

    pair: tuple[str, str]
    results: dict[str, str]
    points: int
    batch_norm: Literal["recompute", "interpolate"]
    data: DataConfig
    model: ModelConfig
    seed: int
    precision: Literal["fp32", "bf16"]


def copy_term(arm: str, copy: int) -> str:
    """`lottery/copy1`: how a pair names copy `copy` of an arm (MLflow's param names take `/`, not `#`)."""
    return f"{arm}/copy{copy}"


def run(stage: Stage, runtime: Runtime, log: LogEpochs) -> Outcome:
    from ltspec.interpolation import error_barrier, interpolate, recompute_batch_norm
    from ltspec.training import evaluate

    config: InterpolateConfig = stage.config
    trunk = stage.parents[0]
    mask = runtime.load_mask(stage.parents[1]) if len(stage.parents) > 1 else None
    start, end = (runtime.point_weights(trunk, term, config.results, mask) for term in config.pair)
    network = runtime.model(config.data, config.model, config.seed).to(runtime.device)
    train, evaluation = runtime.loaders(stage, config.data, config.seed)
    history = []
    for step, alpha in enumerate(points.alphas(config.points)):
        network.load_state_dict(interpolate(start, end, alpha))
        if config.batch_norm == "recompute":
            recompute_batch_norm(network, train.epoch(0))
        result = evaluate(network, evaluation["test"].epoch(0), precision=config.precision)
        history.append((step, {"alpha": alpha, "test_error": 1.0 - result.accuracy, "test_loss": result.loss}))
    errors = [values["test_error"] for _, values in history]
    losses = [values["test_loss"] for _, values in history]
    metrics = {"barrier": error_barrier(errors), "loss_barrier": error_barrier(losses),
               "error_start": errors[0], "error_end": errors[-1],
               **{points.path_metric(values["alpha"]): values["test_error"] for _, values in history}}
    return Outcome(metrics, history)


def describe(stage: Stage) -> str:
    ends = " ~ ".join(stage.config.pair)
    return f"interpolate {ends} on {where_on_mask(stage)}" if len(stage.parents) > 1 else f"interpolate {ends}"


KIND = StageKind("interpolate", InterpolateConfig, run, describe, place="mask")
