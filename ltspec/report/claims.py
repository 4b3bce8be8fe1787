"""The paper's five claims, checked on the user's own runs, by rules a referee can hold us to.

Each claim rests on checks. A check is one paired comparison: for every seed, a difference between two quantities
that come from the same seed's runs (lottery minus reinit on the same masks, R_p minus p, the dense accuracy at
the high lr minus at the low lr), so seed-to-seed noise that both sides share cancels. Accuracy checks average
each seed's difference over the sparsities both sides have; R_p checks average over the measured sparsities and p.
So one check stands for one curve of a figure, not one point of it.

Over the seeds a check has a mean and a 95% Student-t interval, and a test of the side the claim needs:

- `> m`: above m (m = 0 for a plain difference; for R_p − p the margin below, so that "correlated" means beyond
  what independent weights read);
- `≈ 0 (± m)`: inside [-m, m] (an equivalence test: both one-sided tests, TOST);
- `≥ -m`: above -m (non-inferiority: "matches the dense net").

The rules, and why:

- **Seeds.** A verdict needs `MIN_SEEDS` = 3 seeds. With two, the interval rests on one difference of two numbers,
  and two seeds agree by chance: quickstart accuracies move in steps of 1/360, and its lottery − reinit gap read
  +8.43 on both seeds, an interval of zero width. Below three seeds every check is inconclusive and says how many
  seeds fall on the claim's side, which is what two seeds can support.
- **Resolution.** The spread behind an accuracy check is never taken below one test example (1/test-set size, the
  step in which an accuracy moves): seeds that agree within that step do not show that the spread is zero.
- **Multiplicity.** Each check's test is two-sided (the claim's side against the opposite), and within a claim the
  p-values are Holm–Bonferroni adjusted over all its checks, so the chance that any outcome in a claim's table is
  wrong is at most `LEVEL` = 5%. A check holds (or does not hold) when its adjusted p is below 5%; otherwise it is
  inconclusive. A claim does not hold when one of its checks does not, lacks runs when one lacks them, is
  inconclusive when one is, and holds when all hold. With one check this is the 95% interval lying above (below)
  the bound.
- **Margins.** Accuracy: `ACCURACY_MARGIN`, one point: below the smallest accuracy effect the paper reports as
  real (the dense lr gap, 1.66 points on MobileNet-V2), above the 0.42 points by which it calls its best ticket
  "about dense" (90.04% against 89.62%). R_p: `RP_MARGIN` × p, 5% of p (±1 point at p = 20%): the paper reads
  its independent pairs at 20.11-20.41% for p = 20% (Table 1), at most 2.05% of p above it, and its correlated
  ones at 48-65%, 140% of p and more above it. A margin in absolute terms would be ±50% of p at p = 0.1.

A check whose seeds have missing runs and fewer than three present is "not enough runs" and names the missing runs.
A claim the spec has no runs for (no lr sweep, no reinit arm, no R_p pair) is "not measured", with the TOML to add.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ltspec.datasets import info
from ltspec.layouts.base import in_order
from ltspec.points import parse
from ltspec.report.collect import Point, Results
from ltspec.report.paired import (Series, arm_accuracy, arm_difference, arm_with_start, average, dense_accuracy,
                                  number, percent, rp_minus_p, rp_series)
from ltspec.spec import Spec

LR = "train.lr"
MIN_SEEDS = 3
LEVEL = 0.05
ACCURACY_MARGIN = 0.01  # one accuracy point; see the module docstring
RP_MARGIN = 0.05  # a fraction of p; see the module docstring
PAPER_SEEDS = 5  # the paper's repeats

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
# (R_p(finetune, init), R_p(finetune, trained)), measured at TABLE1_SETTING.
PAPER_DENSE = {("resnet20", "cifar10"): {0.01: 0.8962, 0.1: 0.917},
               ("mobilenetv2", "cifar10"): {0.01: 0.9220, 0.1: 0.9386},
               ("mobilenetv2", "cifar100"): {0.01: 0.7310, 0.1: 0.7476},
               ("resnet20", "cifar100"): {0.01: 0.6310, 0.1: 0.6715},
               ("vgg11", "cifar100"): {0.01: 0.6774, 0.1: 0.6983}}
PAPER_TABLE1 = {("resnet20", "cifar100"): (0.2036, 0.6397), ("mobilenetv2", "cifar100"): (0.2011, 0.6471),
                ("vgg11", "cifar100"): (0.2041, 0.4932), ("mobilenetv2", "cifar10"): (0.2026, 0.4936),
                ("vgg11", "cifar10"): (0.2021, 0.4808)}
TABLE1_SETTING = {"lr": 0.1, "generator": "admm", "at": (0.5, 0.2)}  # (target sparsity, p)
# ResNet-20 / CIFAR-10 at lr 0.01 on IMP masks (Fig. 2a): the best ticket against the dense net
PAPER_TICKET = {("resnet20", "cifar10", 0.01, "imp"): (0.9004, 0.8962, "best ticket 90.04 at 62% vs dense 89.62")}


@dataclass(frozen=True)
class Check:
    """One paired comparison: `what` at `where`, a difference per seed, and the relation the claim needs.

    `margin` is in the difference's units; `floor` is the smallest spread the seeds may show (the metric's
    resolution); `margin_note` says what the margin is relative to, where it is not a constant."""

    where: str
    what: str
    relation: str  # ">", "≈" or "≳"
    diff: Series
    percent: bool
    margin: float = 0.0
    floor: float = 0.0
    sides: str = ""
    paper: str = ""
    margin_note: str = ""

    @property
    def n(self) -> int:
        return len(self.diff.present())

    def standard_error(self) -> float:
        values = self.diff.present()
        return max(statistics.stdev(values), self.floor) / math.sqrt(len(values))

    @property
    def interval(self) -> tuple[float, float, float] | None:
        """Mean difference and its 95% Student-t interval (spread floored at the resolution), None below
        MIN_SEEDS seeds."""
        from scipy.stats import t

        if self.n < MIN_SEEDS:
            return None
        mean = statistics.fmean(self.diff.present())
        half = float(t.ppf(1 - LEVEL / 2, self.n - 1)) * self.standard_error()
        return mean, mean - half, mean + half

    def test(self) -> tuple[float, bool] | None:
        """(two-sided p-value, whether the data lean to the claim's side), None below MIN_SEEDS seeds.

        The p-value is twice the smaller of the two one-sided p-values: that the claim's side holds (for `≈`,
        the larger of TOST's two) and that the opposite holds."""
        from scipy.stats import t

        if self.n < MIN_SEEDS:
            return None
        mean, error, freedom = statistics.fmean(self.diff.present()), self.standard_error(), self.n - 1

        def above(bound: float, sign: int = 1) -> float:
            """One-sided p-value of 'the mean difference is above `bound`' (below it, with sign -1)."""
            distance = sign * (mean - bound)
            if error == 0:
                return 0.0 if distance > 0 else 1.0 if distance < 0 else 0.5
            return float(t.sf(distance / error, freedom))

        def below(bound: float) -> float:
            return above(bound, -1)

        if self.relation == "≈":
            claimed = max(above(-self.margin), below(self.margin))
            opposite = min(above(self.margin), below(-self.margin))
        else:
            claimed, opposite = above(self.threshold), below(self.threshold)
        return min(1.0, 2 * min(claimed, opposite)), claimed <= opposite

    @property
    def threshold(self) -> float:
        return -self.margin if self.relation == "≳" else self.margin

    def on_claims_side(self, value: float) -> bool:
        return abs(value) < self.margin if self.relation == "≈" else value > self.threshold

    def requirement(self) -> str:
        margin = f"{100 * self.margin:.2f}" if self.percent else f"{self.margin:.3f}"
        note = f", {self.margin_note}" if self.margin_note else ""
        if self.relation == "≈":
            return f"≈ 0 (± {margin}{note})"
        if self.relation == "≳":
            return f"≥ -{margin}"
        return f"> {margin} ({self.margin_note})" if self.margin else "> 0"


@dataclass(frozen=True)
class Decision:
    """A check's outcome within its claim: the Holm-adjusted p-value it rests on, or why there is none."""

    outcome: str
    p: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Unmeasured:
    """Why a claim (or part of it) has no checks, and the TOML that would give it some ("" when none would)."""

    reason: str
    toml: str = ""


@dataclass(frozen=True)
class Claim:
    number: int
    checks: tuple[Check, ...]
    unmeasured: tuple[Unmeasured, ...] = ()

    @property
    def statement(self) -> str:
        return STATEMENTS[self.number]

    @property
    def decisions(self) -> tuple[Decision, ...]:
        """Each check's outcome, its test's p-value Holm-adjusted over all the claim's checks."""
        tests = [check.test() for check in self.checks]
        adjusted = holm([None if test is None else test[0] for test in tests])
        decisions = []
        for check, test, p in zip(self.checks, tests, adjusted):
            if test is None:
                agree = sum(check.on_claims_side(value) for value in check.diff.present())
                note = f"{check.n} seed{'s' * (check.n != 1)}, {agree} on the claim's side"
                outcome = NOT_ENOUGH if None in check.diff.values.values() else INCONCLUSIVE
                decisions.append(Decision(outcome, None, note))
            else:
                decisions.append(Decision((HOLDS if test[1] else FAILS) if p < LEVEL else INCONCLUSIVE, p))
        return tuple(decisions)

    @property
    def verdict(self) -> str:
        outcomes = {decision.outcome for decision in self.decisions}
        if not outcomes:
            return NOT_MEASURED
        for verdict in (FAILS, NOT_ENOUGH, INCONCLUSIVE):
            if verdict in outcomes:
                return verdict
        return HOLDS

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(in_order(name for check in self.checks for name in check.diff.missing))


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values; the family is every entry, an untested one (None) counting as p = 1."""
    family = len(p_values)
    order = sorted((index for index, p in enumerate(p_values) if p is not None), key=lambda index: p_values[index])
    adjusted: list[float | None] = [None] * family
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (family - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


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


def kind(point: Point, generator: str) -> str:
    return point.spec.masks[generator].kind


def lr_of(point: Point) -> str:
    return f"lr={point.spec.train.lr:g}"


def signed(value: float, percent: bool) -> str:
    return f"{value * 100:+.2f}" if percent else f"{value:+.3f}"


# Checks of the two kinds of quantity


def accuracy_check(point: Point, where: str, what: str, relation: str, diff: Series, sides: str = "",
                   paper: str = "") -> Check:
    """A difference of test accuracies: margin one point (none for `>`), spread floored at one test example."""
    size = info(point.spec.data.dataset).test_size
    return Check(where, what, relation, diff, True, 0.0 if relation == ">" else ACCURACY_MARGIN,
                 1 / size if size else 0.0, sides, paper)


def rp_excess_check(where: str, what: str, relation: str, series: dict[tuple, Series], sides: str = "",
                    paper: str = "") -> Check:
    """R_p − p averaged over (sparsity, p): `>` means above p by more than the margin, `≈` within it; the margin
    is RP_MARGIN of the mean p, so each p keeps its share of it."""
    margin = RP_MARGIN * statistics.fmean(p for _, p in series)
    return Check(where, what, relation, rp_minus_p(series), False, margin, 0.0, sides, paper,
                 f"{RP_MARGIN:.0%} of p")


# What to add to a spec that lacks the runs a claim needs


ARM_NAMES = {"init": "lottery", "reinit": "reinit", "trained": "finetune"}


def needed(spec: Spec, *, lr_sweep: bool = False, arms: Iterable[str] = (),
           pairs: Iterable[tuple[str, str]] = ()) -> Unmeasured:
    """What a spec lacks for a claim, and the TOML that adds it: an lr sweep, arms from the given starts at the
    equal budget (named as the paper names them), and R_p pairs (`@trained` stands for the arm that starts from
    trained, existing or added), with a `p` list that fits every mask when a pair compares a sparse network with
    a dense one. Only what the spec lacks is named."""
    have = {start: arm_with_start(spec, start) for start in ARM_NAMES}
    new_arms = {start: ARM_NAMES[start] if ARM_NAMES[start] not in spec.arms else f"{ARM_NAMES[start]}_{start}"
                for start in arms if have[start] is None}
    named = [tuple(have[term[1:]] or new_arms[term[1:]] if term.startswith("@") else term for term in pair)
             for pair in pairs]
    measured = {tuple(pair) for pair in spec.measure.pairs} | {tuple(pair)[::-1] for pair in spec.measure.pairs}
    wanted = [pair for pair in named if pair not in measured]
    reasons, lines = [], []
    if lr_sweep:
        reasons.append("an lr sweep")
        lines += ["[sweep]", '"train.lr" = [0.01, 0.1]', ""]
    if new_arms:
        reasons.append(f"arms that start from {' and '.join(new_arms)} at the equal budget")
        lines += ["[arms]", *(f'{name} = {{ start = "{start}" }}' for start, name in new_arms.items()), ""]
    if wanted:
        reasons.append("the R_p pairs " + " and ".join(json.dumps(list(pair)) for pair in wanted))
        lines += ["[measure]", *fitting_p(spec, wanted),
                  "pairs = " + json.dumps([*map(list, spec.measure.pairs), *map(list, wanted)], ensure_ascii=False)]
    return Unmeasured("needs " + ", ".join(reasons) if reasons else "has no runs in the setting it needs",
                      "\n".join(lines).strip())


def fitting_p(spec: Spec, pairs: list[tuple[str, str]]) -> list[str]:
    """A `p = [...]` line when a sparse-vs-dense pair among `pairs` needs p below 1 − the largest target sparsity
    and the spec's p list has values that do not fit; none when they all fit."""
    sparse_vs_dense = [pair for pair in pairs if parse(pair[0]).sparse != parse(pair[1]).sparse]
    largest = max((s for generator in spec.masks.values() for s in generator.target_sparsities()), default=0.0)
    if not sparse_vs_dense or all(p < 1 - largest for p in spec.measure.p):
        return []
    fits = [p for p in spec.measure.p if p < 1 - largest] or [round((1 - largest) / 2, 3)]
    return [f"p = {json.dumps(fits)}  # below {1 - largest:g}: a mask at {largest:.1%} sparsity keeps {1 - largest:.1%}"]


# The claims


def claim_1(results: Results) -> Claim:
    checks = []
    for low, high in lr_groups(results):
        lottery, reinit = arm_with_start(low.spec, "init"), arm_with_start(low.spec, "reinit")
        if lottery is None or reinit is None or arm_with_start(high.spec, "init") != lottery \
                or arm_with_start(high.spec, "reinit") != reinit:
            continue
        for generator in generators(low):
            where = f"{place(low)}, {generator} masks"
            gap_low, sides_low = arm_difference(results, low, generator, lottery, reinit)
            gap_high, sides_high = arm_difference(results, high, generator, lottery, reinit)
            tickets = arm_accuracy(results, low, generator, lottery)
            ticket = average(tickets.values()).minus(dense_accuracy(results, low))
            paper = PAPER_TICKET.get((low.spec.model.arch, low.spec.data.dataset, low.spec.train.lr,
                                      kind(low, generator)))
            checks += [
                accuracy_check(low, where, f"{lottery} − {reinit} at {lr_of(low)}", ">", gap_low, sides_low),
                accuracy_check(low, where, f"{lottery} − dense at {lr_of(low)}", "≳", ticket, best_ticket(tickets),
                               f"{signed(paper[0] - paper[1], True)} ({paper[2]})" if paper else ""),
                accuracy_check(high, where, f"{lottery} − {reinit} at {lr_of(high)}", "≈", gap_high, sides_high),
                accuracy_check(low, where, f"({lottery} − {reinit}) at {lr_of(low)} − at {lr_of(high)}", ">",
                               gap_low.minus(gap_high), f"{sides_low}; {sides_high}"),
            ]
    return Claim(1, tuple(checks), () if checks else (
        needed(results.points[0].spec, lr_sweep=not lr_groups(results), arms=("init", "reinit")),))


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
            checks += [rp_excess_check(where, f"R_p(init, trained) − p at {lr_of(low)}", ">", rp_low),
                       Check(where, f"R_p(init, trained) at {lr_of(low)} − at {lr_of(high)}", ">",
                             rp_minus_p(rp_low).minus(rp_minus_p(rp_high)), False)]
        else:
            unmeasured.append(needed(low.spec, pairs=[("init", "trained")]))
        paper = PAPER_DENSE.get((low.spec.model.arch, low.spec.data.dataset), {})
        quoted = [paper.get(point.spec.train.lr) for point in (high, low)]
        checks.append(accuracy_check(
            low, where, f"dense at {lr_of(high)} − at {lr_of(low)}", ">", dense_high.minus(dense_low),
            f"{percent(dense_high.mean())} vs {percent(dense_low.mean())}",
            f"{signed(quoted[0] - quoted[1], True)} ({percent(quoted[0])} vs {percent(quoted[1])})"
            if None not in quoted else ""))
    if not lr_groups(results):
        unmeasured.append(needed(results.points[0].spec, lr_sweep=True, pairs=[("init", "trained")]))
    return Claim(2, tuple(checks), tuple(in_order(unmeasured)))


def claim_3(results: Results) -> Claim:
    checks = []
    for low, high in lr_groups(results):
        finetune = arm_with_start(low.spec, "trained")
        for generator in generators(low) if finetune else ():
            where = f"{place(low)}, {generator} masks"
            series = {(index, start): rp_series(results, point, generator, (f"{start}*mask", finetune))
                      for index, point in enumerate((low, high)) for start in ("init", "reinit")}
            if not all(series.values()):
                continue
            pair = f"R_p(init⊙m, {finetune}) − p"
            checks += [rp_excess_check(where, f"{pair} at {lr_of(low)}", ">", series[0, "init"]),
                       rp_excess_check(where, f"{pair} at {lr_of(high)}", "≈", series[1, "init"])]
            checks += [rp_excess_check(where, f"R_p(reinit⊙m, {finetune}) − p at {lr_of(point)}", "≈",
                                       series[index, "reinit"]) for index, point in enumerate((low, high))]
    return Claim(3, tuple(checks), () if checks else (needed(
        results.points[0].spec, lr_sweep=not lr_groups(results), arms=("trained",),
        pairs=[("init*mask", "@trained"), ("reinit*mask", "@trained")]),))


def claim_4(results: Results) -> Claim:
    checks = []
    for point in at_highest_lr(results):
        finetune = arm_with_start(point.spec, "trained")
        others = [arm for arm in (arm_with_start(point.spec, "init"), arm_with_start(point.spec, "reinit")) if arm]
        for generator in generators(point) if finetune else ():
            for other in others:
                diff, sides = arm_difference(results, point, generator, finetune, other)
                checks.append(accuracy_check(point, f"{place(point)}, {lr_of(point)}, {generator} masks",
                                             f"{finetune} − {other}", ">", diff, sides))
    spec = results.points[0].spec
    return Claim(4, tuple(checks), () if checks else (needed(
        spec, arms=("trained",) if arm_with_start(spec, "init") or arm_with_start(spec, "reinit")
        else ("trained", "init")),))


def claim_5(results: Results) -> Claim:
    """Per sweep point and mask generator: R_p(F, trained) − R_p(F, init) > 0 and R_p(F, init) − p ≈ 0, each
    averaged per seed over the sparsities and p the pairs were measured at (both pairs, for the first). A spec
    that measures only (F, init) gets the second check, and the TOML that would add the first."""
    checks, unmeasured = [], []
    for point in results.points:
        finetune = arm_with_start(point.spec, "trained")
        for generator in generators(point) if finetune else ():
            to_init = rp_series(results, point, generator, (finetune, "init"))
            to_trained = rp_series(results, point, generator, (finetune, "trained"))
            if not to_init:
                continue
            where = f"{place(point)}, {lr_of(point)}, {generator} masks"
            init = average(to_init.values())
            shared = [at for at in to_init if at in to_trained]
            paper = table1_quote(point, generator, list(to_init))
            if shared:
                trained, under = average(to_trained[at] for at in shared), average(to_init[at] for at in shared)
                checks.append(Check(
                    where, f"R_p({finetune}, trained) − R_p({finetune}, init)", ">", trained.minus(under), False,
                    sides=f"{number(trained.mean())} vs {number(under.mean())}",
                    paper=f"{signed(paper[1] - paper[0], False)} (Table 1: {paper[1]:.4f} vs {paper[0]:.4f})"
                    if paper else ""))
            else:
                unmeasured.append(needed(point.spec, pairs=[(finetune, "trained")]))
            checks.append(rp_excess_check(
                where, f"R_p({finetune}, init) − p", "≈", to_init, number(init.mean()),
                f"{signed(paper[0] - TABLE1_SETTING['at'][1], False)} (Table 1: {paper[0]:.4f})" if paper else ""))
    if not checks:
        unmeasured.append(needed(results.points[0].spec, arms=("trained",),
                                 pairs=[("@trained", "init"), ("@trained", "trained")]))
    return Claim(5, tuple(checks), tuple(in_order(unmeasured)))


def table1_quote(point: Point, generator: str, measured: list[tuple]) -> tuple[float, float] | None:
    """Table 1's row for the point's model and dataset, where the check is in Table 1's setting: lr 0.1, ADMM
    masks, and R_p measured at sparsity 0.5 and p = 0.2 only."""
    if point.spec.train.lr != TABLE1_SETTING["lr"] or kind(point, generator) != TABLE1_SETTING["generator"] \
            or measured != [TABLE1_SETTING["at"]]:
        return None
    return PAPER_TABLE1.get((point.spec.model.arch, point.spec.data.dataset))


CLAIMS: tuple[Callable[[Results], Claim], ...] = (claim_1, claim_2, claim_3, claim_4, claim_5)


def check_claims(results: Results) -> list[Claim]:
    return [claim(results) for claim in CLAIMS]
