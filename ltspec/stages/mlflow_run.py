"""A stage's MLflow run: found or created under the stage's claim, fed its epochs, closed with its record.

Runs are found by the stage key tag, so a re-run never logs a stage twice: a FINISHED run means the stage is
logged; an unfinished one (a crash, a Ctrl-C, a SIGTERM, a kill before its params or between the record and the
run's end) is continued and finished with only what it lacks (`tracking.finish_stage_run`), no metric row twice. A stage that is complete in the store but has no
run in this experiment (a dense run shared with another spec) is logged from its record, tagged reused.
"""

from __future__ import annotations

import traceback

from ltspec import preemption, tracking
from ltspec.kinds.base import Stage
from ltspec.stages.context import Context

INTERRUPTS = (KeyboardInterrupt, SystemExit)  # SystemExit: how a Ray worker answers SIGTERM


class StageRun:
    """The MLflow side of running one stage; every method does nothing without a tracker, or once the stage's run
    in this experiment is already FINISHED. No signal cuts a method short (`preemption.deferred`): an interrupted
    write would hold the store's lock against the cleanup's own."""

    @preemption.deferred()
    def __init__(self, stage: Stage, ctx: Context, first_claim: bool = False):
        self.stage, self.ctx = stage, ctx
        self.earlier = self._earlier_runs(first_claim)
        self.needed = ctx.tracker is not None and all(run.info.status != "FINISHED" for run in self.earlier)
        self.run_id: str | None = None
        self.fresh = False  # this attempt created the run, so it knows every row the run holds
        self.logged_epochs: set[int] = set()
        self.held: set[tuple[str, int]] | None = None  # (metric, step) a continued run held when first logged to

    @preemption.deferred()
    def log_reused(self, record: dict) -> None:
        """Log a stage found complete in the store, from its record: into the run a dead attempt left unfinished
        (only what it lacks), or into a new run tagged reused (computed for another experiment)."""
        if self.needed:
            self.start(reused=True)
            self.finish(record, logged_here=False)

    @preemption.deferred()
    def start(self, reused: bool = False) -> None:
        if self.needed:
            trunk = self.stage.trunk
            if trunk not in self.ctx.trunk_runs:
                self.ctx.trunk_runs[trunk] = tracking.trunk_run(self.ctx.tracker, self.ctx.stages[trunk])
            self.fresh = not self.earlier
            self.run_id = tracking.start_stage(self.ctx.tracker, self.stage, self.ctx.trunk_runs[trunk], self.earlier,
                                               reused=reused)

    @preemption.deferred()
    def log_epochs(self, rows: list) -> None:
        """Log epoch rows; to a run continued from a dead attempt, only what it does not hold yet (the attempt may
        have logged epochs after its last checkpoint, which this one trains again)."""
        if self.run_id is not None and not self.fresh and rows:
            if self.held is None:  # asked once, for every metric the run has (later rows may name others)
                run = self.ctx.tracker.client.get_run(self.run_id)
                self.held = tracking.held(self.ctx.tracker, run, set(run.data.metrics))
            rows = tracking.without(rows, self.held)
        if self.run_id is not None and rows:
            tracking.log_metrics(self.ctx.tracker, self.run_id, rows)
            self.logged_epochs.update(epoch for epoch, _ in rows)

    @preemption.deferred()
    def finish(self, record: dict, *, logged_here: bool = True) -> None:
        """Close the run with the record's final metrics, artifacts and the mask file; `logged_here`: this attempt
        ran the stage and logged its epochs (to a run it created, or continued from a dead attempt's)."""
        if self.run_id is None:
            return
        tracker, folder = self.ctx.tracker, self.ctx.store.stage_dir(self.stage.key)
        files = [folder / name for name in self.stage.kind.logged(self.stage, tracker.log_weights)]
        tracking.finish_stage_run(tracker, self.run_id, self.stage, record, files,
                                  logged_epochs=self.logged_epochs if logged_here and self.fresh else None,
                                  tags={tracking.STORE_PATH: str(folder.resolve())})

    @preemption.deferred()
    def fail(self, error: BaseException) -> None:
        """A failure keeps its traceback as `error.txt` and marks the run FAILED; an interrupt (Ctrl-C, SIGTERM,
        SIGHUP, a cancelled or stopped Ray task) marks it KILLED."""
        if self.run_id is None:
            return
        interrupted = isinstance(error, INTERRUPTS)
        tracking.fail_stage_run(self.ctx.tracker, self.run_id, "KILLED" if interrupted else "FAILED",
                                None if interrupted else traceback.format_exc())

    def _earlier_runs(self, first_claim: bool) -> list:
        """The stage's runs: the FINISHED one of the runner's snapshot (a rerun asks nothing more); on the stage's
        first claim, the snapshot's (no attempt can have made one since: runs are made under the claim); else, or
        without a snapshot, all of them asked fresh: another process or a retried Ray task may have made one."""
        if self.ctx.tracker is None:
            return []
        if self.ctx.runs is not None:
            known = tracking.finished_first(self.ctx.runs.get(self.stage.key, []))
            if known and known[0].info.status == "FINISHED":
                return known[:1]
            if first_claim:
                return known
        return tracking.runs_of_stage(self.ctx.tracker, self.stage.key)
