"""Weight points: the names a spec gives to sets of weights, and the one parser for them.

`init` θ0, `reinit` θ0' (another draw of the initialiser), `trained` θT and `rewind@k` θk are the dense weights of a
trunk, and so are `signs-reinit` (|θ0'| with θ0's signs) and `signs-constant` (one magnitude per layer with θ0's
signs), Zhou et al.'s sign-keeping controls (`ltspec.signs`); `X*mask` is dense point X under a mask; any other
name is an arm's trained result on a mask. A dense point wins over an arm of the same name (an arm called
`reinit`): a bare `reinit` always means θ0'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SIGNS_REINIT, SIGNS_CONSTANT = "signs-reinit", "signs-constant"
DENSE = ("init", "trained", "reinit", SIGNS_REINIT, SIGNS_CONSTANT)
REWIND = re.compile(r"^rewind@([0-9]+)$")
MASKED = "*mask"


@dataclass(frozen=True)
class Point:
    """One parsed weight-point name."""

    name: str  # as written
    base: str  # without the `*mask` suffix
    masked: bool  # `X*mask`: a dense point under the mask
    rewind: int | None  # k of `rewind@k`

    @property
    def dense(self) -> bool:
        """A weight point of the trunk itself (possibly under the mask), not an arm's result."""
        return self.base in DENSE or self.rewind is not None

    @property
    def sparse(self) -> bool:
        """Pruned weights: a point under the mask, or an arm trained on it."""
        return self.masked or not self.dense


def parse(name: str) -> Point:
    base = name.removesuffix(MASKED)
    match = REWIND.match(base)
    return Point(name, base, name.endswith(MASKED), int(match.group(1)) if match else None)


def rewind_epoch(name: str) -> int | None:
    """k of `rewind@k`, or None for any other point."""
    match = REWIND.match(name)
    return int(match.group(1)) if match else None


def alphas(count: int) -> list[float]:
    """`count` evenly spaced α from 0 to 1, both ends included and exact: where a path between two weight points
    is measured (`ltspec.interpolation`)."""
    if count < 2:
        raise ValueError(f"a path needs at least its two ends, got {count} points")
    return [step / (count - 1) for step in range(count)]


def path_metric(alpha: float) -> str:
    """`test_error/alpha0.3`, the metric name of the test error at α on a path between two weight points."""
    return f"test_error/alpha{alpha:.4g}"


def rp_metric(a: str, b: str, p: float) -> str:
    """`rp/init-mask/finetune/p0.2`, the metric name of R_p of a pair at p: MLflow metric names allow neither `*`
    nor `@`."""
    def clean(term: str) -> str:
        return term.replace("*mask", "-mask").replace("@", "-")

    return f"rp/{clean(a)}/{clean(b)}/p{p:g}"
