"""The paper's claims checked on constructed run sets whose answer is known: the paper's world, its opposite, seeds
that disagree, missing runs, specs that lack the runs a claim needs; and each rule of the verdicts (seeds,
resolution, Holm, margins relative to p, the high-lr check of claim 1, claim 5's averaging, the paper's numbers)
on hand-made per-seed numbers."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import t, ttest_1samp

from conftest import QUICKSTART, tiny_spec
from ltspec.plan import compile_plan
from ltspec.report.claims import FAILS, HOLDS, INCONCLUSIVE, NOT_ENOUGH, NOT_MEASURED, Check, Claim, check_claims
from ltspec.report.collect import Results, sweep_points
from ltspec.report.paired import Series
from ltspec.report.render import claims_markdown
from ltspec.points import rp_metric
from ltspec.spec import load_spec, parse_spec
from test_report import REPORT

# The report tests' spec with the paper's five seeds, two p and both of Table 1's pairs, tracked nowhere
SPEC = tiny_spec(**{**REPORT, "seeds": "[0, 1, 2, 3, 4]",
                    "measure": REPORT["measure"].replace("p = [0.2]", "p = [0.1, 0.2]")
                    .replace('["finetune", "init"]]', '["finetune", "init"], ["trained", "finetune"]]')}
                 ).split("[tracking]")[0]
assert SPEC.count("[0, 1, 2, 3, 4]") == SPEC.count('["trained", "finetune"]') == 1
STEP = 1 / 360  # one test example of digits, the step in which its accuracies move

# lr -> what the runs measure: accuracies of dense and arms; R_p minus p of each pair (R_p(finetune, trained) as is)
PAPER_WORLD = {
    0.01: {"dense": 0.95, "lottery": 0.95, "reinit": 0.85, "finetune": 0.955,
           ("init", "trained"): 0.3, ("init*mask", "finetune"): 0.3, ("reinit*mask", "finetune"): 0.0,
           ("finetune", "init"): 0.002, ("trained", "finetune"): 0.6},
    0.1: {"dense": 0.97, "lottery": 0.93, "reinit": 0.93, "finetune": 0.96,
          ("init", "trained"): 0.0, ("init*mask", "finetune"): 0.002, ("reinit*mask", "finetune"): 0.0,
          ("finetune", "init"): 0.002, ("trained", "finetune"): 0.6},
}
OPPOSITE_WORLD = {
    0.01: {**PAPER_WORLD[0.01], "lottery": 0.80, ("init", "trained"): -0.1, ("init*mask", "finetune"): -0.05,
           ("trained", "finetune"): 0.1},
    0.1: {**PAPER_WORLD[0.1], "finetune": 0.90, ("trained", "finetune"): 0.1},
}


def world(**changes) -> dict:
    """The paper's world with some values changed: `name_lr=value`, e.g. `lottery_0.1=0.98`; a pair's name is its
    two terms joined by `__` (`reinit*mask__finetune_0.01=0.03`)."""
    changed = {lr: dict(values) for lr, values in PAPER_WORLD.items()}
    for name, value in changes.items():
        what, lr = name.rsplit("_", 1)
        changed[float(lr)][tuple(what.split("__")) if "__" in what else what] = value
    return changed


def run_metrics(plan, world, noise=0.001, lottery_swing=0.0) -> dict[str, dict[str, float]]:
    """What the runner would log in `world`, with small noise drawn per stage (deterministic by key); the lottery
    arm also moves by `lottery_swing` times +1, -1, 0, +1, -1 for seeds 0 to 4, so the seeds disagree."""
    metrics = {}
    for stage in plan.stages:
        values = world[stage.labels["sweep.train.lr"]]
        jitter = random.Random(stage.key).gauss(0, noise)
        if stage.kind.name == "dense":
            metrics[stage.key] = {"final_test_accuracy": values["dense"] + jitter}
        elif stage.kind.name == "train" and stage.labels["arm"]:
            arm = stage.labels["arm"]
            swing = lottery_swing * (1, -1, 0, 1, -1)[stage.labels["seed"]] if arm == "lottery" else 0.0
            metrics[stage.key] = {"final_test_accuracy": values[arm] + jitter + swing}
        elif stage.kind.name == "measure":
            metrics[stage.key] = {
                rp_metric(*pair, p): values[tuple(pair)] + (p if tuple(pair) != ("trained", "finetune") else 0.0)
                + random.Random(f"{stage.key}{pair}{p}").gauss(0, noise)
                for pair in stage.config.pairs for p in stage.config.p}
    return metrics


def claims_of(spec: str, world=PAPER_WORLD, drop=lambda stage: False, **options):
    loaded = parse_spec(spec)
    plan = compile_plan(loaded)
    metrics = {key: value for key, value in run_metrics(plan, world, **options).items()
               if not drop(plan.stage(key))}
    return {claim.number: claim for claim in check_claims(Results(sweep_points(loaded), metrics))}


def verdicts(claims) -> dict[int, str]:
    return {number: claim.verdict for number, claim in claims.items()}


def one(values: dict, relation: str = ">", **options) -> Claim:
    """A claim of one check on hand-made per-seed differences."""
    return Claim(1, (Check("here", "a − b", relation, Series(values), percent=False, **options),))


def test_every_claim_holds_in_the_papers_world():
    claims = claims_of(SPEC)
    assert verdicts(claims) == {1: HOLDS, 2: HOLDS, 3: HOLDS, 4: HOLDS, 5: HOLDS}
    # claim 1: per generator, lottery > reinit and ≈ dense at the low lr, ≈ reinit at the high lr, and a larger gap
    # at the low lr than at the high
    assert [(check.where, check.what) for check in claims[1].checks][:4] == [
        ("lenet300100/digits, imp masks", "lottery − reinit at lr=0.01"),
        ("lenet300100/digits, imp masks", "lottery − dense at lr=0.01"),
        ("lenet300100/digits, imp masks", "lottery − reinit at lr=0.1"),
        ("lenet300100/digits, imp masks", "(lottery − reinit) at lr=0.01 − at lr=0.1")]
    gap = claims[1].checks[0]
    assert list(gap.diff.values) == [0, 1, 2, 3, 4] and gap.interval[0] == pytest.approx(0.10, abs=0.005)
    assert all("lr=0.1" in check.where for check in claims[4].checks) and len(claims[4].checks) == 4


def test_every_claim_fails_in_the_opposite_world():
    claims = claims_of(SPEC, OPPOSITE_WORLD)
    assert verdicts(claims) == {1: FAILS, 2: FAILS, 3: FAILS, 4: FAILS, 5: FAILS}
    failing = {check.what for check, decision in zip(claims[1].checks, claims[1].decisions)
               if decision.outcome == FAILS}
    assert failing == {"lottery − reinit at lr=0.01", "lottery − dense at lr=0.01",
                       "(lottery − reinit) at lr=0.01 − at lr=0.1"}


def test_seeds_that_disagree_make_a_claim_inconclusive():
    claims = claims_of(SPEC, lottery_swing=0.2)
    assert claims[1].verdict == INCONCLUSIVE and claims[4].verdict == INCONCLUSIVE
    assert claims[2].verdict == HOLDS  # the dense runs and R_p do not involve the lottery arm


def test_missing_runs_are_named_and_leave_too_few_seeds():
    claims = claims_of(SPEC, drop=lambda stage: stage.labels.get("arm") == "reinit" and stage.labels["seed"] > 0
                       and stage.labels["sweep.train.lr"] == 0.01 and stage.labels["generator"] == "oneshot")
    assert claims[1].verdict == NOT_ENOUGH and claims[4].verdict == HOLDS
    assert all("train reinit on oneshot 50.0%" in name for name in claims[1].missing) and len(claims[1].missing) == 4
    page = claims_markdown("claims-test", list(claims.values()))
    assert "| 1. The winning property" in page and "**not enough runs**" in page
    assert "Missing runs (4): lr=0.01: train reinit on oneshot 50.0% [" in page


def test_a_spec_without_the_runs_says_what_each_claim_needs_in_toml():
    """No lr sweep and no reinit arm: claims 1-3 are not measured, each naming the TOML to add; claim 4 compares
    finetune with lottery alone; claim 5's R_p stages exist in the plan but have no runs yet."""
    spec = SPEC.replace('[sweep]\n"train.lr" = [0.01, 0.1]', "").replace('reinit = { start = "reinit" }', "")
    loaded = parse_spec(spec.replace('["reinit*mask", "finetune"], ', ""))
    world = PAPER_WORLD[0.1]
    metrics = {}
    for stage in compile_plan(loaded).stages:
        if stage.kind.name == "dense":
            metrics[stage.key] = {"final_test_accuracy": world["dense"]}
        elif stage.kind.name == "train" and stage.labels["arm"]:
            metrics[stage.key] = {"final_test_accuracy": world[stage.labels["arm"]] + 0.001 * stage.labels["seed"]}
    claims = {claim.number: claim for claim in check_claims(Results(sweep_points(loaded), metrics))}
    assert verdicts(claims) == {1: NOT_MEASURED, 2: NOT_MEASURED, 3: NOT_MEASURED, 4: HOLDS, 5: NOT_ENOUGH}
    (needs,) = claims[1].unmeasured
    assert needs.reason == "needs an lr sweep, arms that start from reinit at the equal budget"
    assert needs.toml == '[sweep]\n"train.lr" = [0.01, 0.1]\n\n[arms]\nreinit = { start = "reinit" }'
    assert "an lr sweep" in claims[2].unmeasured[0].reason
    assert 'pairs = [["init", "trained"], ["init*mask", "finetune"], ["finetune", "init"], ["trained", "finetune"], ' \
        '["reinit*mask", "finetune"]]' in claims[3].unmeasured[0].toml
    assert [check.what for check in claims[4].checks] == ["finetune − lottery"] * 2
    assert all("measure R_p on" in name for name in claims[5].missing)


def test_claim_5s_toml_makes_the_quickstart_measure_it():
    """The quickstart lacks Table 1's pairs: claim 5 prints the lines to add, p cut to what a mask at 87.5%
    sparsity allows, and the spec with them validates and has claim 5's checks."""
    loaded = load_spec(QUICKSTART)
    (needs,) = check_claims(Results(sweep_points(loaded), {}))[4].unmeasured
    assert needs.reason == 'needs the R_p pairs ["finetune", "init"] and ["finetune", "trained"]'
    assert needs.toml.splitlines()[:2] == ["[measure]", "p = [0.1]  # below 0.125: a mask at 87.5% sparsity keeps 12.5%"]
    table = ""
    overrides = []
    for line in needs.toml.splitlines():
        if line.startswith("["):
            table = line.strip("[]")
        elif line:
            overrides.append(f"{table}.{line}")
    fixed = load_spec(QUICKSTART, overrides)
    claim = check_claims(Results(sweep_points(fixed), {}))[4]
    assert claim.verdict == NOT_ENOUGH and len(claim.checks) == 2 * 2 * 2  # lr x generator x (> 0, ≈ p)
    page = claims_markdown("quickstart", check_claims(Results(sweep_points(loaded), {})))
    assert "```toml\n[measure]\np = [0.1]" in page


# The rules, on hand-made per-seed numbers


def test_two_seeds_that_agree_give_no_verdict():
    """The quickstart's lottery − reinit read +8.43 on both seeds: a zero-width interval is no evidence."""
    claim = one({0: 0.0843, 1: 0.0843})
    assert claim.verdict == INCONCLUSIVE and claim.checks[0].interval is None
    assert claim.decisions[0].note == "2 seeds, 2 on the claim's side"
    assert one({0: 0.0843, 1: -0.01}).decisions[0].note == "2 seeds, 1 on the claim's side"
    assert one({0: 0.0843, 1: None}).verdict == NOT_ENOUGH  # a seed's runs are missing: name them


def test_a_spread_below_one_test_example_counts_as_one_example():
    """Five seeds that each read lottery − reinit = one test example exactly: the spread is floored at that step,
    so the interval is not zero-width and the check cannot hold (t = √5 on 4 degrees of freedom, p ≈ 0.09)."""
    exact = world(**{"lottery_0.01": 0.85 + STEP, "dense_0.01": 0.85 + STEP})
    claims = claims_of(SPEC, exact, noise=0.0)
    check = claims[1].checks[0]
    assert list(check.diff.values.values()) == pytest.approx([STEP] * 5)
    assert claims[1].verdict == INCONCLUSIVE and check.interval[2] - check.interval[1] > 2 * STEP
    assert claims[1].decisions[0].outcome == INCONCLUSIVE
    floored = one({seed: STEP for seed in range(5)}, floor=STEP)
    assert floored.decisions[0].p == pytest.approx(2 * t.sf(5 ** 0.5, 4)) and floored.verdict == INCONCLUSIVE


def test_holm_adjusts_over_the_checks_of_a_claim():
    """Two checks that each hold at p = 0.031 alone: Holm multiplies the smaller by two, so neither holds."""
    values = {seed: value for seed, value in enumerate([0.010, 0.030, 0.020, 0.040, 0.005])}
    both = Claim(1, (Check("here", "a − b", ">", Series(values), percent=False),
                     Check("there", "a − b", ">", Series(values), percent=False)))
    assert both.verdict == INCONCLUSIVE and one(values).verdict == HOLDS
    assert one(values).decisions[0].p == pytest.approx(ttest_1samp(list(values.values()), 0).pvalue)
    assert [decision.p for decision in both.decisions] == [pytest.approx(0.061, abs=0.001)] * 2
    from ltspec.report.claims import holm

    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.01, None]) == [0.02, None]  # an untested check still counts in the family


def test_an_equivalence_holds_inside_the_margin_and_fails_wholly_outside():
    inside = {seed: value for seed, value in enumerate([0.001, -0.002, 0.0, 0.002, -0.001])}
    assert one(inside, "≈", margin=0.01).verdict == HOLDS
    outside = {seed: value + 0.05 for seed, value in inside.items()}
    assert one(outside, "≈", margin=0.01).verdict == FAILS
    assert one({seed: value + 0.01 for seed, value in inside.items()}, "≈", margin=0.01).verdict == INCONCLUSIVE


def test_rp_margins_are_relative_to_p():
    """An excess of 0.03 at p = 0.1 and 0.2 is not 'R_p ≈ p' (the margin is 5% of p, 0.0075 on average); an excess of
    0.005 is not 'R_p > p'. An absolute margin of 0.05 took both for what the claim needs."""
    claims = claims_of(SPEC, world(**{"reinit*mask__finetune_0.01": 0.03}))
    assert claims[3].verdict == FAILS
    reinit = [decision.outcome for check, decision in zip(claims[3].checks, claims[3].decisions)
              if "reinit" in check.what and "0.01" in check.what]
    assert reinit == [FAILS, FAILS] and claims[3].checks[2].requirement() == "≈ 0 (± 0.008, 5% of p)"
    claims = claims_of(SPEC, world(**{"init*mask__finetune_0.01": 0.005}))
    assert claims[3].verdict == FAILS and claims[3].decisions[0].outcome == FAILS
    assert claims[3].checks[0].requirement() == "> 0.008 (5% of p)"


def test_claim_1_needs_the_gap_to_vanish_at_the_high_lr():
    """Lottery beats reinit by 10 points at the low lr and by 5 at the high: the gap shrinks, but it is there at the
    high lr too, so the winning property does not appear "at the low lr only"."""
    claims = claims_of(SPEC, world(**{"lottery_0.1": 0.98}))
    assert claims[1].verdict == FAILS
    high = [decision.outcome for check, decision in zip(claims[1].checks, claims[1].decisions)
            if check.what == "lottery − reinit at lr=0.1"]
    assert high == [FAILS, FAILS]
    assert claims[1].checks[2].requirement() == "≈ 0 (± 1.00)"


def test_claim_5_averages_over_sparsities_and_p():
    """One pair of checks per sweep point and generator (not one per mask and p), each seed's value the mean over
    the three IMP and one-shot masks' (sparsity, p)."""
    claims = claims_of(SPEC, noise=0.0)
    assert [(check.where, check.what) for check in claims[5].checks] == [
        (f"lenet300100/digits, lr={lr}, {generator} masks", what) for lr in ("0.01", "0.1")
        for generator in ("imp", "oneshot")
        for what in ("R_p(finetune, trained) − R_p(finetune, init)", "R_p(finetune, init) − p")]
    excess = claims[5].checks[1]
    assert list(excess.diff.values.values()) == pytest.approx([0.002] * 5) and excess.margin == pytest.approx(0.0075)


def test_the_paper_column_quotes_the_paper_only_in_its_setting():
    """ResNet-20 on CIFAR-100: the paper's dense accuracies (claim 2) and Table 1 at lr 0.1 on ADMM masks at 50% and
    p = 0.2 (claim 5); claims 3 and 4, which no paper number fits, have no such column; nor has any claim on digits."""
    spec = SPEC.replace('arch = "lenet300100"', 'arch = "resnet20"').replace(
        'dataset = "digits"', 'dataset = "cifar100"').replace("p = [0.1, 0.2]", "p = [0.2]").replace(
        "[masks.oneshot]", "[masks.admm]\nkind = \"admm\"\nsparsities = [0.5]\n\n[masks.oneshot]")
    page = claims_markdown("paper", list(claims_of(spec).values()))
    sections = {part.split(":")[0]: part for part in page.split("\n## ")[1:]}
    assert "| paper |" in sections["2. The low lr leaves θT correlated with θ0 (R_p(init, trained) > p) and gives a "
                                   "worse dense net"]
    assert "| +4.05 (67.15 vs 63.10) |" in page
    assert "| +0.436 (Table 1: 0.6397 vs 0.2036) |" in page and "| +0.004 (Table 1: 0.2036) |" in page
    assert page.count("(Table 1:") == 2  # lr 0.1, ADMM only: not at lr 0.01, not on IMP or one-shot masks
    assert not any("| paper |" in text for title, text in sections.items() if title[0] in "34")
    assert "| paper |" not in claims_markdown("digits", list(claims_of(SPEC).values()))


def test_the_interval_is_the_t_interval_of_the_paired_differences():
    values = {0: 0.012, 1: 0.031, 2: -0.004, 3: 0.02}
    check = Check("here", "a − b", ">", Series(values), percent=True)
    expected = ttest_1samp(list(values.values()), 0.0).confidence_interval(0.95)
    mean, low, high = check.interval
    assert (low, high) == pytest.approx((expected.low, expected.high))
    assert mean == pytest.approx(sum(values.values()) / 4)
    assert Claim(1, (check,)).verdict == INCONCLUSIVE


@given(st.lists(st.floats(-1, 1), min_size=3, max_size=8), st.floats(-1, 1))
def test_shifting_every_difference_shifts_the_interval_and_a_held_claim_fails_mirrored(values, shift):
    check = Check("", "", ">", Series(dict(enumerate(values))), percent=False)
    moved = Check("", "", ">", Series({seed: value + shift for seed, value in enumerate(values)}), percent=False)
    assert moved.interval == pytest.approx(tuple(bound + shift for bound in check.interval), abs=1e-9)
    mirrored = one({seed: -value for seed, value in enumerate(values)})
    if one(dict(enumerate(values))).verdict == HOLDS:
        assert mirrored.verdict == FAILS and check.interval[0] > 0
