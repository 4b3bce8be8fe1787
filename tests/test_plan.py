"""The compiler: stable content keys, sharing, epoch budgets; properties over generated specs."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT, toml_key, toml_value
from ltspec.nets import build_model, prunable_tensors
from ltspec.plan import compile_plan
from ltspec.pruning import dense_mask, imp_round
from ltspec.spec import SpecError, load_spec, parse_spec

def to_toml(data: dict) -> str:
    """Top-level scalars, then one [table] per dict (nested dicts as inline tables or sub-tables)."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, table in data.items():
        if not isinstance(table, dict):
            continue
        if name in ("masks", "arms") and table and all(isinstance(v, dict) for v in table.values()):
            for child, value in table.items():
                lines.append(f"[{name}.{toml_key(child)}]")
                lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()]
        else:
            lines.append(f"[{name}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@st.composite
def specs(draw) -> dict:
    epochs = draw(st.integers(2, 12))
    milestones = sorted(draw(st.sets(st.integers(1, epochs - 1), max_size=2)))
    masks = {}
    if draw(st.booleans()):
        masks["imp"] = {"kind": "imp", "rate": draw(st.sampled_from([0.2, 0.5, 0.8])),
                        "rounds": draw(st.integers(1, 4)), "scope": draw(st.sampled_from(["layerwise", "global"]))}
    if draw(st.booleans()) or not masks:
        masks["oneshot"] = {"kind": "oneshot", "sparsities": draw(st.lists(
            st.sampled_from([0.3, 0.5, 0.7, 0.9]), min_size=1, max_size=3, unique=True))}
    if draw(st.booleans()):
        masks["rand"] = {"kind": "random", "sparsities": [0.5]}
    starts = {"lottery": "init", "reinit": "reinit", "finetune": "trained", "rewind": f"rewind@{epochs // 2}"}
    chosen = draw(st.lists(st.sampled_from(sorted(starts)), min_size=1, max_size=4, unique=True))
    arms = {name: {"start": starts[name]} for name in chosen}
    pairs = [["init", "trained"]] + [[f"{point}*mask", arm] for arm in chosen if arm != "reinit"
                                     for point in ("init", "reinit")][:3]
    spec = {
        "name": draw(st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)),
        "seeds": draw(st.lists(st.integers(0, 9), min_size=1, max_size=2, unique=True)),
        "data": {"dataset": "digits", "batch_size": draw(st.sampled_from([32, 64, 128]))},
        "model": {"arch": draw(st.sampled_from(["lenet300100", "mlp", "convnet"]))},
        "train": {"epochs": epochs, "lr": draw(st.sampled_from([0.01, 0.05, 0.1])),
                  "schedule": {"kind": "step", "milestones": milestones}},
        "masks": masks, "arms": arms,
        "measure": {"p": [0.1, 0.2], "pairs": pairs},
    }
    if draw(st.booleans()):
        spec["sweep"] = {"train.lr": [0.01, 0.1]}
    return spec


def compiled(spec: dict):
    return compile_plan(parse_spec(to_toml(spec)))


def keys(plan) -> list[str]:
    return [stage.key for stage in plan.stages]


@settings(max_examples=25, deadline=None)
@given(specs())
def test_compilation_succeeds_and_is_deterministic(spec):
    first, second = compiled(spec), compiled(spec)
    assert keys(first) == keys(second)
    assert len(set(keys(first))) == len(first.stages)
    position = {key: index for index, key in enumerate(keys(first))}
    assert all(position[parent] < position[stage.key] for stage in first.stages for parent in stage.parents)


@settings(max_examples=25, deadline=None)
@given(specs(), st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True))
def test_keys_ignore_names_descriptions_and_tracking(spec, name):
    renamed = {**spec, "name": name, "description": "another story",
               "tracking": {"uri": "sqlite:///elsewhere.db", "experiment": name}, "storage": {"root": "x"}}
    assert keys(compiled(renamed)) == keys(compiled(spec))


@settings(max_examples=25, deadline=None)
@given(specs())
def test_changing_the_lr_changes_the_dense_key_and_every_descendant(spec):
    spec.pop("sweep", None)
    other = {**spec, "train": {**spec["train"], "lr": spec["train"]["lr"] * 3}}
    assert not set(keys(compiled(spec))) & set(keys(compiled(other)))


@settings(max_examples=25, deadline=None)
@given(specs())
def test_arms_on_one_mask_cost_the_same_under_the_default_budget(spec):
    plan = compiled(spec)
    by_mask: dict[str, set[int]] = {}
    for arm in plan.arms:
        assert arm.equal_budget
        by_mask.setdefault(arm.mask, set()).add(arm.prefix_epochs + arm.own_epochs)
    assert all(len(totals) == 1 for totals in by_mask.values())


@settings(max_examples=25, deadline=None)
@given(specs())
def test_the_plan_never_trains_more_than_the_naive_total(spec):
    plan = compiled(spec)
    assert plan.epochs <= plan.naive_epochs


def test_an_explicit_unequal_budget_is_flagged():
    spec = {"name": "x", "data": {"dataset": "digits"}, "model": {"arch": "mlp"},
            "train": {"epochs": 10, "lr": 0.1}, "masks": {"o": {"kind": "oneshot", "sparsities": [0.5]}},
            "arms": {"lottery": {"start": "init"}, "short": {"start": "trained", "epochs": 3}}}
    flags = {arm.arm: arm.equal_budget for arm in compiled(spec).arms}
    assert flags == {"lottery": True, "short": False}


@settings(max_examples=10, deadline=None)
@given(st.sampled_from([0.2, 0.5, 0.8]), st.integers(1, 5), st.sampled_from(["layerwise", "global"]))
def test_imp_kept_counts_follow_the_planned_rounds(rate, rounds, scope):
    spec = {"name": "x", "data": {"dataset": "digits"}, "model": {"arch": "lenet300100"},
            "train": {"epochs": 2, "lr": 0.1},
            "masks": {"imp": {"kind": "imp", "rate": rate, "rounds": rounds, "scope": scope}}}
    plan = compiled(spec)
    planned = [stage for stage in plan.stages if stage.kind.name == "mask"]
    assert [stage.config.settings["round"] for stage in planned] == list(range(1, rounds + 1))
    model = build_model("lenet300100", num_classes=10, in_channels=1, input_size=8, seed=0)
    weights = {name: weight.detach() for name, weight in prunable_tensors(model).items()}
    mask = dense_mask(weights)
    for stage in planned:
        mask = imp_round({n: w + torch.randn_like(w) * 0.01 for n, w in weights.items()}, stage.config.settings["rate"],
                         mask, scope=scope)
        r = stage.config.settings["round"]
        if scope == "layerwise":
            for name, kept in mask.kept().items():
                assert abs(kept - (1 - rate) ** r * weights[name].numel()) <= r
        total = sum(w.numel() for w in weights.values())
        assert abs(sum(mask.kept().values()) - (1 - rate) ** r * total) <= r * len(weights)
        assert stage.labels["sparsity"] == pytest.approx(1 - (1 - rate) ** r)


MUTATIONS = st.sampled_from([None, -1, 0, 1.5, "nonsense", [], {}, [1, "a"], True, {"kind": "bogus"}])


@settings(max_examples=60, deadline=None)
@given(specs(), st.data())
def test_invalid_specs_raise_the_spec_error_and_nothing_else(spec, data):
    table = data.draw(st.sampled_from(["data", "model", "train", "measure", "masks", "arms", "top"]))
    target = spec if table == "top" else spec[table]
    field = data.draw(st.sampled_from(sorted(target) + ["unknown_field"]))
    value = data.draw(MUTATIONS)
    if value is None:
        target.pop(field, None)
    else:
        target[field] = value
    try:
        compiled(spec)
    except SpecError as error:
        assert error.problems and all(problem.line for problem in error.problems)


def test_stage_keys_are_pinned():
    """These keys change only on purpose (a schema version bump, a change in what a stage consumes)."""
    plan = compile_plan(load_spec(ROOT / "specs" / "quickstart.toml"))
    dense = [stage for stage in plan.stages if stage.kind.name == "dense"]
    first_imp = next(s for s in plan.stages if s.kind.name == "mask" and s.labels["generator"] == "imp")
    lottery = next(a for a in plan.arms if a.arm == "lottery" and a.generator == "imp" and a.round == 3)
    assert [stage.key for stage in dense] == [
        "5d6f7774e9d393358703", "81a9dbdda78ed47368d3", "a1523493ab62a3968d59", "c7f358723a2b10d94296"]
    assert first_imp.key == "f8efd188e8a172683a4f"
    assert lottery.stage == "53c36d028a48e07d71a9"


CHANGED_ON_PURPOSE = """
[masks]
snip = { kind = "snip", sparsities = [0.9] }
synflow = { kind = "synflow", sparsities = [0.9] }
gradual = { kind = "gradual", sparsities = [0.9], initial_sparsity = 0.5, epochs = 4 }
"""


def test_keys_of_the_generators_that_changed_on_purpose_are_pinned(tmp_path):
    """Keys that changed on purpose (the README's "The plan" says why), each beside the key it had before: SNIP's
    when it moved to eval-mode scoring (its config gained `mode`), SynFlow's when its last round moved to exactly s
    and gradual's when its first mask moved to t_0 (their generator version 2). Every other stage kept its key."""
    path = tmp_path / "changed.toml"
    path.write_text((ROOT / "specs" / "quickstart.toml").read_text() + CHANGED_ON_PURPOSE)
    plan = compile_plan(load_spec(path))
    masks = [stage for stage in plan.stages if stage.kind.name == "mask"]
    first = {name: next(stage for stage in masks if stage.labels["generator"] == name)
             for name in ("snip", "synflow", "gradual")}
    assert first["snip"].config.settings["mode"] == "eval" and "version" not in first["snip"].config.settings
    assert first["snip"].key == "1615103ecd0792486946"  # was 979d187a537e56dd3630
    assert first["synflow"].config.settings["version"] == 2
    assert first["synflow"].key == "c489cd8ee34f35fcfe97"  # was b501b106e17185c81a44
    assert first["gradual"].config.settings["version"] == 2
    assert first["gradual"].key == "d5550a5915141ebebb57"  # was 06bf5f179d2ed6ddd9bf


def test_sharing_across_specs_and_generators():
    plan = compile_plan(load_spec(ROOT / "specs" / "quickstart.toml"))
    assert len(plan.trunks) == 4
    assert sum(stage.epochs for stage in plan.stages) == plan.epochs < plan.naive_epochs
    imp_rounds = [s for s in plan.stages if s.kind.name == "train" and s.labels["generator"] == "imp"
                  and s.config.start == "init"]
    assert len(imp_rounds) == 4 * 3 and all(s.labels["arm"] == "lottery" for s in imp_rounds)
    assert math.isclose(plan.epochs, 4 * 12 * (1 + 3 * 3 + 2 * 3))
