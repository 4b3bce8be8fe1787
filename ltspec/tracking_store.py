"""Opening an MLflow tracking store so that a kill, a damaged file or an absent server never bricks a run.

MLflow migrates a new sqlite database without a transaction: a process killed half-way leaves a half-built schema
that every later open trips over (`duplicate column name`, `table ... already exists`). So ltspec never lets
MLflow create a sqlite store in place: under a lock beside the database it builds a new one under a temporary
name (MLflow's own migrations), then renames it into place, so the file either does not exist or is whole. A
database found half-built anyway (made by an older ltspec or by another tool) is rebuilt when it provably holds
nothing (no run, no experiment but the default, no model, no trace: it is moved aside, never deleted), and
reported otherwise with the command that fixes it.

Every other fault of the store, a damaged sqlite file, a missing database driver, a path too long, a server that
does not answer, becomes a `TrackingError`: one paragraph naming the URI and what to do. A server that does not
answer fails within seconds (retries and timeouts cut for the first contact only; a run already under way keeps
MLflow's patient defaults, which ride out a server restart).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from ltspec.faults import EnvironmentFault, os_reason, shown
from ltspec.files import fsync_directory

log = logging.getLogger(__name__)

# The first contact with a server: no retry, 5 s per request, so that an unreachable one fails in seconds rather
# than after MLflow's default budget of about four minutes.
QUICK_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
DRIVERS = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "pymysql": "PyMySQL",
           "MySQLdb": "mysqlclient", "pyodbc": "pyodbc", "pymssql": "pymssql"}
DAMAGED = ("malformed", "not a database", "disk i/o error", "file is encrypted")
CONTENT = {"runs": "", "experiments": " where experiment_id != 0", "registered_models": "", "trace_info": ""}


class TrackingError(EnvironmentFault):
    """The tracking store cannot be opened or used; the message names the URI and says what to do."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, resolved; None for any other store."""
    return Path(uri.removeprefix("sqlite:///")).resolve() if uri.startswith("sqlite:///") else None


@contextmanager
def environment(defaults: dict[str, str]) -> Iterator[None]:
    """Set environment variables the user has not set, for the duration of a block."""
    added = {name: value for name, value in defaults.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextmanager
def creating(uri: str) -> Iterator[None]:
    """Serialise creating things in a sqlite store (its tables, a trunk's parent run) across processes: two
    processes migrating a new database at once corrupt it, and two looking up a trunk run at once create two."""
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.parent / f".{database.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextmanager
def opening(uri: str) -> Iterator[None]:
    """The block that first opens a store: errors become a `TrackingError`, a server must answer within seconds,
    and a sqlite database is whole (built atomically, or repaired) before MLflow sees it. Creation is locked."""
    with translated(uri), environment(QUICK_HTTP), creating(uri):
        database = sqlite_path(uri)
        if database is not None:
            prepare_sqlite(database)
        yield


@contextmanager
def translated(uri: str) -> Iterator[None]:
    """Turn the ways a store fails to open or answer into one `TrackingError` naming it."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except TrackingError:
        raise
    except ImportError as error:
        driver = error.name or str(error)
        raise TrackingError(
            f"the tracking URI {shown(uri)} needs the database driver `{driver}`, which is not installed: "
            f"`pip install {DRIVERS.get(driver, driver)}`, or name an installed driver in the URI "
            "(`postgresql+psycopg2://...`).") from None
    except OSError as error:
        raise TrackingError(f"cannot open the MLflow tracking store {shown(uri)}: {os_reason(error)}.") from None
    except (MlflowException, SQLAlchemyError, sqlite3.Error) as error:
        raise TrackingError(_explain(uri, error)) from None


def _explain(uri: str, error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    database = sqlite_path(uri)
    if database is not None and any(sign in text.lower() for sign in DAMAGED):
        return damaged_message(database, text)
    if urlparse(uri).scheme in ("http", "https"):
        reason = next((words for words in ("Connection refused", "timed out", "Name or service not known",
                                           "No route to host") if words in text), text[:300])
        return (f"cannot reach the MLflow tracking server at {shown(uri)} ({reason}). Start it (`mlflow server "
                "--host 127.0.0.1 --port 5000`) or set `[tracking] uri` to one that runs; a local store "
                "(`sqlite:///mlflow.db`) needs no server.")
    return f"the MLflow tracking store {shown(uri)} cannot be used: {text[:500]}"


def damaged_message(database: Path, reason: str) -> str:
    return (f"the MLflow database {shown(str(database))} is damaged ({reason[:200]}). Move it aside (`mv "
            f"{shown(str(database))} {shown(str(database))}.damaged`) and run again: a fresh database is created, "
            "and stages already in the store are logged to it again from their records, not retrained. Or restore "
            "the file from a backup.")


def prepare_sqlite(database: Path) -> None:
    """Make `database` a whole MLflow store before MLflow opens it (call under `creating`'s lock)."""
    for leftover in database.parent.glob(f".{database.name}.*.building*"):
        leftover.unlink()  # a build killed before its rename: never anyone's data
    if not database.exists() or database.stat().st_size == 0:
        build_sqlite(database)
        return
    problem, holds = inspect_sqlite(database)
    if problem is None:
        return
    if holds:
        raise TrackingError(
            f"the MLflow database {shown(str(database))} {problem}, and it holds {holds}. If an older MLflow "
            f"wrote it, back it up and run `mlflow db upgrade sqlite:///{database}`; if a run was killed while "
            f"migrating it, move it aside (`mv {database} {database}.broken`) and run again: stages already in the "
            "store are logged to a fresh database from their records, not retrained.")
    aside = database.with_name(f"{database.name}.half-built-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(database, aside)
    log.warning("the MLflow database %s %s and holds no run: moved aside to %s and built anew", database, problem,
                aside.name)
    build_sqlite(database)


def inspect_sqlite(database: Path) -> tuple[str | None, str]:
    """(what is wrong with the schema or None, what the database holds, empty when nothing), only reading.

    A writer killed inside a transaction (a SIGKILL during a `log_batch`) leaves a hot journal, which the next
    connection must roll back before it can read: a read-only connection cannot, and fails with "attempt to write
    a readonly database". So the database is opened for writing where it may be written (nothing is written but
    that rollback, as MLflow's own connection would do), read-only elsewhere.
    """
    from mlflow.store.db.base_sql_model import Base
    from mlflow.store.db.utils import _get_latest_schema_revision
    import mlflow.store.tracking.dbmodels.models  # noqa: F401  (registers the tables on Base)

    try:
        mode = "rw" if os.access(database, os.W_OK) and os.access(database.parent, os.W_OK) else "ro"
        connection = sqlite3.connect(f"file:{database}?mode={mode}", uri=True)
        try:
            tables = {row[0] for row in connection.execute("select name from sqlite_master where type = 'table'")}
            version = (connection.execute("select version_num from alembic_version").fetchone() or [None])[0] \
                if "alembic_version" in tables else None
            counts = {table: connection.execute(f"select count(*) from {table}{where}").fetchone()[0]
                      for table, where in CONTENT.items() if table in tables}
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        raise TrackingError(damaged_message(database, str(error))) from None
    holds = ", ".join(f"{count} {table.replace('_', ' ')}" for table, count in counts.items() if count)
    missing = sorted(set(Base.metadata.tables) - tables)
    head = _get_latest_schema_revision()
    if missing:
        return f"is half-built (its schema lacks {len(missing)} tables, e.g. {missing[0]})", holds
    if version != head:
        return f"has schema version {version}, where this MLflow expects {head}", holds
    return None, holds


def build_sqlite(database: Path) -> None:
    """Create an MLflow database beside `database` and rename it into place: a copy of this MLflow's empty store
    (`template`) with its default experiment pointed here, or, where no template can be kept, MLflow's own
    migrations run in place (seconds, where the copy is a file copy)."""
    building = database.with_name(f".{database.name}.{os.getpid()}.building")
    source = template()
    if source is None:
        _migrate(building)
    else:
        shutil.copyfile(source, building)
        _point_default_experiment(building, database.parent / "mlartifacts" / "0")
    os.replace(building, database)
    fsync_directory(database.parent)


def template() -> Path | None:
    """An empty MLflow store of this MLflow's schema, built once per machine in ltspec's cache folder
    (`$XDG_CACHE_HOME/ltspec`, else `~/.cache/ltspec`); None when that folder cannot be written.

    Its name holds MLflow's version and schema head, so an upgraded MLflow builds its own. A template that is not
    a whole store of that schema (a damaged file, a build killed half-way) is built again.
    """
    from mlflow import __version__ as mlflow_version
    from mlflow.store.db.utils import _get_latest_schema_revision

    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ltspec"
    path = folder / f"mlflow-{mlflow_version}-{_get_latest_schema_revision()}.db"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f".{path.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for leftover in folder.glob(f".{path.name}.*.building"):
                leftover.unlink()  # a build killed before its rename
            if not path.exists() or _template_problem(path):
                building = path.with_name(f".{path.name}.{os.getpid()}.building")
                _migrate(building)
                os.replace(building, path)
    except OSError as error:
        log.debug("no MLflow store template in %s (%s): building the store in place", folder, error)
        return None
    return path


def _template_problem(path: Path) -> bool:
    try:
        problem, holds = inspect_sqlite(path)
    except TrackingError:
        return True
    return problem is not None or bool(holds)


def _migrate(building: Path) -> None:
    """MLflow's migrations into a new database file (MLflow caches one engine per URI; this one is let go)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri = f"sqlite:///{building}"
    for chatty in ("mlflow.store.db.utils", "alembic"):  # "Creating initial MLflow database tables..."
        logging.getLogger(chatty).setLevel(logging.WARNING)
    SqlAlchemyStore(uri, (building.parent / "mlartifacts").as_uri())
    SqlAlchemyStore._engine_map.pop(uri).dispose()


def _point_default_experiment(database: Path, artifacts: Path) -> None:
    """The copied template's default experiment (id 0), as MLflow would have made it here and now."""
    now = int(time.time() * 1000)
    connection = sqlite3.connect(database)
    try:
        with connection:
            connection.execute("update experiments set artifact_location = ?, creation_time = ?, "
                               "last_update_time = ? where experiment_id = 0", (artifacts.as_uri(), now, now))
    finally:
        connection.close()
