"""Mask generators: the registry, and the four pruning-at-init / during-training methods on nets whose scores can
be written down by hand."""

import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ltspec import masks
from ltspec.masks.gradual import GradualPruning
from ltspec.masks.snip import snip_scores
from ltspec.masks.synflow import synflow_mask
from ltspec.pruning import magnitude_mask
from ltspec.spec.models import Spec


def two_layer(w1: torch.Tensor, w2: torch.Tensor) -> nn.Sequential:
    """x -> W2 W1 x: no bias, no activation, so every score has a closed form."""
    net = nn.Sequential(nn.Linear(w1.shape[1], w1.shape[0], bias=False), nn.Linear(w2.shape[1], w2.shape[0], bias=False))
    with torch.no_grad():
        net[0].weight.copy_(w1)
        net[1].weight.copy_(w2)
    return net


def weights_of(net: nn.Module) -> dict[str, nn.Parameter]:
    return {"0.weight": net[0].weight, "1.weight": net[1].weight}


W1 = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]])  # hidden 2 <- input 3
W2 = torch.tensor([[0.5, -1.5], [2.0, 1.0]])  # output 2 <- hidden 2


def test_every_generator_is_registered_with_its_table_and_no_other_kind_validates():
    assert set(masks.REGISTRY) == {"oneshot", "imp", "admm", "random", "magnitude_init", "snip", "synflow", "gradual",
                                   "shuffle"}
    for kind, generator in masks.REGISTRY.items():
        assert generator.settings.model_fields["kind"].annotation.__args__ == (kind,)
    base = {"name": "x", "data": {"dataset": "digits"}, "model": {"arch": "mlp"}, "train": {"epochs": 2, "lr": 0.1}}
    Spec.model_validate({**base, "masks": {"m": {"kind": "snip", "sparsities": [0.5]}}})
    with pytest.raises(ValueError, match="kind"):
        Spec.model_validate({**base, "masks": {"m": {"kind": "grasp", "sparsities": [0.5]}}})


def test_mask_modules_import_no_torch():
    """The spec checker imports every generator module; torch must stay out of `ltspec validate`."""
    import subprocess

    code = "import sys, ltspec.masks, ltspec.spec; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_snip_scores_are_gradient_times_weight_written_by_hand():
    net = two_layer(W1, W2)
    x, y = torch.tensor([[1.0, 2.0, -1.0], [0.5, -1.0, 2.0]]), torch.tensor([0, 1])
    scores = snip_scores(net, weights_of(net), [(x, y)])
    hidden = x @ W1.T
    logits = hidden @ W2.T
    dlogits = (torch.softmax(logits, dim=1) - nn.functional.one_hot(y, 2).float()) / len(y)
    grad_w2 = dlogits.T @ hidden
    grad_w1 = (dlogits @ W2).T @ x
    assert torch.allclose(scores["1.weight"], (grad_w2 * W2).abs(), atol=1e-6)
    assert torch.allclose(scores["0.weight"], (grad_w1 * W1).abs(), atol=1e-6)


def test_snip_sums_gradients_over_its_batches():
    net = two_layer(W1, W2)
    batches = [(torch.eye(3)[:2], torch.tensor([0, 1])), (torch.ones(1, 3), torch.tensor([1]))]
    both = snip_scores(net, weights_of(net), batches)
    grads = {}
    for batch in batches:
        net.zero_grad()
        nn.functional.cross_entropy(net(batch[0]), batch[1]).backward()
        for name, weight in weights_of(net).items():
            grads[name] = grads.get(name, 0) + weight.grad
    for name, weight in weights_of(net).items():
        assert torch.allclose(both[name], (grads[name] * weight).abs())


SNIP_ON_A_BN_NET = """\
name = "snip-mode"
seeds = [0]

[data]
dataset = "synthetic"
batch_size = 64

[model]
arch = "resnet20"
width = 0.25

[train]
epochs = 1
lr = 0.1

[masks.snip]
kind = "snip"
sparsities = [0.9]
{mode}

[storage]
root = "{folder}/store"
"""


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_snip_scores_a_batch_norm_net_in_the_mode_its_table_asks_eval_by_default(tmp_path, mode):
    """The SNIP authors score with batch norm in eval mode (`is_train: False`), and so does ltspec unless the table
    says `mode = "train"`; on a BN net the two masks differ in most of their kept weights."""
    from itertools import islice

    from ltspec.nets import state_on_cpu
    from ltspec.plan import compile_plan
    from ltspec.spec import load_spec
    from ltspec.kinds import mask as mask_kind
    from ltspec.stages import Context
    from ltspec.stages.context import model
    from ltspec.stages.runtime import StageRuntime
    from ltspec.stages.weights import load_mask
    from ltspec.store import Store

    from conftest import write_spec

    line = 'mode = "train"' if mode == "train" else ""
    plan = compile_plan(load_spec(write_spec(tmp_path, SNIP_ON_A_BN_NET, mode=line)))
    ctx = Context(store=Store(tmp_path / "store"), device=torch.device("cpu"), stages={s.key: s for s in plan.stages})
    trunk, stage = plan.trunks[0], next(s for s in plan.stages if s.kind == mask_kind.KIND)
    config = trunk.config
    ctx.store.write_tensors(trunk.key, "init", state_on_cpu(model(config.data, config.model, 0)))  # as dense does
    mask_kind.run(stage, StageRuntime(ctx), lambda rows: None)
    made = load_mask(ctx, stage.key)

    sources = mask_kind.Sources(stage, StageRuntime(ctx), lambda rows: None, masks.generator("snip").consumes)
    expected = {}
    for scored_in in ("eval", "train"):
        network = model(config.data, config.model, 0)
        network.load_state_dict(ctx.store.read_tensors(trunk.key, "init"))
        network.train(scored_in == "train")
        weights, excluded = sources.prunable(network)
        scores = snip_scores(network, weights, islice(sources.batches(), 1))
        expected[scored_in] = magnitude_mask(scores, 0.9, scope="global", exclude=excluded)
    assert made == expected[mode]
    assert expected["eval"] != expected["train"]


def test_synflow_one_round_keeps_the_top_synaptic_flow_written_by_hand():
    net = two_layer(W1, W2)
    # R = 1ᵀ|W2||W1|1: ∂R/∂|W1|[i, j] = Σ_k |W2|[k, i]; ∂R/∂|W2|[k, i] = Σ_j |W1|[i, j].
    score1 = W1.abs() * W2.abs().sum(dim=0)[:, None]
    score2 = W2.abs() * W1.abs().sum(dim=1)[None, :]
    expected = magnitude_mask({"0.weight": score1, "1.weight": score2}, 0.5, scope="global")
    mask = synflow_mask(net, ["0.weight", "1.weight"], (3,), 0.5, iterations=1)
    assert mask == expected
    assert torch.equal(net[0].weight, W1) and torch.equal(net[1].weight, W2)  # the network itself is untouched


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), sparsity=st.floats(0.05, 0.95), iterations=st.integers(1, 6),
       scope=st.sampled_from(["layerwise", "global"]))
def test_synflow_keeps_exact_counts_leaves_excluded_layers_dense_and_is_deterministic(seed, sparsity, iterations,
                                                                                        scope):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 4), nn.Linear(4, 3))
    names = ["0.weight", "3.weight", "4.weight"]
    mask = synflow_mask(net, names, (6,), sparsity, iterations, scope=scope, exclude=["0.weight"])
    assert mask == synflow_mask(net, names, (6,), sparsity, iterations, scope=scope, exclude=["0.weight"])
    assert mask["0.weight"].all()
    counted = [name for name in names if name != "0.weight"]
    if scope == "layerwise":
        for name in counted:
            n = mask[name].numel()
            assert mask.kept()[name] == n - round(sparsity * n)
    else:
        total = sum(mask[name].numel() for name in counted)
        assert sum(mask.kept()[name] for name in counted) == total - round(sparsity * total)


@settings(max_examples=80, deadline=None)
@given(widths=st.lists(st.integers(1, 6), min_size=2, max_size=4), iterations=st.integers(1, 6),
       sparsity=st.one_of(st.integers(1, 19).map(lambda k: k / 20), st.floats(0.01, 0.99)),
       scope=st.sampled_from(["layerwise", "global"]), seed=st.integers(0, 2**16))
def test_synflow_last_round_prunes_to_exactly_the_target(widths, iterations, sparsity, scope, seed):
    """The rule every generator keeps, n − round(s·n), holds after the last round whatever the rounds: its target
    is s itself, not 1 − (1 − s)^(n/n), which floating point makes 0.30000000000000004 for 0.3 (a pool of 15 then
    keeps 10 instead of 11)."""
    torch.manual_seed(seed)
    net = nn.Sequential(*(nn.Linear(a, b, bias=False) for a, b in zip(widths, widths[1:])))
    names = [f"{index}.weight" for index in range(len(widths) - 1)]
    mask = synflow_mask(net, names, (widths[0],), sparsity, iterations, scope=scope)
    pools = [[name] for name in names] if scope == "layerwise" else [names]
    for pool in pools:
        n = sum(mask[name].numel() for name in pool)
        assert sum(mask.kept()[name] for name in pool) == n - round(sparsity * n)


def test_gradual_pruning_follows_the_cubic_schedule_and_ends_exactly_at_the_target():
    torch.manual_seed(0)
    layer = nn.Linear(20, 10, bias=False)
    weights = {"weight": layer.weight}
    hook = GradualPruning(weights, 0.8, initial=0.0, start_step=2, end_step=10, frequency=3)
    assert hook.sparsity_at(2) == 0.0 and hook.sparsity_at(10) == pytest.approx(0.8)
    assert hook.sparsity_at(6) == pytest.approx(0.8 - 0.8 * 0.5 ** 3)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    seen = []
    for step in range(1, 13):
        optimizer.zero_grad()
        layer(torch.randn(4, 20)).square().sum().backward()
        optimizer.step()
        previous = hook.mask
        hook.after_step()
        if hook.mask is not previous:
            seen.append(step)
            if previous is not None:
                assert not (hook.mask["weight"] & ~previous["weight"]).any()  # nested
        if hook.mask is not None:
            assert (layer.weight[~hook.mask["weight"]] == 0).all()
    assert seen == [2, 5, 8, 10]  # t_0, t_0 + Δt, t_0 + 2Δt, and t_end
    assert hook.mask.kept()["weight"] == 200 - round(0.8 * 200)


def test_gradual_pruning_resumes_from_its_state():
    torch.manual_seed(0)
    weights = {"weight": nn.Parameter(torch.randn(8, 8))}
    hook = GradualPruning(weights, 0.5, initial=0.0, start_step=0, end_step=4, frequency=2)
    for _ in range(3):
        hook.after_step()
    resumed = GradualPruning(weights, 0.5, initial=0.0, start_step=0, end_step=4, frequency=2)
    resumed.load_state_dict(hook.state_dict())
    for each in (hook, resumed):
        each.after_step()
    assert resumed.mask == hook.mask and resumed.steps == hook.steps == 4


def fit_with_gradual_pruning(epochs: int, checkpoints=None, *, stop_after: int | None = None, snapshots=False):
    """A tiny net trained by `ltspec.training.fit` for `epochs` epochs of 8 steps under gradual pruning from t_0 = 0
    (s_i = 0.5, s_f = 0.8, every 10 steps to step 30); returns the net, the hook and the sparsity of its first layer
    at each forward pass."""
    from ltspec.recipe import ConstantSchedule, Recipe, Sgd
    from ltspec.training import fit

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 20, bias=False), nn.ReLU(), nn.Linear(20, 3, bias=False))
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    hook = GradualPruning({"0.weight": net[0].weight, "2.weight": net[2].weight}, 0.8, initial=0.5, start_step=0,
                          end_step=30, frequency=10, snapshots=snapshots)
    seen = []
    net[0].register_forward_pre_hook(lambda module, inputs: seen.append(float((module.weight == 0).float().mean())))
    recipe = Recipe(epochs, 0.1, Sgd(momentum=0.9, weight_decay=0.0), ConstantSchedule(kind="constant"))
    fit(net, lambda epoch: [(x[i:i + 8], y[i:i + 8]) for i in range(0, 64, 8)], {}, recipe, steps_per_epoch=8,
        hooks=[hook], checkpoints=checkpoints, epochs=stop_after)
    return net, hook, seen


def test_gradual_pruning_from_epoch_0_prunes_to_the_initial_sparsity_before_the_first_step():
    """Zhu & Gupta (and TF-MOT's PolynomialDecay) prune to s_i at t_0; from t_0 = 0 that is before any step, so
    no step trains dense, and the masks land at steps 0, 10, 20 and 30."""
    _, hook, seen = fit_with_gradual_pruning(epochs=5)
    schedule = [hook.sparsity_at(step) for step in (0, 10, 20, 30)]
    assert schedule[0] == 0.5 and schedule[-1] == pytest.approx(0.8)
    expected = [(160 - round(sparsity * 160)) for sparsity in schedule]  # weights the first layer keeps
    kept = [round((1 - fraction) * 160) for fraction in seen]
    assert kept == [expected[0]] * 10 + [expected[1]] * 10 + [expected[2]] * 10 + [expected[3]] * 10


class CheckpointsInMemory:
    """`ltspec.training.Checkpoints` in a dict: every epoch's state, copied as a checkpoint file would be."""

    def __init__(self):
        self.state = None

    def load(self):
        return self.state

    def save(self, epoch, state, *, final):
        import copy

        self.state = copy.deepcopy(state())


def test_gradual_pruning_from_epoch_0_resumes_exactly():
    whole, whole_hook, _ = fit_with_gradual_pruning(epochs=5)
    checkpoints = CheckpointsInMemory()
    fit_with_gradual_pruning(epochs=5, checkpoints=checkpoints, stop_after=2)  # killed after epoch 2 (step 16)
    resumed, resumed_hook, seen = fit_with_gradual_pruning(epochs=5, checkpoints=checkpoints)
    assert len(seen) == 24 and resumed_hook.mask == whole_hook.mask
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))


def test_gradual_snapshots_are_the_masks_at_the_target_after_each_epoch_and_resume_exactly():
    """The early-bird masks of a gradual run: epoch 0 is θT's magnitude mask at the target; from the epoch the
    target is reached (step 30, in epoch 4) the snapshot is the run's own mask."""
    whole, whole_hook, _ = fit_with_gradual_pruning(epochs=5, snapshots=True)
    assert list(whole_hook.snapshots) == [0, 1, 2, 3, 4, 5]
    assert all(snapshot.kept() == whole_hook.mask.kept() for snapshot in whole_hook.snapshots.values())
    assert whole_hook.snapshots[4] == whole_hook.snapshots[5] == whole_hook.mask.to("cpu")
    checkpoints = CheckpointsInMemory()
    fit_with_gradual_pruning(epochs=5, checkpoints=checkpoints, stop_after=2, snapshots=True)
    _, resumed_hook, _ = fit_with_gradual_pruning(epochs=5, checkpoints=checkpoints, snapshots=True)
    assert resumed_hook.snapshots == whole_hook.snapshots


# The tiny spec with SNIP, SynFlow, magnitude-at-init and GMP masks, the three arms and one R_p pair
NEW_GENERATORS = {"name": "new-generators", "batch_size": 256, "augmentation": "none", "train": "",
                  "masks": """\
[masks.snip]
kind = "snip"
sparsities = [0.5]
batches = 2
exclude = ["hidden1"]

[masks.synflow]
kind = "synflow"
sparsities = [0.5]
iterations = 5
exclude = ["hidden1"]

[masks.magnitude_init]
kind = "magnitude_init"
sparsities = [0.5]

[masks.gradual]
kind = "gradual"
sparsities = [0.5]
epochs = 2
end_epoch = 1
frequency = 2

""", "measure": 'p = [0.2]\npairs = [["init*mask", "finetune"]]'}


@pytest.mark.slow
def test_the_new_generators_run_end_to_end_and_appear_in_the_report(tmp_path):
    from rich.console import Console

    from ltspec.plan import compile_plan
    from ltspec.report import write_report
    from ltspec.runners.local import run_local
    from ltspec.spec import load_spec
    from ltspec.stages.weights import load_mask
    from ltspec.stages import Context
    from ltspec.store import Store

    from conftest import write_tiny_spec

    path = write_tiny_spec(tmp_path, **NEW_GENERATORS)
    loaded = load_spec(path)
    plan = compile_plan(loaded)
    summary = run_local(loaded, plan, device="cpu", console=Console(quiet=True))
    assert summary.ok and len(summary.ran) == len(plan.stages)
    store = Store(tmp_path / "store")
    ctx = Context(store=store, device=torch.device("cpu"), stages={s.key: s for s in plan.stages})
    masks_made = {stage.labels["generator"]: load_mask(ctx, stage.key) for stage in plan.stages
                  if stage.kind.name == "mask"}
    assert set(masks_made) == {"snip", "synflow", "magnitude_init", "gradual"}
    for name, mask in masks_made.items():
        excluded = {"hidden1.weight"} if name in ("snip", "synflow") else set()
        assert mask.excluded == excluded and all(mask[layer].all() for layer in excluded)
        assert mask.sparsity() == pytest.approx(0.5, abs=1e-3), name
    trunk = plan.trunks[0].key
    initial = {name: w for name, w in store.read_tensors(trunk, "init").items() if name.endswith(".weight")}
    assert masks_made["magnitude_init"] == magnitude_mask(initial, 0.5)  # the largest |θ0| of each layer
    gradual = next(stage for stage in plan.stages
                   if stage.kind.name == "mask" and stage.labels["generator"] == "gradual")
    assert store.has(gradual.key, "weights")  # it trains: its network is the `trained` start point of its arms
    # ... and the network the evaluate stage scores under the mask, right after pruning (not θT ⊙ m)
    from ltspec.pruning import EnforceMask
    from ltspec.stages.context import loaders, model
    from ltspec.training import evaluate

    scored = next(stage for stage in plan.stages if stage.kind.name == "evaluate" and stage.parents[1] == gradual.key)
    trunk_config = plan.stage(trunk).config
    pruned = model(trunk_config.data, trunk_config.model, trunk_config.seed)
    pruned.load_state_dict(store.read_tensors(gradual.key, "weights"))
    EnforceMask(masks_made["gradual"], pruned)
    _, evaluation = loaders(trunk_config.data, trunk_config.seed, scored.runtime, ctx)
    expected = evaluate(pruned, evaluation["test"].epoch(0)).accuracy
    assert store.record(scored.key)["metrics"]["test_accuracy"] == expected

    code = write_report(loaded, out_dir=tmp_path / "report", console=Console(quiet=True))
    assert code == 0
    for name in masks_made:
        table = (tmp_path / "report" / f"arms-{name}.md").read_text()
        assert "lottery" in table and "50.0%" in table and "—" not in table.split("\n", 3)[3]
