"""`ltspec ui`: the MLflow UI over a spec's runs, opened where a lottery-ticket user needs it.

Three things stand between a new user and the runs in MLflow 3.17's UI, and each has its answer here:
- it opens an experiment on its GenAI overview; the runs table is behind a "Model training" toggle. 3.17 takes the
  page's kind from the `workflowType` of the URL (the experiment's `mlflow.experimentKind` tag, which ltspec also
  sets, is what earlier 3.x releases read), so the links printed here carry `workflowType=machine_learning`;
- it asks the server for runs 100 at a time (a constant of its JavaScript), so a spec's 133 runs come without a
  trunk until "Load more". The server started here answers the UI's run searches with up to PAGE runs a page;
- the common question (lottery vs reinit at one sparsity and learning rate) needs a hand-written filter, so a link
  with that filter is printed.

The server is MLflow's own (`mlflow ui`), with its ASGI app wrapped by `app` below.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

from ltspec import tracking
from ltspec.kinds import train
from ltspec.plan import Plan

PAGE = 5000  # runs per search page the UI gets; MLflow's server allows up to 50,000
SEARCH_PATH = "/mlflow/runs/search"
MLFLOW_APP = "mlflow.server.fastapi_app:app"
WRAPPED = "ltspec.ui:app"


def links(uri: str, experiment: str, plan: Plan, base: str) -> list[tuple[str, str]]:
    """(what it shows, URL) for the experiment's runs and for one lottery-vs-reinit comparison of the plan; none
    when the experiment has no runs yet."""
    from mlflow import MlflowClient

    found = MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    if found is None:
        return []
    shown = [("all runs", tracking.runs_url(base, found.experiment_id))]
    compared = comparison(plan)
    if compared is not None:
        title, search = compared
        shown.append((title, tracking.runs_url(base, found.experiment_id, search)))
    return shown


def comparison(plan: Plan) -> tuple[str, str] | None:
    """The arms trained on the plan's sparsest mask that has both a lottery and a reinit arm, at the first sweep
    point, as (a title, an MLflow search expression over the stage runs' tags)."""
    arms: dict[tuple, set[str]] = {}
    for stage in plan.arm_stages:
        point = tuple((name, value) for name, value in stage.labels.items()
                      if name in ("generator", "sparsity") or name.startswith("sweep."))
        arms.setdefault(point, set()).add(stage.labels["arm"])
    both = [point for point, names in arms.items() if {"lottery", "reinit"} <= names]
    if not both:
        return None
    first = dict(both[0])
    point = dict(max((p for p in both if all(v == first[k] for k, v in p if k.startswith("sweep."))),
                     key=lambda p: dict(p)["sparsity"]))
    sweep = {name: value for name, value in point.items() if name.startswith("sweep.")}
    search = " and ".join([f"tags.`ltspec.kind` = '{train.KIND.name}'",
                           f"tags.`ltspec.generator` = '{point['generator']}'",
                           f"tags.`ltspec.sparsity_target` = '{point['sparsity']:.6g}'",
                           *(f"tags.`ltspec.{name}` = '{value}'" for name, value in sweep.items())])
    where = " ".join(f"{name.removeprefix('sweep.')}={value}" for name, value in sweep.items())
    return f"lottery vs reinit, {point['generator']} at {point['sparsity']:.1%} {where}".strip(), search


def serve(uri: str, port: int) -> None:
    """Run the UI's server over `uri` on 127.0.0.1:`port` until Ctrl-C or SIGTERM, then stop its whole process
    group (the server leads its own session, so that a signal reaches its workers too)."""
    import subprocess

    def stop(*_) -> None:
        raise KeyboardInterrupt

    server = subprocess.Popen(command(uri, port), start_new_session=True)
    signal.signal(signal.SIGTERM, stop)
    try:
        server.wait()
    except KeyboardInterrupt:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()


def command(uri: str, port: int) -> list[str]:
    """The server's command line: `mlflow ui` with its app wrapped (see `server_main`)."""
    return [sys.executable, "-m", "ltspec.ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1"]


def _stop_when_orphaned(parent: int) -> None:
    """Stop this server's whole process group (it leads its own session) once `ltspec ui`, its parent, is gone,
    however it went: a SIGKILL leaves no handler to run, and the server would listen on forever."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.killpg(0, signal.SIGTERM)

    threading.Thread(target=watch, name="stop-when-orphaned", daemon=True).start()


def server_main(arguments: list[str]) -> None:
    """The server process: run `mlflow ui ARGUMENTS` serving `app` instead of MLflow's own app, which it wraps.

    MLflow builds the uvicorn command line naming its app; that one private function is wrapped to name this
    module's. Should a release rename it, the UI still starts, unwrapped, with runs in pages of 100.
    """
    import mlflow.server
    from mlflow.cli import cli

    _stop_when_orphaned(os.getppid())
    build = getattr(mlflow.server, "_build_uvicorn_command", None)
    if build is not None:
        def wrapped(options, host, port, workers, app, *rest, **named):
            return build(options, host, port, workers, WRAPPED if app == MLFLOW_APP else app, *rest,
                         **named)
        mlflow.server._build_uvicorn_command = wrapped
    else:
        print("note: this MLflow release cannot be wrapped; its UI lists runs 100 at a time", file=sys.stderr)
    cli(["ui", *arguments])


def _mlflow_app():
    from mlflow.server.fastapi_app import app as mlflow_app

    return mlflow_app


async def app(scope, receive, send):
    """MLflow's ASGI app, with the page size of every run search raised to PAGE."""
    if scope["type"] != "http" or not scope["path"].endswith(SEARCH_PATH) or scope["method"] != "POST":
        return await _mlflow_app()(scope, receive, send)
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    try:
        request = json.loads(body or b"{}")
        request["max_results"] = max(int(request.get("max_results") or 0), PAGE)
        body = json.dumps(request).encode()
    except (ValueError, TypeError, AttributeError):
        pass  # not a search MLflow would answer either: let it say so
    headers = [(name, value) for name, value in scope["headers"] if name.lower() != b"content-length"]
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return await _mlflow_app()({**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]},
                               replay, send)


if __name__ == "__main__":
    server_main(sys.argv[1:])
