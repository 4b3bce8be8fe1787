"""`ltspec report`: compile the spec, read its runs, print the tables, write them and their figures, log them.

The files go to `reports/<report name>/` (or `out_dir`): per table `<name>.md`, `.tex`, `.csv` as asked, its figure
as `<name>.png` and `.pdf`, `report.md` gathering every table and figure in one page, and `claims.md` checking
the paper's claims on these runs (`ltspec.report.claims`). The report name is the spec's name, and for a report
of command-line overrides (`ltspec report spec.toml train.lr=0.05 seeds=[0]`) the spec's name, a short readable
suffix and a hash of the overrides (`report_name`), so that it never overwrites the spec's own report.

Every file is a function of the runs alone: no timestamps, no versions in the figures, nothing that depends on
the order of a set, so reporting the same runs twice writes the same bytes and a report can be committed and
diffed. The same files are the artifacts of one MLflow run per report name, tagged `ltspec.role` = "report" and
`ltspec.report` = the report name in the spec's experiment; a new report updates that run in place (its files
replaced, the ones the report no longer writes deleted), so the experiment holds one current run per report.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from ltspec.layouts import Table, build_tables
from ltspec.report.claims import check_claims
from ltspec.report.collect import Results, TrackingUnavailable, fetch_stage_metrics, sweep_points
from ltspec.report.figures import write_figures
from ltspec.report.render import RENDERERS, claims_markdown, claims_table, markdown, rich_tables
from ltspec.spec import LoadedSpec
from ltspec.spec.overrides import parse_override
from ltspec.tracking import OVERRIDES, REHEARSAL, ROLE, connect, delete_artifacts, log_file

SUMMARY = "report.md"
CLAIMS = "claims.md"
REPORTS = Path("reports")
REPORT = "ltspec.report"  # the tag naming which report of the spec a report run holds
READABLE = 40  # characters of the overrides spelled out in a report name; the hash keeps longer ones apart


def report_name(loaded: LoadedSpec) -> str:
    """The spec's name, or for a report of overrides `<name>--<key=value_...>--<hash>`: the overrides' last key
    segments and values, sorted, folder-safe and cut to READABLE characters, then 8 hex digits of a hash of what
    they set (parsed, so `train.lr=0.05` and `train.lr=5e-2` name the same report)."""
    if not loaded.overrides:
        return loaded.spec.name
    settings = {}
    for text in loaded.overrides:
        path, value = parse_override(text)
        settings[".".join(path)] = json.dumps(value, sort_keys=True)
    ordered = sorted(settings.items())
    digest = hashlib.sha256(json.dumps(ordered).encode()).hexdigest()[:8]
    readable = "_".join(f"{key.rsplit('.', 1)[-1]}={re.sub(r'[^A-Za-z0-9.+-]+', '-', value).strip('-')}"
                        for key, value in ordered)
    return f"{loaded.spec.name}--{readable[:READABLE]}--{digest}"


def report_folder(loaded: LoadedSpec) -> Path:
    """Where `ltspec report` writes this spec's report (with its overrides) by default."""
    return REPORTS / report_name(loaded)


def write_report(loaded: LoadedSpec, *, formats: Sequence[str] | None = None, out_dir: Path | None = None,
                 console: Console, only: set[str] | None = None) -> int:
    """Render a loaded spec's report; returns the exit code: 0 written, 1 nothing to report or no tracking store.

    Each sweep point is compiled once, on its own (a stage two points share counts in both); the runs are fetched
    for the stages of all of them, or of those in `only` (the stage keys `--only` kept). Raises `ValueError` for
    an unknown format; `formats` None is every format of `RENDERERS`.
    """
    formats = tuple(RENDERERS) if formats is None else formats
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
        command = " ".join(["ltspec run", str(spec_path), *map(shlex.quote, loaded.overrides),
                            *["--rehearse"] * loaded.rehearsal])
        console.print(f"No runs found for spec {spec.name} in experiment {experiment} at URI {uri}: run "
                      f"`{command}` first (or check `[tracking]` in the spec).", markup=False)
        return 1
    results = Results(points, metrics)
    tables = build_tables(results, spec.report.layouts)
    out_dir = report_folder(loaded) if out_dir is None else out_dir
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
    title = " ".join([spec.name, *loaded.overrides])
    summary.write_text(summary_markdown(title, tables, figures), encoding="utf-8")
    claims = check_claims(results)
    console.print(claims_table(claims))
    (out_dir / CLAIMS).write_text(claims_markdown(spec.name, claims, loaded.overrides), encoding="utf-8")
    written += [*figures, summary, out_dir / CLAIMS]
    done = sum(key in metrics for key in keys)
    console.print(f"{done} of {len(keys)} stages have finished runs; wrote "
                  f"{len(written)} files to {out_dir}")
    try:
        run_id, warning = log_report(uri, experiment, loaded, written)
    except (MlflowException, SQLAlchemyError, OSError) as error:
        console.print(f"[yellow]warning:[/] the files were written but not logged to MLflow: {escape(str(error))}")
    else:
        console.print(f"logged them as artifacts of MLflow run {run_id} (experiment {experiment})")
        if warning:
            console.print(f"[yellow]warning:[/] {escape(warning)}")
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


def log_report(uri: str, experiment: str, loaded: LoadedSpec, files: list[Path]) -> tuple[str, str | None]:
    """Log the files as the artifacts of this report's run (one per report name, see `report_name`), updated in
    place: its tags refreshed, its files replaced, and the artifacts this report no longer writes deleted. Runs of
    an older ltspec that lack the report-name tag count as the spec's own report; of several, the newest is kept
    and the others deleted. Returns the run's id, and a warning where the artifact store could not delete."""
    name, report = loaded.spec.name, report_name(loaded)
    tags = {ROLE: "report", "ltspec.spec": name, REPORT: report, "ltspec.spec_hash": loaded.spec_hash,
            **({OVERRIDES: " ".join(loaded.overrides)} if loaded.overrides else {}),
            **({REHEARSAL: "true"} if loaded.rehearsal else {})}
    tracker = connect(uri, experiment, tags)
    client = tracker.client
    found = client.search_runs([tracker.experiment_id], f"tags.`{ROLE}` = 'report' and tags.`ltspec.spec` = '{name}'",
                               max_results=1000, order_by=["attributes.start_time DESC"])
    mine = [run for run in found if run.data.tags.get(REPORT, name) == report]
    run_tags = {**tracker.tags, "mlflow.runName": " ".join(["report", name, *loaded.overrides])}
    if mine:
        run = mine[0]
        client.update_run(run.info.run_id, status="RUNNING")
        client.log_batch(run.info.run_id, tags=[RunTag(key, value) for key, value in run_tags.items()])
    else:
        run = client.create_run(tracker.experiment_id, tags=run_tags)
    for path in files:
        log_file(tracker, run.info.run_id, path)
    names = {path.name for path in files}
    stale = [item.path for item in client.list_artifacts(run.info.run_id) if item.path not in names]
    failure = delete_artifacts(run, stale) if stale else None
    client.set_terminated(run.info.run_id, "FINISHED")
    for extra in mine[1:]:
        client.delete_run(extra.info.run_id)
    return run.info.run_id, failure and f"files of an earlier report could not be deleted from it: {failure}"
