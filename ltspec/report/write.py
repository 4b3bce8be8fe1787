"""`ltspec report`: compile the spec, read its runs, print the tables, write them and their figures, log them.

The files go to `reports/<spec name>/` (or `out_dir`): per table `<name>.md`, `.tex`, `.csv` as asked, its figure
as `<name>.png` and `.pdf`, `report.md` gathering every table and figure in one page, and `claims.md` checking
the paper's claims on these runs (`ltspec.report.claims`). The same files are
logged as the artifacts of one MLflow run per spec, tagged `ltspec.role` = "report" in the spec's experiment; a new
report replaces the previous run of the same spec (created first, the old ones deleted after), so the experiment
holds one current report rather than a pile of stale ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from ltspec.report.claims import check_claims
from ltspec.report.collect import Results, TrackingUnavailable, fetch_stage_metrics, sweep_points
from ltspec.report.figures import write_figures
from ltspec.report.render import RENDERERS, claims_markdown, claims_table, markdown, rich_tables
from ltspec.report.tables import Table, build_tables
from ltspec.spec import LoadedSpec
from ltspec.tracking import REHEARSAL, ROLE, connect, log_file

SUMMARY = "report.md"
CLAIMS = "claims.md"


def write_report(loaded: LoadedSpec, *, formats: Sequence[str] = ("md", "tex", "csv"), out_dir: Path | None = None,
                 console: Console, only: set[str] | None = None) -> int:
    """Render a loaded spec's report; returns the exit code: 0 written, 1 nothing to report or no tracking store.

    Each sweep point is compiled once, on its own (a stage two points share counts in both); the runs are fetched
    for the stages of all of them, or of those in `only` (the stage keys `--only` kept). Raises `ValueError` for
    an unknown format.
    """
    unknown = sorted(set(formats) - set(RENDERERS))
    if unknown:
        raise ValueError(f"unknown report format {', '.join(unknown)}; choose from {', '.join(RENDERERS)}")
    spec, spec_path, points = loaded.spec, loaded.path, sweep_points(loaded)
    experiment, uri = spec.tracking.experiment or spec.name, spec.tracking.uri
    try:
        keys = {stage.key for point in points for stage in point.plan.stages if only is None or stage.key in only}
        metrics = fetch_stage_metrics(uri, experiment, keys)
    except TrackingUnavailable as error:
        console.print(f"[bold red]error:[/] {escape(str(error))}")
        return 1
    if not metrics:
        rehearse = " --rehearse" if loaded.rehearsal else ""
        console.print(f"No runs found for spec {spec.name} in experiment {experiment} at URI {uri}: run "
                      f"`ltspec run {spec_path}{rehearse}` first (or check `[tracking]` in the spec).", markup=False)
        return 1
    results = Results(points, metrics)
    tables = build_tables(results, spec.report.layouts)
    out_dir = Path("reports") / spec.name if out_dir is None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for table in tables:
        for rich in rich_tables(table):
            console.print(rich)
        for suffix in formats:
            path = out_dir / f"{table.name}.{suffix}"
            path.write_text(RENDERERS[suffix](table), encoding="utf-8")
            written.append(path)
    figures = write_figures(tables, out_dir)
    summary = out_dir / SUMMARY
    summary.write_text(summary_markdown(spec.name, tables, figures), encoding="utf-8")
    claims = check_claims(results)
    console.print(claims_table(claims))
    (out_dir / CLAIMS).write_text(claims_markdown(spec.name, claims), encoding="utf-8")
    written += [*figures, summary, out_dir / CLAIMS]
    done = sum(key in metrics for key in keys)
    console.print(f"{done} of {len(keys)} stages have finished runs; wrote "
                  f"{len(written)} files to {out_dir}")
    try:
        run_id = log_report(uri, experiment, spec.name, loaded.spec_hash, written, rehearsal=loaded.rehearsal)
    except (MlflowException, SQLAlchemyError, OSError) as error:
        console.print(f"[yellow]warning:[/] the files were written but not logged to MLflow: {escape(str(error))}")
    else:
        console.print(f"logged them as artifacts of MLflow run {run_id} (experiment {experiment})")
    return 0


def summary_markdown(name: str, tables: list[Table], figures: list[Path]) -> str:
    """Every table, each followed by its figure, on one Markdown page."""
    images = {path.stem: path.name for path in figures if path.suffix == ".png"}
    parts = [f"# {name}\n"]
    for table in tables:
        parts.append(markdown(table))
        if table.name in images:
            parts.append(f"![{table.title}]({images[table.name]})\n")
    return "\n".join(parts)


def log_report(uri: str, experiment: str, name: str, spec_hash: str, files: list[Path], *,
               rehearsal: bool = False) -> str:
    """Log the files as a new report run of this spec, then delete the spec's earlier report runs."""
    tracker = connect(uri, experiment, {ROLE: "report", "ltspec.spec": name, "ltspec.spec_hash": spec_hash,
                                        **({REHEARSAL: "true"} if rehearsal else {})})
    earlier = tracker.client.search_runs(
        [tracker.experiment_id], f"tags.`{ROLE}` = 'report' and tags.`ltspec.spec` = '{name}'", max_results=1000)
    run_id = tracker.client.create_run(
        tracker.experiment_id, tags={**tracker.tags, "mlflow.runName": f"report {name}"}).info.run_id
    for path in files:
        log_file(tracker, run_id, path)
    tracker.client.set_terminated(run_id, "FINISHED")
    for run in earlier:
        tracker.client.delete_run(run.info.run_id)
    return run_id
