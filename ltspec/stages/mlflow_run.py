"""A stage's MLflow run: found or created under the stage's claim, fed its epochs, closed with its record.

Runs are found by the stage key tag, so a re-run never logs a stage twice: a FINISHED run means the stage is
logged; an unfinished one (a crash, a Ctrl-C, a SIGTERM) is continued. A stage that is complete in the store but
has no finished run in this experiment (a dense run shared with another spec) is logged from its record, tagged
reused. Closing a run logs only what it lacks, so a run killed anywhere (before its params, between the record
and its end) is finished whole on the next run, with no metric row twice.
"""

from __future__ import annotations

import traceback
from dataclasses import replace

from mlflow.entities import Param

from ltspec import tracking
from ltspec.plan import Stage
from ltspec.stages.context import Context, trunk_of

REUSED = "ltspec.reused"
INTERRUPTS = (KeyboardInterrupt, SystemExit)  # SystemExit: how a Ray worker answers SIGTERM


class StageRun:
    """The MLflow side of running one stage; every method does nothing without a tracker, or once the stage's run
    in this experiment is already FINISHED."""

    def __init__(self, stage: Stage, ctx: Context):
        self.stage, self.ctx = stage, ctx
        self.earlier = self._earlier_runs()
        self.needed = ctx.tracker is not None and all(run.info.status != "FINISHED" for run in self.earlier)
        self.run_id: str | None = None

    def log_reused(self, record: dict) -> None:
        """Log a stage found complete in the store, from its record. An unfinished run of it in this experiment
        (killed between the record and the run's end) is continued and keeps its `reused` tag: false when this
        experiment trained the stage."""
        if self.needed:
            self.start(reused=True)
            self.finish(record)

    def start(self, *, reused: bool = False) -> None:
        """Continue the stage's unfinished run or create one; a new run logged from a record is tagged reused at
        its creation, so that a kill before its end cannot make it look trained here."""
        if self.needed:
            trunk = trunk_of(self.stage)
            if trunk not in self.ctx.trunk_runs:
                self.ctx.trunk_runs[trunk] = tracking.trunk_run(self.ctx.tracker, self.ctx.stages[trunk])
            tracker = self.ctx.tracker
            if reused:
                tracker = replace(tracker, tags={**tracker.tags, REUSED: "true"})
            self.run_id = tracking.start_stage(tracker, self.stage, self.ctx.trunk_runs[trunk], self.earlier)

    def log_epochs(self, rows: list) -> None:
        if self.run_id is not None and rows:
            tracking.log_metrics(self.ctx.tracker, self.run_id, rows)

    def finish(self, record: dict) -> None:
        """Close the run from the stage's record, logging the params, history rows and final metrics it lacks."""
        if self.run_id is None:
            return
        tracker = self.ctx.tracker
        run = tracker.client.get_run(self.run_id)
        self._log_missing_params(run)
        for name, value in record["artifacts"].items():
            tracking.log_json(tracker, self.run_id, f"{name}.json", value)
        if self.stage.kind == "mask":
            tracking.log_file(tracker, self.run_id, self.ctx.store.stage_dir(self.stage.key) / "mask.pt")
        rows = [*((epoch, values) for epoch, values in record["history"]), (self.stage.epochs, record["metrics"])]
        tracking.log_metrics(tracker, self.run_id, self._missing(run, rows),
                             tags={REUSED: run.data.tags.get(REUSED, "false")})
        tracking.end_stage(tracker, self.run_id, "FINISHED")

    def fail(self, error: BaseException) -> None:
        """A failure keeps its traceback as `error.txt` and marks the run FAILED; an interrupt (Ctrl-C, SIGTERM,
        SIGHUP, a cancelled or stopped Ray task) marks it KILLED."""
        if self.run_id is None:
            return
        interrupted = isinstance(error, INTERRUPTS)
        if not interrupted:
            self.ctx.tracker.client.log_text(self.run_id, traceback.format_exc(), "error.txt")
        tracking.end_stage(self.ctx.tracker, self.run_id, "KILLED" if interrupted else "FAILED")

    def _missing(self, run, rows: list) -> list:
        """The (step, {name: value}) rows less the (name, step) pairs the run already has."""
        logged = {name for _, values in rows for name in values} & set(run.data.metrics)
        client = self.ctx.tracker.client
        have = {(m.key, m.step) for name in logged for m in client.get_metric_history(self.run_id, name)}
        return [(step, {name: value}) for step, values in rows for name, value in values.items()
                if (name, step) not in have]

    def _log_missing_params(self, run) -> None:
        """The stage's params the run lacks: a run killed right after its creation has none."""
        wanted = {**tracking.flat_params(self.stage.config), "stage.epochs": str(self.stage.epochs)}
        params = [Param(name, value[:6000]) for name, value in wanted.items() if name not in run.data.params]
        for start in range(0, len(params), 100):
            self.ctx.tracker.client.log_batch(self.run_id, params=params[start:start + 100])

    def _earlier_runs(self) -> list:
        """The FINISHED run of the runner's snapshot (a rerun asks nothing more), else all of them asked fresh."""
        if self.ctx.tracker is None:
            return []
        run = self.ctx.runs.get(self.stage.key)
        if run is not None and run.info.status == "FINISHED":
            return [run]
        return tracking.runs_of_stage(self.ctx.tracker, self.stage.key)
