"""Real services started from nothing for the tests (and benchmarks) that need them, each stopped by its PIDs: a
one-node Slurm cluster (munged, slurmctld, slurmd) and a PostgreSQL server. Each says why when it cannot start
(not installed, not root), so that its tests skip with that reason."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

START_SECONDS = 60  # a daemon that has not answered by then will not


class Unavailable(Exception):
    """A service that cannot start on this machine; the message says why."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _poll(ready, what: str, processes: list[subprocess.Popen], logs: list[Path]) -> None:
    """Wait until `ready()` is true, failing if a process dies or START_SECONDS pass."""
    deadline = time.monotonic() + START_SECONDS
    while not ready():
        dead = [process for process in processes if process.poll() is not None]
        if dead or time.monotonic() > deadline:
            tails = "\n".join(log.read_text(errors="replace")[-2000:] for log in logs if log.exists())
            raise Unavailable(f"{what} did not start: {tails}")
        time.sleep(0.1)


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each (in the order given), then SIGKILL what is left after 10 s."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Slurm:
    """A running one-node cluster: point Slurm's commands at it with SLURM_CONF=`conf`."""

    conf: Path
    node: str
    cpus: int


SLURM_CONF = """\
ClusterName=ltspec-test
SlurmctldHost={node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge/socket
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldPort={controller_port}
SlurmdPort={node_port}
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
KillWait=30
NodeName={node} CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


@contextmanager
def slurm_cluster(folder: Path) -> Iterator[Slurm]:
    """munged with its own key and socket, slurmctld and slurmd, all in `folder`, as root (SlurmUser=root);
    yields once jobs are accepted and stops them by PID (cancelling every job first) when the block ends."""
    missing = [name for name in ("munged", "slurmctld", "slurmd", "sbatch", "squeue") if shutil.which(name) is None]
    if missing:
        raise Unavailable(f"{', '.join(missing)} not installed (`apt-get install slurm-wlm munge`, as .ci/run does)")
    if os.geteuid() != 0:
        raise Unavailable("the test cluster runs its daemons as root (SlurmUser=root)")
    munge = folder / "munge"
    for sub in (munge, folder / "state", folder / "spool"):
        sub.mkdir(parents=True, exist_ok=True)
    munge.chmod(0o700)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    node, cpus = socket.gethostname().split(".")[0], os.cpu_count() or 1
    conf = folder / "slurm.conf"
    conf.write_text(SLURM_CONF.format(node=node, folder=folder, cpus=cpus, controller_port=free_port(),
                                      node_port=free_port()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    processes: list[subprocess.Popen] = []

    def start(command: list[str], log: str) -> None:
        with open(folder / log, "w") as output:
            processes.append(subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env,
                                              start_new_session=True))

    try:
        start(["munged", "--foreground", "--force", f"--socket={munge}/socket", f"--key-file={key}",
               f"--pid-file={munge}/munged.pid", f"--seed-file={munge}/seed", "--num-threads=2"], "munged.out")
        _poll(lambda: (munge / "socket").exists(), "munged", processes, [folder / "munged.out"])
        start(["slurmctld", "-D", "-i", "-f", str(conf)], "slurmctld.out")
        start(["slurmd", "-D", "-f", str(conf)], "slurmd.out")
        logs = [folder / name for name in ("slurmctld.out", "slurmd.out", "slurmctld.log", "slurmd.log")]

        def idle() -> bool:
            answer = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, env=env)
            return answer.returncode == 0 and answer.stdout.strip() == "idle"

        _poll(idle, "slurmctld and slurmd", processes, logs)
        yield Slurm(conf, node, cpus)
    finally:
        if len(processes) == 3:
            subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True)
            _poll(lambda: not subprocess.run(["squeue", "--noheader"], capture_output=True, text=True,
                                             env=env).stdout.strip(), "the cancelled jobs' end", [], [])
        _stop(list(reversed(processes)))


@dataclass(frozen=True)
class Postgres:
    """A running PostgreSQL server on a private socket folder, with a database for MLflow."""

    uri: str  # SQLAlchemy's, with the psycopg2 driver


@contextmanager
def postgres(database: str = "mlflow") -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster (initdb, then the server in the foreground, listening on a socket folder
    only), run as the `postgres` user when this process is root (initdb refuses root); stopped by PID and deleted
    when the block ends."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    bin_dir = found[-1].parent if found else Path(shutil.which("initdb") or "/nonexistent").parent
    if not (bin_dir / "initdb").exists():
        raise Unavailable("PostgreSQL is not installed (`apt-get install postgresql`, as .ci/run does)")
    user = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="ltspec-pg-"))
    server = None
    try:
        if user is not None:
            shutil.chown(folder, user)
        port = str(free_port())
        run = {"user": user, "capture_output": True, "text": True}
        made = subprocess.run([bin_dir / "initdb", "-D", folder / "data", "-A", "trust", "-U", "postgres"], **run)
        if made.returncode != 0:
            raise Unavailable(f"initdb failed: {made.stderr.strip()[-500:]}")
        with open(folder / "server.log", "w") as log:
            server = subprocess.Popen([bin_dir / "postgres", "-D", folder / "data", "-k", folder, "-p", port,
                                       "-c", "listen_addresses=", "-c", "fsync=off"], user=user, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        _poll(lambda: subprocess.run([bin_dir / "pg_isready", "-h", folder, "-p", port], capture_output=True)
              .returncode == 0, "postgres", [server], [folder / "server.log"])
        created = subprocess.run([bin_dir / "createdb", "-h", folder, "-p", port, "-U", "postgres", database], **run)
        if created.returncode != 0:
            raise Unavailable(f"createdb failed: {created.stderr.strip()}")
        yield Postgres(f"postgresql+psycopg2://postgres@/{database}?host={folder}&port={port}")
    finally:
        if server is not None:
            _stop([server])
        shutil.rmtree(folder, ignore_errors=True)
