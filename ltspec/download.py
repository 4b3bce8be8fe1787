"""Fetching a dataset over the network: all or nothing, and only from a host that answers.

`ltspec run` asks `unreachable` before it starts (`ltspec.preflight`), so that a run with `data.download = true` on
a machine without the network stops in seconds with one paragraph, rather than after hours of other stages; and
`download_archive` stages the archive beside its destination, so that a failed download leaves nothing half-written
that a later load would take for the dataset.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import urllib.parse
import urllib.request
from pathlib import Path

from ltspec.datasets import DatasetError, DatasetInfo

REACH_TIMEOUT = 5.0  # seconds to wait for a download host (or its proxy) to answer, name lookup included


def unreachable(url: str, timeout: float = REACH_TIMEOUT) -> str | None:
    """Why a download from `url` cannot start, or None: a TCP connection to its host, or to the proxy that urllib
    (which downloads) would go through, must open within `timeout` seconds. The name lookup runs in a thread, since
    the system resolver has no timeout of its own."""
    parts = urllib.parse.urlsplit(url)
    host, port, what = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80), parts.hostname
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        through = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = through.hostname or "", through.port or 80
        what = f"the proxy {host}:{port} (for {parts.hostname})"
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(error.strerror or str(error) or type(error).__name__)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return f"{what} did not answer within {timeout:g} s"
    return None if outcome[0] is None else f"{what} cannot be reached ({outcome[0]})"


def cannot_download(entry: DatasetInfo, root: Path, reason: str) -> str:
    """The one paragraph for a dataset that is not in `root` and that `download = true` cannot fetch."""
    folder = root.absolute()
    return (f"{entry.name} is not in {folder} and cannot be downloaded: {reason}. To run without the network, fetch "
            f"{entry.download_url} on a machine that can, extract it into {folder}, and set data.download = false "
            f"in the spec.")


def download_archive(entry: DatasetInfo, root: Path, md5: str) -> None:
    """Fetch the entry's archive, check its md5 and extract it into `root`, all or nothing: everything happens in a
    temporary folder beside `root` (on its file system), whose files are renamed into `root` only once the archive
    is complete and unpacked, so that a failed download (no network, a wrong file, Ctrl-C) leaves nothing behind,
    not even an empty `root`."""
    from torchvision.datasets.utils import download_and_extract_archive

    if entry.download_url is None:
        raise DatasetError(f"{entry.name} names no URL to download it from")
    near = next(folder for folder in (root, *root.parents) if folder.exists())
    staging = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}-download-", dir=near))
        download_and_extract_archive(entry.download_url, str(staging), md5=md5, remove_finished=True)
        root.mkdir(parents=True, exist_ok=True)
        for extracted in sorted(staging.rglob("*")):  # each folder before what it holds
            target = root / extracted.relative_to(staging)
            if extracted.is_dir():
                target.mkdir(exist_ok=True)
            else:
                os.replace(extracted, target)
    except (OSError, RuntimeError) as error:  # urllib's URLError is an OSError; a wrong md5, a RuntimeError
        reason = getattr(error, "reason", None) or error
        raise DatasetError(cannot_download(entry, root, f"fetching it failed ({reason})")) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
