"""The paper's five claims, checked on the user's own runs.

Each claim rests on checks. A check is one paired comparison: for every seed, a difference between two quantities
that come from the same seed's runs (lottery minus reinit on the same masks, R_p minus p, the dense accuracy at
the high lr minus at the low lr), so seed-to-seed noise that both sides share cancels. Over the seeds the check
has a mean difference and a 95% Student-t confidence interval, and an outcome:

- `> 0`: holds when the interval lies above 0, does not hold when it lies below, inconclusive when it contains 0;
- `≈ 0 (± m)`: holds when the interval lies inside [-m, m], does not hold when it lies wholly outside;
- `≥ -m`: holds when the interval lies above -m, does not hold when it lies below.

A check with fewer than two seeds whose runs are all there is "not enough runs" and names the missing runs. A
claim does not hold when one of its checks does not; otherwise it lacks runs when one lacks them, is inconclusive
when one is, and holds when all hold. A claim the spec has no runs for (no lr sweep, no reinit arm, no R_p pair)
is "not measured", saying what the spec would need.

Accuracy checks average each seed's difference over the sparsities both sides share; R_p checks average over the
measured sparsities and p. So one check stands for one curve of a figure, not one point of it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from ltspec.report.collect import Point, Results
from ltspec.report.paired import (Series, arm_accuracy, arm_difference, arm_with_start, average, dense_accuracy,
                                  number, percent, rp_minus_p, rp_series)
from ltspec.report.tables import in_order

LR = "train.lr"
ACCURACY_MARGIN = 0.01  # "matches the dense net": within one accuracy point
RP_MARGIN = 0.05  # "R_p ≈ p": the paper's independent pairs read 20.1-20.4% at p = 20%; Fig. 5 bars sit near p

HOLDS, FAILS, INCONCLUSIVE, NOT_ENOUGH, NOT_MEASURED = (
    "holds", "does not hold", "inconclusive", "not enough runs", "not measured")

STATEMENTS = {
    1: "The winning property (lottery beats reinit and matches dense) appears at the low lr only",
    2: "The low lr leaves θT correlated with θ0 (R_p(init, trained) > p) and gives a worse dense net",
    3: "R_p(init⊙m, finetune) > p at the low lr and ≈ p at the high lr; R_p(reinit⊙m, finetune) ≈ p",
    4: "At equal budget, pruning & fine-tuning beats lottery and reinit, for every mask generator",
    5: "Good sparse weights correlate with θT, not θ0: R_p(finetune, trained) > R_p(finetune, init) ≈ p (Table 1)",
}

# The paper's numbers (PAPER.md section 3): dense top-1 by (arch, dataset) and lr; Table 1 by (arch, dataset) as
# (R_p(finetune, init), R_p(finetune, trained)) at p = 0.2, sparsity 0.5, ADMM masks, lr 0.1.
PAPER_DENSE = {("resnet20", "cifar10"): {0.01: 0.8962, 0.1: 0.917},
               ("mobilenetv2", "cifar10"): {0.01: 0.9220, 0.1: 0.9386},
               ("mobilenetv2", "cifar100"): {0.01: 0.7310, 0.1: 0.7476},
               ("resnet20", "cifar100"): {0.01: 0.6310, 0.1: 0.6715},
               ("vgg11", "cifar100"): {0.01: 0.6774, 0.1: 0.6983}}
PAPER_TABLE1 = {("resnet20", "cifar100"): (0.2036, 0.6397), ("mobilenetv2", "cifar100"): (0.2011, 0.6471),
                ("vgg11", "cifar100"): (0.2041, 0.4932), ("mobilenetv2", "cifar10"): (0.2026, 0.4936),
                ("vgg11", "cifar10"): (0.2021, 0.4808)}
PAPER_TICKET = {("resnet20", "cifar10", 0.01): "best ticket 90.04% at 62% sparsity, dense 89.62%"}


@dataclass(frozen=True)
class Check:
    """One paired comparison: `what` at `where`, a difference per seed, and the relation the claim needs."""

    where: str
    what: str
    relation: str  # ">", "≈" or "≳"
    diff: Series
    percent: bool
    sides: str = ""
    paper: str = ""

    @property
    def margin(self) -> float:
        return {">": 0.0, "≈": RP_MARGIN, "≳": ACCURACY_MARGIN}[self.relation]

    @property
    def interval(self) -> tuple[float, float, float] | None:
        """Mean difference and its 95% Student-t interval, or None below two seeds."""
        from scipy.stats import t

        values = self.diff.present()
        if len(values) < 2:
            return None
        mean, spread = statistics.fmean(values), statistics.stdev(values) / len(values) ** 0.5
        half = float(t.ppf(0.975, len(values) - 1)) * spread
        return mean, mean - half, mean + half

    @property
    def outcome(self) -> str:
        if self.interval is None:
            return NOT_ENOUGH
        _, low, high = self.interval
        margin = self.margin
        if self.relation == ">":
            return HOLDS if low > 0 else FAILS if high <= 0 else INCONCLUSIVE
        if self.relation == "≈":
            return HOLDS if -margin <= low and high <= margin else FAILS if low > margin or high < -margin \
                else INCONCLUSIVE
        return HOLDS if low >= -margin else FAILS if high < -margin else INCONCLUSIVE

    def requirement(self) -> str:
        scale = 100 if self.percent else 1
        return {">": "> 0", "≈": f"≈ 0 (±{self.margin * scale:g})", "≳": f"≥ -{self.margin * scale:g}"}[self.relation]


@dataclass(frozen=True)
class Claim:
    number: int
    checks: tuple[Check, ...]
    unmeasured: tuple[str, ...] = ()

    @property
    def statement(self) -> str:
        return STATEMENTS[self.number]

    @property
    def verdict(self) -> str:
        outcomes = {check.outcome for check in self.checks}
        if not outcomes:
            return NOT_MEASURED
        for verdict in (FAILS, NOT_ENOUGH, INCONCLUSIVE):
            if verdict in outcomes:
                return verdict
        return HOLDS

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(in_order(name for check in self.checks for name in check.diff.missing))


def place(point: Point) -> str:
    """Model and dataset, and any swept value other than them and the lr."""
    others = [f"{path.rsplit('.', 1)[-1]}={value}" for path, value in point.values
              if path not in (LR, "model.arch", "data.dataset")]
    return " ".join([f"{point.spec.model.arch}/{point.spec.data.dataset}", *others])


def lr_groups(results: Results) -> list[tuple[Point, Point]]:
    """(lowest-lr point, highest-lr point) for each combination of the other swept values that sweeps the lr."""
    groups: dict[tuple, list[Point]] = {}
    for point in results.points:
        groups.setdefault(tuple(item for item in point.values if item[0] != LR), []).append(point)
    pairs = []
    for points in groups.values():
        ordered = sorted(points, key=lambda point: point.spec.train.lr)
        if ordered[0].spec.train.lr != ordered[-1].spec.train.lr:
            pairs.append((ordered[0], ordered[-1]))
    return pairs


def at_highest_lr(results: Results) -> list[Point]:
    """Every point at the highest lr of its group (every point when the lr is not swept): the paper's Sec. 5."""
    high = {id(pair[1]) for pair in lr_groups(results)}
    low = {id(pair[0]) for pair in lr_groups(results)}
    return [point for point in results.points if id(point) in high or id(point) not in low]


def generators(point: Point) -> list[str]:
    return list(point.spec.masks)


def lr_of(point: Point) -> str:
    return f"lr={point.spec.train.lr:g}"


# The claims


def claim_1(results: Results) -> Claim:
    checks = []
    for low, high in lr_groups(results):
        lottery, reinit = arm_with_start(low, "init"), arm_with_start(low, "reinit")
        if lottery is None or reinit is None or arm_with_start(high, "init") != lottery \
                or arm_with_start(high, "reinit") != reinit:
            continue
        for generator in generators(low):
            where = f"{place(low)}, {generator} masks"
            gap_low, sides_low = arm_difference(results, low, generator, lottery, reinit)
            gap_high, sides_high = arm_difference(results, high, generator, lottery, reinit)
            tickets = arm_accuracy(results, low, generator, lottery)
            ticket = average(tickets.values()).minus(dense_accuracy(results, low))
            paper = PAPER_TICKET.get((low.spec.model.arch, low.spec.data.dataset, low.spec.train.lr), "")
            checks += [
                Check(where, f"{lottery} − {reinit} at {lr_of(low)}", ">", gap_low, True, sides_low),
                Check(where, f"{lottery} − dense at {lr_of(low)}", "≳", ticket, True,
                      best_ticket(tickets), paper),
                Check(where, f"({lottery} − {reinit}) at {lr_of(low)} − at {lr_of(high)}", ">",
                      gap_low.minus(gap_high), True, f"{sides_low}; {sides_high}"),
            ]
    return Claim(1, tuple(checks), () if checks else (
        "needs an lr sweep (`[sweep] \"train.lr\"`) and arms that start from init and reinit",))


def best_ticket(tickets: dict[float, Series]) -> str:
    means = {sparsity: one.mean() for sparsity, one in tickets.items() if one.mean() is not None}
    if not means:
        return ""
    sparsity = max(means, key=means.get)
    return f"best ticket {percent(means[sparsity])}% at {sparsity:.0%} target sparsity"


def claim_2(results: Results) -> Claim:
    checks, unmeasured = [], []
    for low, high in lr_groups(results):
        where = place(low)
        dense_low, dense_high = dense_accuracy(results, low), dense_accuracy(results, high)
        rp_low = rp_series(results, low, None, ("init", "trained"))
        rp_high = rp_series(results, high, None, ("init", "trained"))
        if rp_low and rp_high:
            checks += [Check(where, f"R_p(init, trained) − p at {lr_of(low)}", ">", rp_minus_p(rp_low), False),
                       Check(where, f"R_p(init, trained) at {lr_of(low)} − at {lr_of(high)}", ">",
                             rp_minus_p(rp_low).minus(rp_minus_p(rp_high)), False)]
        else:
            unmeasured.append(f"{where}: R_p(init, trained) (add the pair [\"init\", \"trained\"] to [measure])")
        paper = PAPER_DENSE.get((low.spec.model.arch, low.spec.data.dataset), {})
        quoted = [f"{percent(paper.get(point.spec.train.lr))}%" for point in (high, low)]
        checks.append(Check(where, f"dense at {lr_of(high)} − at {lr_of(low)}", ">", dense_high.minus(dense_low),
                            True, f"{percent(dense_high.mean())} vs {percent(dense_low.mean())}",
                            f"{quoted[0]} vs {quoted[1]}" if paper else ""))
    if not lr_groups(results):
        unmeasured.append("needs an lr sweep (`[sweep] \"train.lr\"`)")
    return Claim(2, tuple(checks), tuple(unmeasured))


def claim_3(results: Results) -> Claim:
    checks = []
    for low, high in lr_groups(results):
        finetune = arm_with_start(low, "trained")
        for generator in generators(low) if finetune else ():
            where = f"{place(low)}, {generator} masks"
            series = {(index, start): rp_series(results, point, generator, (f"{start}*mask", finetune))
                      for index, point in enumerate((low, high)) for start in ("init", "reinit")}
            if not all(series.values()):
                continue
            pair = f"R_p(init⊙m, {finetune}) − p"
            checks += [Check(where, f"{pair} at {lr_of(low)}", ">", rp_minus_p(series[0, "init"]), False),
                       Check(where, f"{pair} at {lr_of(high)}", "≈", rp_minus_p(series[1, "init"]), False)]
            checks += [Check(where, f"R_p(reinit⊙m, {finetune}) − p at {lr_of(point)}", "≈",
                             rp_minus_p(series[index, "reinit"]), False) for index, point in enumerate((low, high))]
    return Claim(3, tuple(checks), () if checks else (
        "needs an lr sweep and the pairs [\"init*mask\", F] and [\"reinit*mask\", F], F an arm that starts from "
        "trained",))


def claim_4(results: Results) -> Claim:
    checks = []
    for point in at_highest_lr(results):
        finetune = arm_with_start(point, "trained")
        others = [arm for arm in (arm_with_start(point, "init"), arm_with_start(point, "reinit")) if arm]
        for generator in generators(point) if finetune else ():
            for other in others:
                diff, sides = arm_difference(results, point, generator, finetune, other)
                checks.append(Check(f"{place(point)}, {lr_of(point)}, {generator} masks", f"{finetune} − {other}",
                                    ">", diff, True, sides))
    return Claim(4, tuple(checks), () if checks else (
        "needs an arm that starts from trained and one from init or reinit, at the equal budget",))


def claim_5(results: Results) -> Claim:
    checks, unmeasured = [], []
    for point in results.points:
        finetune = arm_with_start(point, "trained")
        for generator in generators(point) if finetune else ():
            to_init = rp_series(results, point, generator, (finetune, "init"))
            to_trained = rp_series(results, point, generator, (finetune, "trained"))
            paper = PAPER_TABLE1.get((point.spec.model.arch, point.spec.data.dataset))
            for sparsity, p in sorted(to_init):
                where = f"{place(point)}, {lr_of(point)}, {generator} {sparsity:.0%}, p={p:g}"
                init, trained = to_init[sparsity, p], to_trained.get((sparsity, p))
                if trained is not None:
                    checks.append(Check(
                        where, f"R_p({finetune}, trained) − R_p({finetune}, init)", ">", trained.minus(init), False,
                        f"{number(trained.mean())} vs {number(init.mean())}",
                        f"{paper[1]:.4f} vs {paper[0]:.4f}" if paper else ""))
                checks.append(Check(where, f"R_p({finetune}, init) − p", "≈", init.minus(p), False,
                                    number(init.mean()), f"{paper[0]:.4f}" if paper else ""))
            if to_init and not to_trained:
                unmeasured.append(f"{place(point)}, {generator}: R_p({finetune}, trained) (add the pair "
                                  f"[\"{finetune}\", \"trained\"] to [measure])")
    return Claim(5, tuple(checks), tuple(unmeasured) if checks else (
        "needs the pairs [F, \"init\"] and [F, \"trained\"], F an arm that starts from trained",))


CLAIMS: tuple[Callable[[Results], Claim], ...] = (claim_1, claim_2, claim_3, claim_4, claim_5)


def check_claims(results: Results) -> list[Claim]:
    return [claim(results) for claim in CLAIMS]
