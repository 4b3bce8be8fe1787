"""Stage execution: what each kind of stage does with its parents' artifacts.

A runner decides where and when a stage runs; this module decides what it does. Every stage runs under the
store's claim on its key, so two processes never compute it twice; reads its parents' artifacts from the store;
writes its own atomically; and completes with a record (final metrics and per-epoch history) written last. A
training stage checkpoints every `checkpoint_every` epochs and resumes from its last checkpoint after a crash with
the same batches and the same result, because data order and augmentation are seeded per epoch.
"""

from __future__ import annotations

import hashlib
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ltspec import architectures
from ltspec.admm import admm_init, admm_mask, admm_penalty, admm_set_rho, admm_update
from ltspec.correlation import check_sparse_dense_p, overlap_by_layer
from ltspec.data import Dataset, DeviceLoader, load_dataset
from ltspec.nets import build_model
from ltspec.plan import Stage
from ltspec.pruning import Mask, dense_mask, imp_round, magnitude_mask, random_mask, select_prunable
from ltspec.spec.checks import DENSE_POINTS, rewind_epoch
from ltspec.store import Store
from ltspec import tracking
from ltspec.tracking import Tracker, rp_metric
from ltspec.training import (EpochResult, OptimizerSettings, ScheduleSettings, compile_model, evaluate,
                             make_optimizer, make_scheduler, train_epoch)

FLUSH_SECONDS = 10.0  # epoch metrics reach MLflow at a checkpoint at most this often (and at the end)
DATA_SEED = 0  # one train/test split for every run, so that seeds differ in init and batch order only
EpochCallback = Callable[[Stage, int, dict[str, float]], None]


class StageFailed(Exception):
    """A stage that cannot finish (a diverged loss, a missing dataset); the runner goes on with the others."""

    def __init__(self, stage: Stage, message: str):
        self.stage = stage
        super().__init__(f"stage {stage.key[:10]} ({stage.describe()}): {message}")


@dataclass
class Context:
    """What every stage of a run shares: the store, the device, the plan's stages, MLflow, loaded datasets."""

    store: Store
    device: torch.device
    stages: dict[str, Stage]
    tracker: Tracker | None = None
    on_epoch: EpochCallback | None = None
    datasets: dict[tuple, Dataset] = field(default_factory=dict)
    runs: dict[str, Any] = field(default_factory=dict)
    trunk_runs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What running a stage produced: final metrics, per-epoch history, small JSON artifacts."""

    metrics: dict[str, float]
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    artifacts: dict[str, Any] = field(default_factory=dict)


def reinit_seed(seed: int) -> int:
    """θ0' is drawn with a seed derived from the run's, never equal to another run's seed in practice."""
    return int.from_bytes(hashlib.sha256(f"reinit:{seed}".encode()).digest()[:4], "big")


def run_stage(stage: Stage, ctx: Context) -> tuple[dict, bool]:
    """Run one stage whose parents are complete, or find it done; returns (its record, whether it ran).

    Under the store's claim: a complete stage is skipped (and logged to this experiment from its record when the
    experiment lacks it, e.g. a dense run shared with another spec); otherwise it executes, logging each epoch
    to its MLflow run, writes its artifacts, and completes its record last. A failure marks the run FAILED, an
    interrupt KILLED; the checkpoint stays for the next attempt.
    """
    with ctx.store.claim(stage.key):
        earlier = _earlier_runs(stage, ctx)
        unlogged = ctx.tracker is not None and all(run.info.status != "FINISHED" for run in earlier)
        if ctx.store.is_complete(stage.key):
            record = ctx.store.record(stage.key)
            if unlogged:
                run_id = _start_run(stage, ctx, earlier)
                tracking.log_metrics(ctx.tracker, run_id, [(e, v) for e, v in record["history"]])
                _finish_run(stage, ctx, run_id, record, reused=True)
            return record, False
        run_id = _start_run(stage, ctx, earlier) if unlogged else None

        def log_epochs(rows: list) -> None:
            if run_id is not None and rows:
                tracking.log_metrics(ctx.tracker, run_id, rows)

        try:
            outcome = execute(stage, ctx, log_epochs)
        except BaseException as error:
            if run_id is not None:
                if not isinstance(error, KeyboardInterrupt):
                    ctx.tracker.client.log_text(run_id, traceback.format_exc(), "error.txt")
                tracking.end_stage(ctx.tracker, run_id, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
            if isinstance(error, (StageFailed, KeyboardInterrupt)):
                raise
            raise StageFailed(stage, f"{type(error).__name__}: {error}") from error
        record = {"key": stage.key, "kind": stage.kind, "config": stage.config, "parents": list(stage.parents),
                  "metrics": outcome.metrics, "history": [[epoch, values] for epoch, values in outcome.history],
                  "artifacts": outcome.artifacts}
        ctx.store.complete(stage.key, record)
        ctx.store.clear_checkpoint(stage.key)
        if run_id is not None:
            _finish_run(stage, ctx, run_id, record, reused=False)
        return record, True


def _earlier_runs(stage: Stage, ctx: Context) -> list:
    """The stage's MLflow runs: the FINISHED one of the runner's snapshot (a rerun asks nothing more), else all
    of them asked fresh."""
    if ctx.tracker is None:
        return []
    run = ctx.runs.get(stage.key)
    if run is not None and run.info.status == "FINISHED":
        return [run]
    return tracking.runs_of_stage(ctx.tracker, stage.key)


def _start_run(stage: Stage, ctx: Context, earlier: list) -> str:
    trunk = stage.key if stage.kind == "dense" else stage.labels["trunk"]
    if trunk not in ctx.trunk_runs:
        ctx.trunk_runs[trunk] = tracking.trunk_run(ctx.tracker, ctx.stages[trunk])
    return tracking.start_stage(ctx.tracker, stage, ctx.trunk_runs[trunk], earlier)


def _finish_run(stage: Stage, ctx: Context, run_id: str, record: dict, *, reused: bool) -> None:
    for name, value in record["artifacts"].items():
        tracking.log_json(ctx.tracker, run_id, f"{name}.json", value)
    if stage.kind == "mask":
        tracking.log_file(ctx.tracker, run_id, ctx.store.stage_dir(stage.key) / "mask.pt")
    tracking.log_metrics(ctx.tracker, run_id, [(stage.epochs, record["metrics"])],
                         tags={"ltspec.reused": str(reused).lower()})
    tracking.end_stage(ctx.tracker, run_id, "FINISHED")


def execute(stage: Stage, ctx: Context, log_epochs: Callable[[list], None] | None = None) -> Outcome:
    """Compute one stage from its parents' artifacts, writing its own; completing it is `run_stage`'s job."""
    run = {"dense": _dense, "mask": _mask, "train": _train, "evaluate": _evaluate, "measure": _measure}[stage.kind]
    return run(stage, ctx, log_epochs or (lambda rows: None))


def _dataset(config: dict, stage: Stage, ctx: Context) -> Dataset:
    data = config["data"]
    cache_key = (data["dataset"], stage.runtime.get("root", "data"), data["validation_split"])
    if cache_key not in ctx.datasets:
        ctx.datasets[cache_key] = load_dataset(data["dataset"], root=stage.runtime.get("root", "data"),
                                               download=stage.runtime.get("download", False),
                                               validation_split=data["validation_split"], seed=DATA_SEED)
    return ctx.datasets[cache_key]


def _model(config: dict, dataset: Dataset, seed: int) -> nn.Module:
    model = config["model"]
    return build_model(model["arch"], num_classes=dataset.num_classes, in_channels=dataset.in_channels,
                       input_size=dataset.input_size, width=model["width"], shortcut=model.get("shortcut"),
                       input_kind="signal" if dataset.train.x.dim() == 3 else "image", seed=seed)


def _channels_last(stage: Stage, dataset: Dataset) -> bool:
    """channels_last as asked, for image data only (a memory format of 4-D tensors)."""
    return bool(stage.runtime.get("channels_last")) and dataset.train.x.dim() == 4


def _loaders(config: dict, stage: Stage, ctx: Context,
             dataset: Dataset) -> tuple[DeviceLoader, dict[str, DeviceLoader]]:
    """The training loader, and the evaluation loaders by metric prefix: `test`, and `val` when a split is held out."""
    data = config["data"]
    common = {"mean": dataset.mean, "std": dataset.std, "device": ctx.device,
              "channels_last": _channels_last(stage, dataset)}
    train = DeviceLoader(dataset.train, batch_size=data["batch_size"], shuffle=True, seed=config["seed"],
                         augment=data["augmentation"] == "standard" and dataset.augmentable, **common)
    splits = {"test": dataset.test, "val": dataset.validation}
    return train, {name: DeviceLoader(split, batch_size=stage.runtime.get("eval_batch_size", 1000), shuffle=False,
                                      seed=0, augment=False, **common)
                   for name, split in splits.items() if split is not None}


def weight_names(model_config: dict, kinds: list[str]) -> list[str]:
    """Names of the model's weight tensors of the given kinds (conv, linear), in model order."""
    layers = architectures.prunable_layers(model_config["arch"], model_config.get("shortcut"))
    return [f"{layer.name}.weight" for layer in layers if layer.kind in kinds]


def _weights(model: nn.Module, model_config: dict, kinds: list[str]) -> dict[str, nn.Parameter]:
    params = dict(model.named_parameters())
    return {name: params[name] for name in weight_names(model_config, kinds)}


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}


def _train_loop(stage: Stage, ctx: Context, model: nn.Module, recipe: dict, log_epochs, *,
                mask: Mask | None = None, penalty=None, after_step=(), on_epoch_end=None,
                epochs: int | None = None) -> tuple[list, EpochResult | None]:
    """Train `epochs` epochs (default: the recipe's) with checkpoints, logging and a NaN check each epoch."""
    config, runtime = stage.config, stage.runtime
    dataset = _dataset(config, stage, ctx)
    train_loader, evaluation = _loaders(config, stage, ctx, dataset)
    model.to(ctx.device)
    channels_last = _channels_last(stage, dataset)  # the training loop converts the model and the inputs
    settings = recipe["optimizer"]
    optimizer = make_optimizer(model.parameters(), OptimizerSettings(
        kind=settings["kind"], lr=recipe["lr"], momentum=settings.get("momentum", 0.9),
        nesterov=settings.get("nesterov", False), weight_decay=settings["weight_decay"],
        betas=tuple(settings.get("betas", (0.9, 0.999)))))
    schedule = recipe["schedule"]
    scheduler = make_scheduler(optimizer, ScheduleSettings(
        kind=schedule["kind"], milestones=tuple(schedule.get("milestones", ())), gamma=schedule.get("gamma", 0.1),
        warmup_epochs=schedule["warmup_epochs"]), epochs=recipe["epochs"], steps_per_epoch=len(train_loader))
    enforce = []
    if mask is not None:
        mask = mask.to(ctx.device)
        params = dict(model.named_parameters())
        masked = {name: params[name] for name in mask}
        mask.apply_(masked)
        enforce = [lambda: mask.apply_(masked)]
    runner = compile_model(model) if runtime.get("compile") else model
    history, start, logged = [], 0, 0
    checkpoint = ctx.store.load_checkpoint(stage.key)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        history, start = [(e, v) for e, v in checkpoint["history"]], checkpoint["epoch"]
        logged = checkpoint["logged"]
        if on_epoch_end is not None and "hook" in checkpoint:
            on_epoch_end(start, checkpoint["hook"])
    total, every, eval_every = epochs or recipe["epochs"], runtime.get("checkpoint_every", 1), runtime.get(
        "eval_every", 1)
    result, flushed_at = None, time.monotonic()
    for epoch in range(start, total):
        fit = train_epoch(runner, train_loader.epoch(epoch), optimizer, scheduler, penalty=penalty,
                          after_step=[*enforce, *after_step], precision=recipe["precision"],
                          channels_last=channels_last)
        if not math.isfinite(fit.loss):
            raise StageFailed(stage, f"the training loss became {fit.loss} in epoch {epoch + 1}; lower the lr")
        values = {"train_loss": fit.loss, "train_accuracy": fit.accuracy, "lr": fit.lr}
        if (epoch + 1) % eval_every == 0 or epoch + 1 == total:
            for name, loader in evaluation.items():
                scored = evaluate(runner, loader.epoch(0), precision=recipe["precision"], channels_last=channels_last)
                values.update({f"{name}_loss": scored.loss, f"{name}_accuracy": scored.accuracy})
                result = scored if name == "test" else result
        history.append((epoch + 1, values))
        hook_state = on_epoch_end(epoch + 1, None) if on_epoch_end is not None else None
        if ctx.on_epoch is not None:
            ctx.on_epoch(stage, epoch + 1, values)
        if (epoch + 1) % every == 0 and epoch + 1 < total:
            if time.monotonic() - flushed_at > FLUSH_SECONDS:
                log_epochs(history[logged:])
                logged, flushed_at = len(history), time.monotonic()
            state = {"epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "history": [[e, v] for e, v in history],
                     "logged": logged}
            if hook_state is not None:
                state["hook"] = hook_state
            ctx.store.save_checkpoint(stage.key, state)
    log_epochs(history[logged:])
    return history, result


def _final_metrics(history: list, result: EpochResult | None) -> dict[str, float]:
    metrics = {"final_train_loss": history[-1][1]["train_loss"]} if history else {}
    if result is not None:
        metrics.update(final_test_accuracy=result.accuracy, final_test_loss=result.loss)
    return metrics


def _dense(stage: Stage, ctx: Context, log_epochs) -> Outcome:
    """θ0, θ0', θk for the rewind points children need, and θT."""
    config = stage.config
    dataset = _dataset(config, stage, ctx)
    model = _model(config, dataset, config["seed"])
    ctx.store.write_tensors(stage.key, "init", _state(model))
    ctx.store.write_tensors(stage.key, "reinit", _state(_model(config, dataset, reinit_seed(config["seed"]))))
    saves = set(stage.runtime.get("saves", ()))

    def keep_rewind_points(epoch: int, _restored) -> None:
        if epoch in saves and not ctx.store.has(stage.key, f"rewind@{epoch}"):
            ctx.store.write_tensors(stage.key, f"rewind@{epoch}", _state(model))

    history, result = _train_loop(stage, ctx, model, config["train"], log_epochs, on_epoch_end=keep_rewind_points)
    ctx.store.write_tensors(stage.key, "trained", _state(model))
    return Outcome(_final_metrics(history, result), history)


def dense_point(ctx: Context, trunk: str, name: str) -> dict[str, Tensor]:
    """A dense weight point of a trunk; a rewind point the trunk did not keep (it was trained for another spec) is
    replayed from θ0 for k epochs, which gives the same weights on the CPU since every epoch is seeded."""
    if ctx.store.has(trunk, name):
        return ctx.store.read_tensors(trunk, name)
    epochs = rewind_epoch(name)
    if epochs is None:
        raise FileNotFoundError(f"stage {trunk} has no artifact {name}")
    stage = ctx.stages[trunk]
    replay = Stage("dense", {**stage.config, "replay_until": epochs}, stage.parents, epochs,
                   {**stage.runtime, "compile": False}, stage.labels)
    model = _model(stage.config, _dataset(stage.config, stage, ctx), stage.config["seed"])
    model.load_state_dict(ctx.store.read_tensors(trunk, "init"))
    _train_loop(replay, ctx, model, stage.config["train"], lambda rows: None, epochs=epochs)
    ctx.store.write_tensors(trunk, name, _state(model))
    ctx.store.clear_checkpoint(replay.key)
    return ctx.store.read_tensors(trunk, name)


def load_mask(ctx: Context, key: str) -> Mask:
    record_excluded = ctx.store.read_json(key, "mask_excluded")
    return Mask(ctx.store.read_tensors(key, "mask"), frozenset(record_excluded))


def _mask(stage: Stage, ctx: Context, log_epochs) -> Outcome:
    """Prune by the generator's rule; the mask is saved with the names of the tensors it keeps dense."""
    config = stage.config
    trunk = stage.labels.get("trunk") or stage.parents[0]
    dense = ctx.stages[trunk].config
    dataset = _dataset(dense, ctx.stages[trunk], ctx)
    model = _model(dense, dataset, dense["seed"])
    kind, scope = config["kind"], config["scope"]
    if kind == "imp":
        ticket = stage.parents[0]
        source = "trained" if ctx.stages[ticket].kind == "dense" else "final"
        model.load_state_dict(ctx.store.read_tensors(ticket, source))
    else:
        model.load_state_dict(dense_point(ctx, trunk, "trained"))
    weights = _weights(model, dense["model"], config["prunable"])
    _, excluded = select_prunable(weights, config["exclude"])
    history: list = []
    if kind == "imp":
        previous = load_mask(ctx, stage.parents[1]) if len(stage.parents) > 1 else _dense_with(weights, excluded)
        mask = imp_round(weights, config["rate"], previous, scope=scope, exclude=excluded)
    elif kind == "oneshot":
        mask = magnitude_mask(weights, config["sparsity"], scope=scope, exclude=excluded)
    elif kind == "random":
        like = magnitude_mask(weights, config["sparsity"], scope=scope, exclude=excluded)
        mask = random_mask(like, config["seed"])
    else:
        mask, history = _admm(stage, ctx, model, weights, excluded, log_epochs)
    _save_mask(ctx, stage.key, mask)
    return Outcome({"sparsity": mask.sparsity(), "density": mask.density()}, history,
                   artifacts={"layer_density": mask.layer_density()})


def _dense_with(weights, excluded) -> Mask:
    return Mask(dense_mask(weights).tensors, frozenset(excluded))


def _save_mask(ctx: Context, key: str, mask: Mask) -> None:
    ctx.store.write_tensors(key, "mask", _cpu(mask.tensors))
    ctx.store.write_json(key, "mask_excluded", sorted(mask.excluded))


def _admm(stage: Stage, ctx: Context, model: nn.Module, weights, excluded, log_epochs) -> tuple[Mask, list]:
    """ADMM training from θT: the loss gains rho/2·||W − Z + U||², Z and U update every `update_every` steps."""
    config = stage.config
    model.to(ctx.device)  # Z and U are made beside the weights, so the weights must be where training runs
    state = admm_init(weights, config["sparsity"], config["rho"], scope=config["scope"], exclude=excluded)
    steps = {"count": 0}

    def update() -> None:
        steps["count"] += 1
        if config["update_every"] and steps["count"] % config["update_every"] == 0:
            step_admm()

    def step_admm() -> None:
        admm_update(state, weights)
        admm_set_rho(state, min(state.rho * config["rho_factor"], config["rho_max"]))

    def per_epoch(epoch: int, restored) -> dict | None:
        """Checkpoint Z, U, rho, Z's support and the step count with the weights; on resume, restore them."""
        if restored is not None:
            device = next(iter(weights.values())).device
            state.Z, state.U = _on(restored["Z"], device), _on(restored["U"], device)
            state.rho, state.support = restored["rho"], Mask(_on(restored["support"], device), state.support.excluded)
            steps["count"] = restored["steps"]
            return None
        if not config["update_every"]:
            step_admm()
        return {"Z": _cpu(state.Z), "U": _cpu(state.U), "rho": state.rho, "support": _cpu(state.support.tensors),
                "steps": steps["count"]}

    history, _ = _train_loop(stage, ctx, model, config["train"], log_epochs,
                             penalty=lambda: admm_penalty(state, weights), after_step=[update], on_epoch_end=per_epoch)
    ctx.store.write_tensors(stage.key, "weights", _state(model))
    return admm_mask(state), history


def _cpu(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return _on(tensors, torch.device("cpu"))


def _on(tensors: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {name: tensor.detach().to(device) for name, tensor in tensors.items()}


def _start_weights(stage: Stage, ctx: Context) -> dict[str, Tensor]:
    """θ0, θ0', θk or θT for a train stage; for an ADMM mask, `trained` is the ADMM-trained network it pruned."""
    trunk, mask_key = stage.parents
    start = stage.config["start"]
    if start == "trained" and ctx.store.has(mask_key, "weights"):
        return ctx.store.read_tensors(mask_key, "weights")
    return dense_point(ctx, trunk, start)


def _train(stage: Stage, ctx: Context, log_epochs) -> Outcome:
    """An arm (or an IMP round's retraining): start weights ⊙ mask, trained with the mask enforced every step."""
    config = stage.config
    trunk, mask_key = stage.parents
    dataset = _dataset(config, stage, ctx)
    model = _model(config, dataset, config["seed"])
    model.load_state_dict(_start_weights(stage, ctx))
    mask = load_mask(ctx, mask_key)
    history, result = _train_loop(stage, ctx, model, config["train"], log_epochs, mask=mask)
    ctx.store.write_tensors(stage.key, "final", _state(model))
    return Outcome({**_final_metrics(history, result), "sparsity": mask.sparsity()}, history)


def _evaluate(stage: Stage, ctx: Context, log_epochs) -> Outcome:
    """Accuracy of the trained dense network right after pruning, before any retraining."""
    config = stage.config
    trunk, mask_key = stage.parents
    dense = ctx.stages[trunk]
    dataset = _dataset(dense.config, dense, ctx)
    model = _model(dense.config, dataset, dense.config["seed"])
    model.load_state_dict(dense_point(ctx, trunk, "trained"))
    mask = load_mask(ctx, mask_key)
    params = dict(model.named_parameters())
    mask.apply_({name: params[name] for name in mask})
    _, evaluation = _loaders(dense.config, stage, ctx, dataset)
    result = evaluate(model.to(ctx.device), evaluation["test"].epoch(0), precision=config["precision"])
    return Outcome({"test_accuracy": result.accuracy, "test_loss": result.loss, "sparsity": mask.sparsity()})


def _measure(stage: Stage, ctx: Context, log_epochs) -> Outcome:
    """R_p of every pair at every p; under the mask when both sides are sparse."""
    config = stage.config
    trunk = stage.parents[0]
    mask = load_mask(ctx, stage.parents[1]).to(ctx.device) if len(stage.parents) > 1 else None
    counted, _ = select_prunable(weight_names(config["model"], config["tensors"]), config["exclude"])
    cache: dict[str, dict[str, Tensor]] = {}

    def weights(term: str) -> dict[str, Tensor]:
        if term not in cache:
            base = term.removesuffix("*mask")
            if base in DENSE_POINTS or rewind_epoch(base) is not None:
                state = dense_point(ctx, trunk, base)
            else:
                state = ctx.store.read_tensors(config["arms"][term], "final")
            chosen = {name: state[name].to(ctx.device, torch.float32) for name in counted}
            if term.endswith("*mask"):
                chosen = {name: w * mask[name] if name in mask else w for name, w in chosen.items()}
            cache[term] = chosen
        return cache[term]

    metrics, layers = {}, {}
    for a, b in config["pairs"]:
        sparse = [term.endswith("*mask") or term in config["arms"] for term in (a, b)]
        both = all(sparse)
        for p in config["p"]:
            if any(sparse) and not both:
                densest = max((1 - float(mask[n].float().mean()) for n in counted if n in mask), default=0.0)
                try:
                    check_sparse_dense_p(densest, p)
                except ValueError as error:
                    raise StageFailed(stage, str(error)) from None
            terms = overlap_by_layer(weights(a), weights(b), p, mask=mask if both else None)
            shared, slots = sum(s for s, _ in terms.values()), sum(k for _, k in terms.values())
            metrics[rp_metric(a, b, p)] = shared / slots
            layers[rp_metric(a, b, p)] = {name: s / k if k else None for name, (s, k) in terms.items()}
    return Outcome(metrics, artifacts={"rp_layers": layers})
