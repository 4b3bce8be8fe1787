"""A stage's MLflow run: found or created under the stage's claim, fed its epochs, closed with its record.

Runs are found by the stage key tag, so a re-run never logs a stage twice: a FINISHED run means the stage is
logged; an unfinished one (a crash, a Ctrl-C) is continued. A stage that is complete in the store but has no
finished run in this experiment (a dense run shared with another spec) is logged from its record, tagged reused.
"""

from __future__ import annotations

import traceback

from ltspec import tracking
from ltspec.plan import Stage
from ltspec.stages.context import Context, trunk_of


class StageRun:
    """The MLflow side of running one stage; every method does nothing without a tracker, or once the stage's run
    in this experiment is already FINISHED."""

    def __init__(self, stage: Stage, ctx: Context):
        self.stage, self.ctx = stage, ctx
        self.earlier = self._earlier_runs()
        self.needed = ctx.tracker is not None and all(run.info.status != "FINISHED" for run in self.earlier)
        self.run_id: str | None = None

    def log_reused(self, record: dict) -> None:
        """Log a stage found complete in the store, from its record."""
        if self.needed:
            self.start()
            self.log_epochs([(epoch, values) for epoch, values in record["history"]])
            self.finish(record, reused=True)

    def start(self) -> None:
        if self.needed:
            trunk = trunk_of(self.stage)
            if trunk not in self.ctx.trunk_runs:
                self.ctx.trunk_runs[trunk] = tracking.trunk_run(self.ctx.tracker, self.ctx.stages[trunk])
            self.run_id = tracking.start_stage(self.ctx.tracker, self.stage, self.ctx.trunk_runs[trunk], self.earlier)

    def log_epochs(self, rows: list) -> None:
        if self.run_id is not None and rows:
            tracking.log_metrics(self.ctx.tracker, self.run_id, rows)

    def finish(self, record: dict, *, reused: bool) -> None:
        if self.run_id is None:
            return
        tracker, folder = self.ctx.tracker, self.ctx.store.stage_dir(self.stage.key)
        for name, value in record["artifacts"].items():
            tracking.log_json(tracker, self.run_id, f"{name}.json", value)
        if self.stage.kind == "mask":
            tracking.log_file(tracker, self.run_id, folder / "mask.pt")
        if self.stage.kind == "train" and tracker.log_weights:
            tracking.log_file(tracker, self.run_id, folder / "final.pt")
        tracking.log_metrics(tracker, self.run_id, [(self.stage.epochs, record["metrics"])],
                             tags={"ltspec.reused": str(reused).lower(), tracking.STORE_PATH: str(folder.resolve())})
        tracking.end_stage(tracker, self.run_id, "FINISHED")
        tracking.extend_trunk(tracker, self.ctx.trunk_runs[trunk_of(self.stage)])

    def fail(self, error: BaseException) -> None:
        """A failure keeps its traceback as `error.txt` and marks the run FAILED; an interrupt marks it KILLED."""
        if self.run_id is None:
            return
        interrupted = isinstance(error, KeyboardInterrupt)
        if not interrupted:
            self.ctx.tracker.client.log_text(self.run_id, traceback.format_exc(), "error.txt")
        tracking.end_stage(self.ctx.tracker, self.run_id, "KILLED" if interrupted else "FAILED")

    def _earlier_runs(self) -> list:
        """The FINISHED run of the runner's snapshot (a rerun asks nothing more), else all of them asked fresh."""
        if self.ctx.tracker is None:
            return []
        run = self.ctx.runs.get(self.stage.key)
        if run is not None and run.info.status == "FINISHED":
            return [run]
        return tracking.runs_of_stage(self.ctx.tracker, self.stage.key)
