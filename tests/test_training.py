import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ltspec.recipe import Adam, ConstantSchedule, CosineSchedule, Sgd, StepSchedule
from ltspec.training import (
    EpochResult,
    compile_model,
    evaluate,
    make_optimizer,
    make_scheduler,
    train_epoch,
)


def blobs(shape, n=96, classes=3, seed=0):
    """Gaussian clusters, one per class: learnable in a few epochs by a tiny net."""
    generator = torch.Generator().manual_seed(seed)
    centers = 2 * torch.randn(classes, *shape, generator=generator)
    y = torch.randint(classes, (n,), generator=generator)
    x = centers[y] + torch.randn(n, *shape, generator=generator)
    return x, y


def batched(x, y, size):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def convnet(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def train(model, batches, epochs, optimizer_settings, schedule_settings=ConstantSchedule(kind="constant"), **kwargs):
    """`optimizer_settings`: (the initial lr, the optimizer's settings)."""
    optimizer = make_optimizer(model.parameters(), *optimizer_settings)
    scheduler = make_scheduler(optimizer, schedule_settings, epochs=epochs, steps_per_epoch=len(batches))
    return [train_epoch(model, batches, optimizer, scheduler, **kwargs) for _ in range(epochs)]


def lr_trajectory(schedule_settings, epochs, steps_per_epoch, lr=1.0):
    """The lr of every step, and the lr left after the last one."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make_scheduler(optimizer, schedule_settings, epochs=epochs, steps_per_epoch=steps_per_epoch)
    lrs = []
    for _ in range(epochs * steps_per_epoch):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs, optimizer.param_groups[0]["lr"]


def test_training_lowers_loss_and_raises_accuracy():
    x, y = blobs((8,))
    model = mlp()
    before = evaluate(model, batched(x, y, 32))
    results = train(model, batched(x, y, 16), 5, (0.05, Sgd(weight_decay=0.0)))
    after = evaluate(model, batched(x, y, 32))
    assert results[-1].loss < results[0].loss
    assert results[-1].accuracy > results[0].accuracy
    assert after.loss < before.loss
    assert after.accuracy > before.accuracy
    assert after.accuracy > 0.9


def test_same_seed_same_batches_give_bitwise_identical_runs():
    x, y = blobs((3, 6, 6))
    runs = []
    for _ in range(2):
        model = convnet(seed=1)
        results = train(
            model,
            batched(x, y, 16),
            3,
            (0.1, Sgd(weight_decay=5e-4)),
            StepSchedule(milestones=[2]),
        )
        runs.append((model.state_dict(), results))
    (weights_a, results_a), (weights_b, results_b) = runs
    assert results_a == results_b
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)


def test_epoch_metrics_are_means_over_examples_with_a_partial_last_batch():
    x, y = blobs((8,), n=40)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = make_scheduler(optimizer, ConstantSchedule(kind="constant"), epochs=1, steps_per_epoch=3)
    result = train_epoch(model, batched(x, y, 16), optimizer, scheduler)
    with torch.no_grad():
        logits = model(x)
    assert result.examples == 40
    assert result.loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert result.accuracy == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert result.lr == 0.0


def test_step_schedule_multiplies_by_gamma_at_milestone_epochs():
    lrs, _ = lr_trajectory(StepSchedule(milestones=[2, 4], gamma=0.1), epochs=6, steps_per_epoch=3)
    assert lrs == pytest.approx([1.0] * 6 + [0.1] * 6 + [0.01] * 6)


def test_epoch_result_reports_the_lr_the_epoch_started_with():
    x, y = blobs((8,))
    results = train(
        mlp(), batched(x, y, 32), 3, (0.1, Sgd(weight_decay=0.0)), StepSchedule(milestones=[1, 2])
    )
    assert [result.lr for result in results] == pytest.approx([0.1, 0.01, 0.001])


def test_cosine_schedule_runs_from_full_lr_through_half_to_zero():
    lrs, final = lr_trajectory(CosineSchedule(kind="cosine"), epochs=4, steps_per_epoch=5, lr=0.2)
    assert lrs[0] == 0.2
    assert lrs[10] == pytest.approx(0.1)
    assert all(later < earlier for earlier, later in zip(lrs, lrs[1:]))
    assert final == pytest.approx(0.0, abs=1e-12)


def test_warmup_ramps_linearly_to_the_full_lr_then_hands_over_to_the_schedule():
    lrs, final = lr_trajectory(CosineSchedule(kind="cosine", warmup_epochs=2), epochs=6, steps_per_epoch=4)
    assert lrs[:8] == pytest.approx([(step + 1) / 8 for step in range(8)])
    assert lrs[8] == 1.0
    assert all(later < earlier for earlier, later in zip(lrs[8:], lrs[9:]))
    assert final == pytest.approx(0.0, abs=1e-12)


def test_constant_schedule_keeps_the_lr():
    lrs, final = lr_trajectory(ConstantSchedule(kind="constant"), epochs=3, steps_per_epoch=4, lr=0.3)
    assert lrs == [0.3] * 12
    assert final == 0.3


def test_a_resumed_schedule_continues_where_it_stopped():
    schedule = CosineSchedule(kind="cosine", warmup_epochs=1)
    expected, _ = lr_trajectory(schedule, epochs=4, steps_per_epoch=3)
    first = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    first_scheduler = make_scheduler(first, schedule, epochs=4, steps_per_epoch=3)
    for _ in range(5):
        first.step()
        first_scheduler.step()
    resumed = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(resumed, schedule, epochs=4, steps_per_epoch=3)
    resumed.load_state_dict(first.state_dict())
    scheduler.load_state_dict(first_scheduler.state_dict())
    lrs = []
    for _ in range(7):
        lrs.append(resumed.param_groups[0]["lr"])
        resumed.step()
        scheduler.step()
    assert lrs == pytest.approx(expected[5:])


@settings(max_examples=25, deadline=None)
@given(
    milestones=st.lists(st.integers(1, 8), max_size=3, unique=True).map(sorted).map(tuple),
    gamma=st.floats(0.05, 0.9),
    warmup_epochs=st.integers(0, 2),
    steps_per_epoch=st.integers(1, 5),
)
def test_step_schedule_with_warmup_is_ramp_times_decay(milestones, gamma, warmup_epochs, steps_per_epoch):
    schedule = StepSchedule(milestones=list(milestones), gamma=gamma, warmup_epochs=warmup_epochs)
    lrs, _ = lr_trajectory(schedule, epochs=8, steps_per_epoch=steps_per_epoch)
    warmup_steps = warmup_epochs * steps_per_epoch
    for step, lr in enumerate(lrs):
        ramp = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        passed = sum(step // steps_per_epoch >= milestone for milestone in milestones)
        assert lr == pytest.approx(ramp * gamma**passed)


@pytest.mark.parametrize(
    "optimizer_settings",
    [
        (0.05, Sgd(weight_decay=0.0)),
        (0.05, Sgd(nesterov=True, weight_decay=5e-4)),
        (0.01, Adam(kind="adam")),
        (0.01, Adam(kind="adamw", weight_decay=0.01, betas=(0.8, 0.99))),
    ],
    ids=["sgd", "sgd-nesterov", "adam", "adamw"],
)
def test_every_optimizer_trains(optimizer_settings):
    x, y = blobs((8,))
    results = train(mlp(), batched(x, y, 16), 3, optimizer_settings)
    assert results[-1].loss < results[0].loss


def test_optimizer_settings_reach_the_optimizer():
    model = mlp()
    sgd = make_optimizer(model.parameters(), 0.1, Sgd(momentum=0.8, nesterov=True, weight_decay=0.0))
    adamw_settings = (0.01, Adam(kind="adamw", weight_decay=0.1, betas=(0.8, 0.9)))
    adamw = make_optimizer(model.parameters(), *adamw_settings)
    assert isinstance(sgd, torch.optim.SGD) and isinstance(adamw, torch.optim.AdamW)
    assert (sgd.defaults["lr"], sgd.defaults["momentum"], sgd.defaults["nesterov"]) == (0.1, 0.8, True)
    assert (adamw.defaults["lr"], adamw.defaults["weight_decay"], adamw.defaults["betas"]) == (0.01, 0.1, (0.8, 0.9))


def test_after_step_actions_run_once_per_step_between_optimizer_and_scheduler():
    x, y = blobs((8,))
    model = mlp()
    optimizer = make_optimizer(model.parameters(), 0.1, Sgd(weight_decay=0.0))
    scheduler = make_scheduler(optimizer, ConstantSchedule(kind="constant"), epochs=1, steps_per_epoch=6)
    weight = model[0].weight
    seen = []

    def record():
        seen.append((scheduler.last_epoch, weight.detach().clone()))

    other_calls = []
    train_epoch(model, batched(x, y, 16), optimizer, scheduler, after_step=[record, lambda: other_calls.append(1)])
    assert [step for step, _ in seen] == list(range(6))
    assert len(other_calls) == 6
    assert all(not torch.equal(before, after) for (_, before), (_, after) in zip(seen, seen[1:]))


def test_penalty_gradient_enters_the_step_but_not_the_reported_loss():
    x, y = blobs((8,), n=16)
    lr, strength = 0.1, 0.5
    plain, penalised = mlp(), mlp()
    start = penalised[0].weight.detach().clone()
    results = []
    for model, penalty in [(plain, None), (penalised, lambda: strength * penalised[0].weight.pow(2).sum())]:
        optimizer = make_optimizer(model.parameters(), lr, Sgd(momentum=0.0, weight_decay=0.0))
        scheduler = make_scheduler(optimizer, ConstantSchedule(kind="constant"), epochs=1, steps_per_epoch=1)
        results.append(train_epoch(model, [(x, y)], optimizer, scheduler, penalty=penalty))
    assert torch.allclose(penalised[0].weight - plain[0].weight, -lr * 2 * strength * start, atol=1e-6)
    assert torch.equal(penalised[2].weight, plain[2].weight)
    assert results[0] == results[1]


def test_bf16_autocasts_the_forward_on_cpu():
    x, y = blobs((8,))
    model = mlp()
    output_dtypes = set()
    model[0].register_forward_hook(lambda module, inputs, output: output_dtypes.add(output.dtype))
    results = train(model, batched(x, y, 16), 3, (0.05, Sgd(weight_decay=0.0)), precision="bf16")
    assert output_dtypes == {torch.bfloat16}
    assert model[0].weight.dtype == torch.float32
    assert results[-1].loss < results[0].loss
    assert evaluate(model, batched(x, y, 32), precision="bf16").accuracy > 0.9


def test_channels_last_converts_model_and_inputs_and_matches_contiguous_training():
    x, y = blobs((3, 6, 6))
    sgd = (0.1, Sgd(weight_decay=0.0))
    contiguous, converted = convnet(), convnet()
    input_formats = []
    converted.register_forward_pre_hook(
        lambda module, inputs: input_formats.append(inputs[0].is_contiguous(memory_format=torch.channels_last))
    )
    expected = train(contiguous, batched(x, y, 16), 2, sgd)
    results = train(converted, batched(x, y, 16), 2, sgd, channels_last=True)
    assert input_formats and all(input_formats)
    assert converted[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert results[-1].loss == pytest.approx(expected[-1].loss, rel=1e-4)
    assert torch.allclose(converted[0].weight, contiguous[0].weight, atol=1e-5)
    assert evaluate(converted, batched(x, y, 32), channels_last=True).accuracy == pytest.approx(
        evaluate(contiguous, batched(x, y, 32)).accuracy
    )


def test_a_nan_loss_shows_up_in_the_epoch_result():
    x, y = blobs((8,))
    x[20] = float("nan")
    results = train(mlp(), batched(x, y, 16), 1, (0.05, Sgd(weight_decay=0.0)))
    assert math.isnan(results[0].loss)


def test_evaluate_changes_neither_weights_nor_batchnorm_statistics_nor_mode():
    x, y = blobs((3, 6, 6))
    model = convnet()
    train(model, batched(x, y, 16), 1, (0.1, Sgd(weight_decay=0.0)))
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    result = evaluate(model, batched(x, y, 40))
    assert model.training
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert result == EpochResult(
        loss=pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5),
        accuracy=pytest.approx((logits.argmax(1) == y).float().mean().item()),
        lr=None,
        examples=96,
    )


def test_compiled_model_shares_parameters_with_the_original_under_prefixed_keys():
    """Only the wrapping: compiling even a tiny net costs ~20 s on a CPU, too slow for this suite."""
    model = mlp()
    compiled = compile_model(model)
    assert [id(p) for p in compiled.parameters()] == [id(p) for p in model.parameters()]
    assert list(compiled.state_dict()) == [f"_orig_mod.{name}" for name in model.state_dict()]


def test_bad_arguments_are_refused():
    model = mlp()
    optimizer = make_optimizer(model.parameters(), 0.1, Sgd(weight_decay=0.0))
    scheduler = make_scheduler(optimizer, ConstantSchedule(kind="constant"), epochs=1, steps_per_epoch=1)
    x, y = blobs((8,), n=4)
    with pytest.raises(ValueError, match="no batches"):
        train_epoch(model, [], optimizer, scheduler)
    with pytest.raises(ValueError, match="precision"):
        train_epoch(model, [(x, y)], optimizer, scheduler, precision="fp16")
    with pytest.raises(ValueError, match="optimizer kind 'rmsprop'"):
        make_optimizer(model.parameters(), 0.1, Sgd.model_construct(kind="rmsprop"))
    with pytest.raises(ValueError, match="schedule kind 'linear'"):
        unknown = ConstantSchedule.model_construct(kind="linear", warmup_epochs=0)
        make_scheduler(optimizer, unknown, epochs=1, steps_per_epoch=1)
