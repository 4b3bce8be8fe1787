"""`ltspec report` against a real MLflow sqlite store filled with known values for a compiled plan.

Every stage's metrics are a known function of its seed, learning rate, arm and target sparsity, so each table cell
has a mean and std that can be written down by hand. A few stages are left out of MLflow (or left RUNNING) to
check that a missing run shows as missing rather than vanishing from the average.
"""

import io
import os
import re
import shutil
import statistics
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag, ViewType
from rich.console import Console

from conftest import IMP_AND_ONESHOT, tiny_spec, write_tiny_spec
from ltspec.layouts import build_tables
from ltspec.layouts.base import Stat, sparsity_label
from ltspec.plan import compile_plan
from ltspec.points import rp_metric
from ltspec.report import write_report
from ltspec.report.collect import Results, fetch_stage_metrics, sweep_points
from ltspec.report.render import cell_text, csv_text, latex, markdown, rich_tables
from ltspec.report.write import log_report
from ltspec.spec import load_spec, parse_spec
from conftest import ltspec

EXPERIMENT = "report-test"
# The tiny spec as the report tests fill it (never trained): two seeds, two learning rates, LeNet-300-100
REPORT = {"name": EXPERIMENT, "seeds": "[0, 1]", "batch_size": 64, "augmentation": "none", "arch": "lenet300100",
          "lr": 0.01, "train": "", "sweep": '[sweep]\n"train.lr" = [0.01, 0.1]\n',
          "masks": IMP_AND_ONESHOT.replace("[0.7]", "[0.5]"),
          "measure": 'p = [0.2]\npairs = [["init", "trained"], ["init*mask", "finetune"], ["reinit*mask", "finetune"], '
                     '["finetune", "init"]]'}
SPEC = tiny_spec(**REPORT)
ARM_BASE = {"lottery": 0.90, "reinit": 0.80, "finetune": 0.85, "rewind": 0.88}
LR_BONUS = {0.01: 0.0, 0.1: 0.03}
RP_INIT_TRAINED = {0.01: 0.3, 0.1: 0.4}
# (arm, generator, target sparsity, lr, seed) of the train stages left out of MLflow
LEFT_OUT = {("reinit", "imp", 0.75, 0.1, 1), ("finetune", "oneshot", 0.5, 0.01, 0),
            ("finetune", "oneshot", 0.5, 0.01, 1)}
STILL_RUNNING = ("finetune", "oneshot", 0.5, 0.01, 0)


def known_metrics(stage) -> dict[str, float]:
    """What the runner would have logged, as a simple function of the stage's labels."""
    labels = stage.labels
    seed, lr, target = labels["seed"], labels["sweep.train.lr"], labels.get("sparsity")
    if stage.kind.name == "dense":
        accuracy = 0.95 + 0.01 * seed + LR_BONUS[lr]
        return {"final_test_accuracy": accuracy, "final_test_loss": 1 - accuracy}
    if stage.kind.name == "mask":
        measured = target - 0.002 * (1 + seed)  # never exactly the target
        return {"sparsity": measured, "density": 1 - measured}
    if stage.kind.name == "train":
        accuracy = ARM_BASE[labels["arm"]] + 0.01 * seed + LR_BONUS[lr] - 0.1 * target
        return {"final_test_accuracy": accuracy, "final_test_loss": 1 - accuracy, "sparsity": target}
    if stage.kind.name == "evaluate":
        return {"test_accuracy": 0.5, "test_loss": 2.0, "sparsity": target}
    if target is None:
        return {rp_metric("init", "trained", 0.2): RP_INIT_TRAINED[lr] + 0.01 * seed}
    return {rp_metric("init*mask", "finetune", 0.2): 0.5 + 0.2 * target + 0.01 * seed,
            rp_metric("reinit*mask", "finetune", 0.2): 0.2 + 0.01 * seed,
            rp_metric("finetune", "init", 0.2): 0.25 + 0.01 * seed}


def identity(stage) -> tuple:
    labels = stage.labels
    return (labels.get("arm"), labels.get("generator"), labels.get("sparsity"), labels["sweep.train.lr"],
            labels["seed"])


def write_spec(folder: Path, uri: str, tracking: str = "") -> Path:
    """The spec, tracked at `uri`; `tracking` adds lines to its `[tracking]` table."""
    return write_tiny_spec(folder, **REPORT, uri=uri, tracking=tracking)


def log_stage_run(client: MlflowClient, experiment_id: str, stage, status: str, role: str = "stage") -> None:
    tags = {"ltspec.role": role, "ltspec.stage_key": stage.key, "ltspec.kind": stage.kind.name,
            "ltspec.seed": str(stage.labels["seed"])}
    run = client.create_run(experiment_id, tags=tags)
    metrics = [Metric(name, value, 0, 0) for name, value in known_metrics(stage).items()]
    client.log_batch(run.info.run_id, metrics=metrics, tags=[RunTag("mlflow.runName", stage.describe())])
    client.set_terminated(run.info.run_id, status)


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> Path:
    """A spec and its sqlite store: a FINISHED run for every stage of the plan except LEFT_OUT, of which one is
    RUNNING and one has a FINISHED run that is not a stage run (a trunk run carrying its key): neither may count."""
    folder = tmp_path_factory.mktemp("store")
    spec = write_spec(folder, f"sqlite:///{folder / 'mlflow.db'}")
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=(folder / "artifacts").as_uri())
    for stage in compile_plan(load_spec(spec)).stages:
        if stage.kind.name != "train" or identity(stage) not in LEFT_OUT:
            log_stage_run(client, experiment_id, stage, "FINISHED")
        elif identity(stage) == STILL_RUNNING:
            log_stage_run(client, experiment_id, stage, "RUNNING")
        else:
            log_stage_run(client, experiment_id, stage, "FINISHED", role="trunk")
    return spec


@pytest.fixture
def spec_path(filled, tmp_path) -> Path:
    """A spec pointing at a private copy of the filled store, for a test that logs to it."""
    shutil.copy(filled.parent / "mlflow.db", tmp_path / "mlflow.db")
    return write_spec(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.fixture(scope="module")
def tables(filled):
    loaded = load_spec(filled)
    keys = [stage.key for stage in compile_plan(loaded).stages]
    metrics = fetch_stage_metrics(loaded.spec.tracking.uri, EXPERIMENT, keys)
    return {table.name: table for table in build_tables(Results(sweep_points(loaded), metrics),
                                                        loaded.spec.report.layouts)}


@pytest.fixture(scope="module")
def reported(filled, tmp_path_factory) -> tuple[Path, Path, int, str]:
    """One full report (tables, files, figures, report run) on a copy of the store, shared by the tests that read it."""
    folder = tmp_path_factory.mktemp("reported")
    shutil.copy(filled.parent / "mlflow.db", folder / "mlflow.db")
    code, printed = report(write_spec(folder, f"sqlite:///{folder / 'mlflow.db'}"), folder / "out")
    return folder, folder / "out", code, printed


def report(spec_path: Path, out_dir: Path, **options) -> tuple[int, str]:
    console = Console(record=True, width=200, soft_wrap=True)
    code = write_report(load_spec(spec_path), out_dir=out_dir, console=console, **options)
    return code, console.export_text()


def test_stat_is_mean_and_sample_std_over_the_seeds_present():
    stat = Stat(("a", "b", "c"), (0.5, None, 0.7))
    assert (stat.n, stat.expected, stat.absent) == (2, 3, ("b",))
    assert stat.mean == pytest.approx(0.6)
    assert stat.std == pytest.approx(0.1414213562, abs=1e-9)  # ddof = 1
    assert Stat(("a",), (0.5,)).std is None
    assert cell_text(stat, percent=True) == "60.00 ± 14.14 (n=2/3)"
    assert cell_text(Stat(("a",), (None,)), percent=False) == "—"
    assert cell_text(Stat((), ()), percent=False) == ""


def test_a_row_without_mask_runs_shows_its_target_sparsity_marked():
    assert sparsity_label(Results((), {"m1": {"sparsity": 0.49}}), ["m1", "m2"], 0.5) == ("49.0%", 0.49)
    assert sparsity_label(Results((), {}), ["m1", "m2"], 0.5) == ("50.0% (target)", 0.5)


def test_layouts_follow_the_spec_and_the_plan(filled, tables):
    # no rewind arm in the spec, so no rewind table; every generator gets its own arm and rp-masked tables
    assert list(tables) == ["dense", "lottery-vs-reinit-imp", "lottery-vs-reinit-oneshot", "rp-init-trained",
                            "rp-masked-imp", "rp-masked-oneshot", "arms-imp", "arms-oneshot", "arms-generators",
                            "table1"]
    results = Results(sweep_points(load_spec(filled)), {})
    assert [table.name for table in build_tables(results, ["table1", "rewind", "dense"])] == ["table1", "dense"]


def test_arm_table_is_exact_with_measured_sparsity(tables):
    text = markdown(tables["arms-imp"])
    assert text.splitlines()[:6] == [
        "### Every arm: test accuracy (%) on imp masks",
        "",
        "| sparsity | lr=0.01 · lottery | lr=0.01 · reinit | lr=0.01 · finetune | lr=0.01 · dense | lr=0.1 · lottery "
        "| lr=0.1 · reinit | lr=0.1 · finetune | lr=0.1 · dense |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| 49.7% | 85.50 ± 0.71 | 75.50 ± 0.71 | 80.50 ± 0.71 | 95.50 ± 0.71 | 88.50 ± 0.71 | 78.50 ± 0.71 "
        "| 83.50 ± 0.71 | 98.50 ± 0.71 |",
        "| 74.7% | 83.00 ± 0.71 | 73.00 ± 0.71 | 78.00 ± 0.71 | 95.50 ± 0.71 | 86.00 ± 0.71 | 75.50 (n=1/2) "
        "| 81.00 ± 0.71 | 98.50 ± 0.71 |",
    ]
    assert "Missing from MLflow: 1 of 28 runs" in text


def test_fine_tuning_and_lottery_under_every_generator_share_one_table(tables):
    """The paper's Fig. 7: a generator's column is blank at a sparsity it has no masks for."""
    table = tables["arms-generators"]
    assert [column.name for column in table.columns] == [
        "imp lottery", "imp finetune", "oneshot lottery", "oneshot finetune", "dense"] * 2
    assert [(row.index, [cell_text(cell, percent=True) for cell in row.cells[:5]]) for row in table.rows] == [
        (("49.7%",), ["85.50 ± 0.71", "80.50 ± 0.71", "85.50 ± 0.71", "—", "95.50 ± 0.71"]),
        (("74.7%",), ["83.00 ± 0.71", "78.00 ± 0.71", "", "", "95.50 ± 0.71"]),
    ]


def test_missing_stages_show_as_missing_and_unfinished_runs_do_not_count(tables):
    table = tables["lottery-vs-reinit-oneshot"]
    assert [column.name for column in table.columns] == ["lottery", "reinit", "dense"] * 2
    (row,) = table.rows
    assert row.index == ("49.7%",)
    assert [cell_text(cell, percent=True) for cell in row.cells] == [
        "85.50 ± 0.71", "75.50 ± 0.71", "95.50 ± 0.71", "88.50 ± 0.71", "78.50 ± 0.71", "98.50 ± 0.71"]
    finetune = tables["arms-oneshot"].rows[0].cells[2]
    assert (finetune.n, finetune.expected, cell_text(finetune, percent=True)) == (0, 2, "—")
    assert "Missing from MLflow: 2 of 16 runs" in markdown(tables["arms-oneshot"])


def test_a_csv_holds_its_tables_unit_and_names_it(tables):
    """The CSV of an accuracy table is in percent, as its markdown: 85.50 ± 0.71 in one is 85.5 in the other."""
    lines = csv_text(tables["arms-oneshot"]).splitlines()
    assert lines[0] == "sparsity,point,column,mean (%),std (%),n,expected"
    first = lines[1].split(",")
    assert float(first[3]) == pytest.approx(85.5) and float(first[4]) == pytest.approx(0.7071, abs=1e-4)


def test_correlation_tables_are_exact(tables):
    seeds = {lr: [base + 0.01 * seed for seed in (0, 1)] for lr, base in RP_INIT_TRAINED.items()}
    header = "p,point,column,mean (fraction),std (fraction),n,expected"
    assert csv_text(tables["rp-init-trained"]).splitlines() == [header] + [
        f"0.2,lr={lr},\"R(init, trained)\",{statistics.fmean(values)!r},{statistics.stdev(values)!r},2,2"
        for lr, values in seeds.items()]
    masked = tables["rp-masked-imp"]
    assert [column.name for column in masked.columns] == ["R(init*mask, finetune)", "R(reinit*mask, finetune)"] * 2
    assert [(row.index, [cell_text(cell, percent=False) for cell in row.cells]) for row in masked.rows] == [
        (("49.7%", "0.2"), ["0.605 ± 0.007", "0.205 ± 0.007"] * 2),
        (("74.7%", "0.2"), ["0.655 ± 0.007", "0.205 ± 0.007"] * 2),
    ]


def test_table1_has_a_row_per_point_generator_and_sparsity(tables):
    table = tables["table1"]
    assert table.index == ("model", "dataset", "lr", "generator", "sparsity", "p")
    assert [column.name for column in table.columns] == ["R(finetune, init)"]
    rows = [(*row.index, cell_text(row.cells[0], percent=False)) for row in table.rows]
    assert rows == [
        ("lenet300100", "digits", "0.01", "imp", "49.7%", "0.2", "0.255 ± 0.007"),
        ("lenet300100", "digits", "0.01", "imp", "74.7%", "0.2", "0.255 ± 0.007"),
        ("lenet300100", "digits", "0.01", "oneshot", "49.7%", "0.2", "0.255 ± 0.007"),
        ("lenet300100", "digits", "0.1", "imp", "49.7%", "0.2", "0.255 ± 0.007"),
        ("lenet300100", "digits", "0.1", "imp", "74.7%", "0.2", "0.255 ± 0.007"),
        ("lenet300100", "digits", "0.1", "oneshot", "49.7%", "0.2", "0.255 ± 0.007"),
    ]


@pytest.mark.parametrize("width", [80, 120])
def test_terminal_tables_cut_no_header_and_wrap_no_cell(tables, width):
    """At 80 columns no header or cell is cut short (`lr=0.…`); at 120 every `mean ± std` cell is on one line."""
    for table in tables.values():
        console = Console(record=True, width=width)
        for rich in rich_tables(table):
            console.print(rich)
        printed = console.export_text()
        assert "…" not in printed, printed
        if width == 120:
            cells = {cell_text(cell, table.percent) for row in table.rows for cell in row.cells} - {""}
            assert all(text in printed for text in cells), printed


def test_the_terminal_shows_one_table_per_sweep_point_and_dense_by_row(tables):
    arms = rich_tables(tables["arms-imp"])
    assert [rich.title for rich in arms] == ["Every arm: test accuracy (%) on imp masks: lr=0.01",
                                             "Every arm: test accuracy (%) on imp masks: lr=0.1"]
    assert [column.header for column in arms[0].columns] == ["sparsity", "lottery", "reinit", "finetune", "dense"]
    (dense,) = rich_tables(tables["dense"])
    assert [column.header for column in dense.columns] == ["point", "test accuracy"] and dense.row_count == 2


def test_latex_is_booktabs_with_a_spanning_header_per_sweep_point(tables):
    text = latex(tables["lottery-vs-reinit-imp"])
    lines = text.splitlines()
    assert lines[lines.index(r"\toprule") + 1:lines.index(r"\midrule")] == [
        r" & \multicolumn{3}{c}{lr=0.01} & \multicolumn{3}{c}{lr=0.1} \\",
        r"\cmidrule(lr){2-4} \cmidrule(lr){5-7}",
        r"sparsity & lottery & reinit & dense & lottery & reinit & dense \\",
    ]
    assert r"49.7\% & 85.50 $\pm$ 0.71 & 75.50 $\pm$ 0.71 & 95.50 $\pm$ 0.71" in text
    assert r"\bottomrule" in text and r"\begin{tabular}{lrrrrrr}" in text


def test_write_report_prints_the_tables_and_counts_finished_stages(reported):
    _, _, code, printed = reported
    assert code == 0
    assert "Every arm: test accuracy (%) on imp masks" in printed and "75.50 (n=1/2)" in printed
    assert "77 of 80 stages have finished runs" in printed


def test_write_report_writes_md_tex_csv_and_a_summary_page(reported, tables):
    _, out_dir, _, _ = reported
    for name, table in tables.items():
        assert (out_dir / f"{name}.md").read_text(encoding="utf-8") == markdown(table)
        assert (out_dir / f"{name}.tex").read_text(encoding="utf-8") == latex(table)
        assert (out_dir / f"{name}.csv").read_text(encoding="utf-8") == csv_text(table)
    summary = (out_dir / "report.md").read_text(encoding="utf-8")
    assert summary.startswith("# report-test\n")
    assert markdown(tables["arms-imp"]) in summary and "(arms-imp.png)" in summary


def test_the_claims_page_gives_no_verdict_on_two_seeds_and_says_what_they_show(reported):
    _, out_dir, _, printed = reported
    page = (out_dir / "claims.md").read_text(encoding="utf-8")
    verdicts = {line.split(" | ")[0].removeprefix("| ")[:2]: line.split(" | ")[1]
                for line in page.splitlines() if line.startswith("| ") and line[2].isdigit()}
    # two seeds decide nothing; claims 1 and 4 lack a reinit run at lr 0.1 (one seed left of that comparison)
    assert verdicts == {"1.": "**not enough runs**", "2.": "**inconclusive**", "3.": "**inconclusive**",
                        "4.": "**not enough runs**", "5.": "**inconclusive**"}
    assert "**Too few seeds for a verdict: 2, where a verdict needs 3.**" in page
    # R_p(init, trained) is lower at the low lr (0.30 vs 0.40) on both seeds: against the claim
    assert ("| lenet300100/digits | R_p(init, trained) at lr=0.01 − at lr=0.1 | s0 -0.100, s1 -0.100 | -0.100 (n=2) "
            "| > 0 |  | — | inconclusive: 2 seeds, 0 on the claim's side |") in page
    assert "Missing runs (1): lr=0.1: train reinit on imp r2 (75.0%)" in page
    # claim 5 measures R_p(finetune, init) only, and says how to add the other pair of Table 1
    assert 'Not measured: needs the R_p pairs ["finetune", "trained"].' in page
    assert "The paper's claims on these runs" in printed


def test_figures_are_valid_png_and_pdf(reported):
    from matplotlib.image import imread

    _, out_dir, _, _ = reported
    expected = ["arms-generators", "arms-imp", "arms-oneshot", "lottery-vs-reinit-imp", "lottery-vs-reinit-oneshot",
                "rp-init-trained", "rp-masked-imp", "rp-masked-oneshot"]
    assert sorted(path.stem for path in out_dir.glob("*.png")) == expected
    assert sorted(path.stem for path in out_dir.glob("*.pdf")) == expected
    for stem in expected:
        height, width, _ = imread(out_dir / f"{stem}.png").shape
        assert height > 100 and width > 100
        pdf = (out_dir / f"{stem}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")


def test_figures_wrap_long_titles_and_panels_and_keep_the_reference_line_in_the_unit_square(tables):
    from dataclasses import replace

    from ltspec.layouts.base import Column
    from ltspec.layouts.drawing import accuracy_vs_sparsity, rp_vs_p

    table = tables["arms-imp"]
    wide = replace(table, title="A title long enough that a single line of it would run off the figure " * 3,
                   columns=tuple(Column(f"point {index // 4}", column.name)
                                 for index, column in enumerate(table.columns * 3)),
                   rows=tuple(replace(row, cells=row.cells * 3) for row in table.rows))
    figure = accuracy_vs_sparsity(wide)
    assert "\n" in figure.get_suptitle()
    visible = [axis for axis in figure.axes if axis.get_visible()]
    assert len(visible) == 6 and len(figure.axes) == 6  # six points: two rows of three
    assert figure.legends[0].get_title().get_text() == "lines and bands: mean ± one std over n = 1–2 seeds"
    figure = rp_vs_p(tables["rp-init-trained"])
    (reference,) = [line for line in figure.axes[0].lines if line.get_label().startswith("$R_p = p$")]
    assert min(reference.get_xdata()) >= 0 and max(reference.get_ydata()) <= 1
    assert figure.axes[0].get_ylim() == (0, 1.02)


def test_the_rewind_table_and_figure_have_the_dense_line(filled):
    from ltspec.layouts import REGISTRY

    text = filled.read_text().replace('finetune = { start = "trained" }',
                                      'finetune = { start = "trained" }\nrewind = { start = "rewind@1" }')
    loaded = parse_spec(text)
    metrics = {stage.key: known_metrics(stage) for stage in compile_plan(loaded).stages}
    (table, *_) = build_tables(Results(sweep_points(loaded), metrics), ["rewind"])
    assert [column.name for column in table.columns] == ["lottery", "finetune", "rewind", "dense"] * 2
    figure = REGISTRY[table.layout].figure(table)
    panels = [axis for axis in figure.axes if axis.get_visible()]
    dense = [[line for line in axis.lines if line.get_label() == "dense"] for axis in panels]
    assert [len(lines) for lines in dense] == [1, 1] and all(lines[0].get_linestyle() == "--" for lines in dense)
    dense_accuracy = {lr: statistics.mean(0.95 + 0.01 * seed + LR_BONUS[lr] for seed in (0, 1)) for lr in LR_BONUS}
    assert [list(lines[0].get_ydata()) for lines in dense] == [[pytest.approx(100 * dense_accuracy[lr])] * 2
                                                               for lr in (0.01, 0.1)]
    arms = {line.get_label() for axis in panels for line in axis.lines}
    assert {"lottery", "finetune", "rewind"} <= arms


def test_the_report_files_are_the_artifacts_of_one_report_run(reported):
    folder, out_dir, _, _ = reported
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    (run,) = client.search_runs([experiment_id], "tags.`ltspec.role` = 'report'")
    assert run.info.status == "FINISHED" and run.data.tags["ltspec.spec"] == "report-test"
    logged = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert logged == {path.name for path in out_dir.iterdir()}


def report_runs(uri: str, view: int = ViewType.ACTIVE_ONLY) -> list:
    client = MlflowClient(tracking_uri=uri)
    return client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id],
                              "tags.`ltspec.role` = 'report'", run_view_type=view)


def test_a_new_report_updates_its_one_run_in_place(spec_path, tmp_path):
    """Reporting again updates the same run: its files replaced and a file the new report no longer writes
    deleted; no second run, not even a deleted one."""
    loaded = load_spec(spec_path)
    uri = loaded.spec.tracking.uri
    page, gone = tmp_path / "page.md", tmp_path / "gone.md"
    page.write_text("# a report\n")
    gone.write_text("# a table the next report does not draw\n")
    first, _ = log_report(uri, EXPERIMENT, loaded, [page, gone])
    page.write_text("# the report again\n")
    second, warning = log_report(uri, EXPERIMENT, loaded, [page])
    client = MlflowClient(tracking_uri=uri)
    (current,) = report_runs(uri, ViewType.ALL)
    assert current.info.run_id == first == second and warning is None
    assert current.info.status == "FINISHED" and current.data.tags["ltspec.report"] == "report-test"
    assert [artifact.path for artifact in client.list_artifacts(second)] == ["page.md"]
    fetched = client.download_artifacts(second, "page.md", str(tmp_path / "fetched"))
    assert Path(fetched).read_text() == "# the report again\n"


def test_reporting_the_same_runs_again_writes_the_same_bytes_into_the_same_run(reported, tmp_path):
    """`ltspec report` over the same runs, in another process with another hash seed, writes every file byte for
    byte as before (figures included: no creation date, no version in them), and updates the one report run."""
    folder, out_dir, _, _ = reported
    shutil.copy(folder / "mlflow.db", tmp_path / "mlflow.db")
    spec = write_spec(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    again = ltspec("report", str(spec), "--out", str(tmp_path / "again"), cwd=tmp_path,
                   env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert again.returncode == 0, again.stdout + again.stderr
    first = {path.name: path.read_bytes() for path in out_dir.iterdir()}
    second = {path.name: path.read_bytes() for path in (tmp_path / "again").iterdir()}
    assert sorted(first) == sorted(second) and len(first) == 3 * 10 + 2 * 8 + 2
    assert [name for name in sorted(first) if first[name] != second[name]] == []
    runs = [report_runs(f"sqlite:///{where / 'mlflow.db'}", ViewType.ALL) for where in (folder, tmp_path)]
    assert [run.info.run_id for run in runs[1]] == [run.info.run_id for run in runs[0]] and len(runs[0]) == 1


def test_a_report_of_overrides_has_its_own_folder_and_run(reported, tmp_path, monkeypatch):
    """`ltspec report spec.toml seeds=[0]` writes to a folder of its own, named after the overrides, and logs a run
    of its own, leaving the spec's own report run as it was."""
    folder, _, _, _ = reported
    shutil.copy(folder / "mlflow.db", tmp_path / "mlflow.db")
    spec = write_spec(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    override = load_spec(spec, ("seeds=[0]",))
    (base,) = report_runs(override.spec.tracking.uri)
    assert write_report(override, console=Console(quiet=True), formats=["md"]) == 0
    assert not (tmp_path / "reports" / "report-test").exists()
    from ltspec.report.write import report_name

    name = report_name(override)
    assert report_name(load_spec(spec)) == "report-test" and re.fullmatch(r"report-test--seeds=0--[0-9a-f]{8}", name)
    assert report_name(load_spec(spec, ("train.lr=1e-2", "seeds=[0]"))) == \
        report_name(load_spec(spec, ("seeds=[0]", "train.lr=0.01")))
    assert [path.name for path in (tmp_path / "reports").iterdir()] == [name]
    page = (tmp_path / "reports" / name / "claims.md").read_text(encoding="utf-8")
    assert page.startswith("# The paper's claims on report-test (seeds=[0])\n")
    runs = report_runs(override.spec.tracking.uri, ViewType.ALL)
    assert sorted((run.data.tags.get("ltspec.report"), run.info.run_name, run.info.lifecycle_stage) for run in runs) \
        == [("report-test", "report report-test", "active"), (name, "report report-test seeds=[0]", "active")]
    assert base.info.run_id in {run.info.run_id for run in runs}


def test_the_run_hint_names_the_report_of_its_overrides(tmp_path):
    """`ltspec run spec.toml seeds=[0]` closes with the report command to copy, overrides quoted, and its folder."""
    from ltspec.cli.run import report_hint
    from ltspec.report.write import report_name

    spec = write_spec(tmp_path, "sqlite:///unused.db")
    console = Console(file=io.StringIO(), width=400)
    console.print(report_hint(spec, load_spec(spec, ("seeds=[0]",))))
    name = report_name(load_spec(spec, ("seeds=[0]",)))
    assert console.file.getvalue().strip() == f"ltspec report {spec} 'seeds=[0]' (writes reports/{name})"


def test_a_spec_with_no_runs_says_so_and_returns_1(tmp_path):
    database = tmp_path / "empty" / "mlflow.db"
    code, printed = report(write_spec(tmp_path, f"sqlite:///{database}"), tmp_path / "out")
    assert code == 1
    assert "No runs found for spec report-test in experiment report-test at URI sqlite:///" in printed
    assert "ltspec run" in printed
    assert not database.parent.exists() and not (tmp_path / "out").exists()


def test_a_store_without_the_experiment_says_so_and_returns_1(filled, tmp_path):
    shutil.copy(filled.parent / "mlflow.db", tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, printed = report(write_spec(tmp_path, uri, 'experiment = "elsewhere"\n'), tmp_path / "out")
    assert code == 1
    assert f"No runs found for spec report-test in experiment elsewhere at URI {uri}" in printed


def test_an_unreadable_store_is_a_message_not_a_traceback(tmp_path):
    database = tmp_path / "mlflow.db"
    database.write_text("this is not a database")
    code, printed = report(write_spec(tmp_path, f"sqlite:///{database}"), tmp_path / "out")
    assert code == 1
    assert "cannot read the MLflow tracking store at sqlite:///" in printed and "file is not a database" in printed
    assert "Traceback" not in printed
