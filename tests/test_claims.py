"""The paper's claims checked on constructed run sets whose answer is known: the paper's world, its opposite, seeds
that disagree, missing runs, and specs that lack the runs a claim needs."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import ttest_1samp

from ltspec.plan import compile_plan
from ltspec.report.claims import (FAILS, HOLDS, INCONCLUSIVE, NOT_ENOUGH, NOT_MEASURED, Check, check_claims)
from ltspec.report.collect import Results, sweep_points
from ltspec.report.paired import Series
from ltspec.report.render import claims_markdown
from ltspec.spec import parse_spec
from ltspec.tracking import rp_metric
from conftest import tiny_spec
from test_report import REPORT

# The report tests' spec with three seeds, two p and both of Table 1's pairs, tracked nowhere (never logged)
SPEC = tiny_spec(**{**REPORT, "seeds": "[0, 1, 2]", "measure": REPORT["measure"].replace("p = [0.2]", "p = [0.1, 0.2]")
                    .replace('["finetune", "init"]]', '["finetune", "init"], ["trained", "finetune"]]')}
                 ).split("[tracking]")[0]
assert SPEC.count("[0, 1, 2]") == SPEC.count('["trained", "finetune"]') == 1

# lr -> what the runs measure: accuracies of dense and arms; R_p minus p of each pair (R_p(finetune, trained) as is)
PAPER_WORLD = {
    0.01: {"dense": 0.95, "lottery": 0.95, "reinit": 0.85, "finetune": 0.955,
           ("init", "trained"): 0.3, ("init*mask", "finetune"): 0.3, ("reinit*mask", "finetune"): 0.0,
           ("finetune", "init"): 0.002, ("trained", "finetune"): 0.6},
    0.1: {"dense": 0.97, "lottery": 0.93, "reinit": 0.93, "finetune": 0.96,
          ("init", "trained"): 0.0, ("init*mask", "finetune"): 0.01, ("reinit*mask", "finetune"): 0.0,
          ("finetune", "init"): 0.002, ("trained", "finetune"): 0.6},
}
OPPOSITE_WORLD = {
    0.01: {**PAPER_WORLD[0.01], "lottery": 0.80, ("init", "trained"): -0.1, ("init*mask", "finetune"): -0.05,
           ("trained", "finetune"): 0.1},
    0.1: {**PAPER_WORLD[0.1], "finetune": 0.90, ("trained", "finetune"): 0.1},
}


def run_metrics(plan, world, noise=0.001, lottery_swing=0.0) -> dict[str, dict[str, float]]:
    """What the runner would log in `world`, with small noise drawn per stage (deterministic by key); the lottery
    arm also moves by `lottery_swing` times +1, -1, 0 for seeds 0, 1, 2, so the seeds disagree."""
    metrics = {}
    for stage in plan.stages:
        values = world[stage.labels["sweep.train.lr"]]
        jitter = random.Random(stage.key).gauss(0, noise)
        if stage.kind == "dense":
            metrics[stage.key] = {"final_test_accuracy": values["dense"] + jitter}
        elif stage.kind == "train" and stage.labels["arm"]:
            arm = stage.labels["arm"]
            swing = lottery_swing * (1, -1, 0)[stage.labels["seed"]] if arm == "lottery" else 0.0
            metrics[stage.key] = {"final_test_accuracy": values[arm] + jitter + swing}
        elif stage.kind == "measure":
            metrics[stage.key] = {
                rp_metric(*pair, p): values[tuple(pair)] + (p if tuple(pair) != ("trained", "finetune") else 0.0)
                + random.Random(f"{stage.key}{pair}{p}").gauss(0, noise)
                for pair in stage.config["pairs"] for p in stage.config["p"]}
    return metrics


def claims_of(spec: str, world=PAPER_WORLD, drop=lambda stage: False, **options):
    loaded = parse_spec(spec)
    plan = compile_plan(loaded)
    metrics = {key: value for key, value in run_metrics(plan, world, **options).items()
               if not drop(plan.stage(key))}
    return {claim.number: claim for claim in check_claims(Results(sweep_points(loaded), metrics))}


def verdicts(claims) -> dict[int, str]:
    return {number: claim.verdict for number, claim in claims.items()}


def test_every_claim_holds_in_the_papers_world():
    claims = claims_of(SPEC)
    assert verdicts(claims) == {1: HOLDS, 2: HOLDS, 3: HOLDS, 4: HOLDS, 5: HOLDS}
    # claim 1: per generator, lottery > reinit and ≈ dense at the low lr, and a larger gap there than at the high lr
    assert [(check.where, check.what) for check in claims[1].checks][:3] == [
        ("lenet300100/digits, imp masks", "lottery − reinit at lr=0.01"),
        ("lenet300100/digits, imp masks", "lottery − dense at lr=0.01"),
        ("lenet300100/digits, imp masks", "(lottery − reinit) at lr=0.01 − at lr=0.1")]
    gap = claims[1].checks[0]
    assert list(gap.diff.values) == [0, 1, 2] and gap.interval[0] == pytest.approx(0.10, abs=0.005)
    # claim 4 at the high lr only; claim 5 twice per lr, mask (two IMP rounds, one one-shot) and p
    assert all("lr=0.1" in check.where for check in claims[4].checks) and len(claims[4].checks) == 4
    assert len(claims[5].checks) == 2 * 3 * 2 * 2


def test_every_claim_fails_in_the_opposite_world():
    claims = claims_of(SPEC, OPPOSITE_WORLD)
    assert verdicts(claims) == {1: FAILS, 2: FAILS, 3: FAILS, 4: FAILS, 5: FAILS}
    failing = {check.what for check in claims[1].checks if check.outcome == FAILS}
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
    assert all("train reinit on oneshot 50.0%" in name for name in claims[1].missing) and len(claims[1].missing) == 2
    page = claims_markdown("claims-test", list(claims.values()))
    assert "| 1. The winning property" in page and "**not enough runs**" in page
    assert "Missing runs (2): lr=0.01: train reinit on oneshot 50.0% [" in page


def test_a_spec_without_the_runs_says_what_each_claim_needs():
    """No lr sweep and no reinit arm: claims 1-3 are not measured; claim 4 compares finetune with lottery alone;
    claim 5's R_p stages exist in the plan but have no runs yet."""
    spec = SPEC.replace('[sweep]\n"train.lr" = [0.01, 0.1]', "").replace('reinit = { start = "reinit" }', "")
    loaded = parse_spec(spec.replace('["reinit*mask", "finetune"], ', ""))
    world = PAPER_WORLD[0.1]
    metrics = {}
    for stage in compile_plan(loaded).stages:
        if stage.kind == "dense":
            metrics[stage.key] = {"final_test_accuracy": world["dense"]}
        elif stage.kind == "train" and stage.labels["arm"]:
            metrics[stage.key] = {"final_test_accuracy": world[stage.labels["arm"]] + 0.001 * stage.labels["seed"]}
    claims = {claim.number: claim for claim in check_claims(Results(sweep_points(loaded), metrics))}
    assert verdicts(claims) == {1: NOT_MEASURED, 2: NOT_MEASURED, 3: NOT_MEASURED, 4: HOLDS, 5: NOT_ENOUGH}
    assert "lr sweep" in claims[1].unmeasured[0] and "lr sweep" in claims[2].unmeasured[0]
    assert [check.what for check in claims[4].checks] == ["finetune − lottery"] * 2
    assert all("measure R_p on" in name for name in claims[5].missing)


def test_the_interval_is_the_t_interval_of_the_paired_differences():
    values = {0: 0.012, 1: 0.031, 2: -0.004, 3: 0.02}
    check = Check("here", "a − b", ">", Series(values), percent=True)
    expected = ttest_1samp(list(values.values()), 0.0).confidence_interval(0.95)
    mean, low, high = check.interval
    assert (low, high) == pytest.approx((expected.low, expected.high))
    assert mean == pytest.approx(sum(values.values()) / 4)
    assert check.outcome == INCONCLUSIVE
    assert Check("here", "a − b", ">", Series({0: 0.5, 1: None}), percent=True).outcome == NOT_ENOUGH


@given(st.lists(st.floats(-1, 1), min_size=2, max_size=8), st.floats(-1, 1))
def test_shifting_every_difference_shifts_the_interval_and_a_held_claim_fails_mirrored(values, shift):
    check = Check("", "", ">", Series(dict(enumerate(values))), percent=False)
    moved = Check("", "", ">", Series({seed: value + shift for seed, value in enumerate(values)}), percent=False)
    assert moved.interval == pytest.approx(tuple(bound + shift for bound in check.interval), abs=1e-9)
    mirrored = Check("", "", ">", Series({seed: -value for seed, value in enumerate(values)}), percent=False)
    if check.outcome == HOLDS:
        assert mirrored.outcome == FAILS and check.interval[0] > 0
