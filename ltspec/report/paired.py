"""Quantities per seed from one sweep point's runs, for comparisons paired by seed.

A seed's runs share θ0, the batch order and the dense trunk, so the difference between two of its results (lottery
minus reinit on the same masks, R_p minus p) cancels what the seed does to both. A value whose run has no finished
MLflow run is None, and the run is named, so a comparison can say which runs it lacks.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from ltspec.kinds import measure
from ltspec.layouts.base import ACCURACY, in_order
from ltspec.points import rp_metric
from ltspec.report.collect import Point, Results
from ltspec.spec import Spec


@dataclass(frozen=True)
class Series:
    """A quantity per seed; None for a seed one of whose runs is missing, and those runs named."""

    values: dict[int, float | None]
    missing: tuple[str, ...] = ()

    def present(self) -> list[float]:
        return [value for value in self.values.values() if value is not None]

    def mean(self) -> float | None:
        return statistics.fmean(self.present()) if self.present() else None

    def minus(self, other: Series | float) -> Series:
        if not isinstance(other, Series):
            return Series({seed: None if value is None else value - other for seed, value in self.values.items()},
                          self.missing)
        seeds = in_order([*self.values, *other.values])
        values = {seed: None if self.values.get(seed) is None or other.values.get(seed) is None
                  else self.values[seed] - other.values[seed] for seed in seeds}
        return Series(values, tuple(in_order(self.missing + other.missing)))


def average(series: Iterable[Series]) -> Series:
    """Per seed, the mean over the series; None for a seed that any of them lacks."""
    series = list(series)
    seeds = in_order(seed for one in series for seed in one.values)
    values = {}
    for seed in seeds:
        found = [one.values.get(seed) for one in series]
        values[seed] = None if not found or None in found else statistics.fmean(found)
    return Series(values, tuple(in_order(name for one in series for name in one.missing)))


def value_of(results: Results, point: Point, key: str, metric: str, seed: int, values: dict, missing: list) -> None:
    found = results.metrics.get(key, {}).get(metric)
    values[seed] = found
    if found is None:
        missing.append(f"{point.label + ': ' if point.label else ''}{point.plan.stage(key).describe()} [{key[:10]}]")


def dense_accuracy(results: Results, point: Point) -> Series:
    values, missing = {}, []
    for trunk in point.plan.trunks:
        value_of(results, point, trunk.key, ACCURACY, trunk.labels["seed"], values, missing)
    return Series(values, tuple(missing))


def arm_accuracy(results: Results, point: Point, generator: str, arm: str) -> dict[float, Series]:
    """Accuracy of one arm on one generator's masks, per target sparsity."""
    by_sparsity: dict[float, tuple[dict, list]] = {}
    for run in point.plan.arms:
        if run.generator == generator and run.arm == arm:
            values, missing = by_sparsity.setdefault(run.sparsity, ({}, []))
            value_of(results, point, run.stage, ACCURACY, point.plan.stage(run.trunk).labels["seed"], values, missing)
    return {sparsity: Series(values, tuple(missing)) for sparsity, (values, missing) in by_sparsity.items()}


def rp_series(results: Results, point: Point, generator: str | None, pair: tuple[str, str]) -> dict[tuple, Series]:
    """R_p of a pair (in either order) per (target sparsity, p), from the dense (None) or a generator's stages."""
    found: dict[tuple, tuple[dict, list]] = {}
    for stage in point.plan.stages:
        if stage.kind != measure.KIND or stage.labels.get("generator") != generator:
            continue
        written = next((tuple(p) for p in stage.config.pairs if tuple(p) in (pair, pair[::-1])), None)
        if written is None:
            continue
        for p in stage.config.p:
            values, missing = found.setdefault((stage.labels.get("sparsity"), p), ({}, []))
            value_of(results, point, stage.key, rp_metric(*written, p), stage.labels["seed"], values, missing)
    return {where: Series(values, tuple(missing)) for where, (values, missing) in found.items()}


def rp_minus_p(series: dict[tuple, Series]) -> Series:
    return average(one.minus(p) for (_, p), one in series.items())


def arm_with_start(spec: Spec, start: str) -> str | None:
    """The first arm that starts from `start` under the equal budget (the paper's T' = T)."""
    return next((name for name, arm in spec.arms.items()
                 if arm.start == start and arm.epochs in (None, spec.train.epochs)), None)


def arm_difference(results: Results, point: Point, generator: str, a: str, b: str) -> tuple[Series, str]:
    """Per seed, arm a minus arm b averaged over the sparsities both have; and their mean accuracies."""
    left, right = arm_accuracy(results, point, generator, a), arm_accuracy(results, point, generator, b)
    shared = [sparsity for sparsity in left if sparsity in right]
    first, second = average(left[s] for s in shared), average(right[s] for s in shared)
    return first.minus(second), f"{a} {percent(first.mean())} vs {b} {percent(second.mean())}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
