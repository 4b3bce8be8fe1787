"""What the store's checksums cost: a checked read against a bare `torch.load`, and `complete` against the writes.

A stage's record vouches for its artifacts with their size and SHA-256. Reads hash the bytes they already
hold, `complete` hashes the stage's files once more from disk, and every `is_complete` stats them. This times,
for one VGG-16-sized weights file (~58 MB of float32 by default): `Store.read_tensors` (read, hash, load) against
`torch.load` of the same file; `Store.complete` (hash every artifact, write the record) against the
`write_tensors` that wrote it; and `is_complete` against the bare `exists()` it replaced. The two sides alternate
within each repetition and the ratio is the median of the per-repetition ratios.

    PYTHONPATH=. python benchmarks/store_integrity.py [--megabytes 58] [--repeats 7]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ltspec.store import RECORD, Store

KEY = "ab12cd34ef56"
RECORD_FIELDS = {"metrics": {"final_test_accuracy": 0.9}, "history": [], "artifacts": {}}


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def compare(name: str, checked, bare, repeats: int) -> None:
    pairs = [(timed(checked), timed(bare)) for _ in range(repeats)]
    ratio = statistics.median(a / b for a, b in pairs)
    print(f"{name}: {statistics.median(a for a, _ in pairs) * 1e3:.2f} ms against "
          f"{statistics.median(b for _, b in pairs) * 1e3:.2f} ms, ratio {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=58.0)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder))
        weights = {"w": torch.randn(int(args.megabytes * 2**20 / 4))}
        path = store.write_tensors(KEY, "trained", weights)
        store.complete(KEY, RECORD_FIELDS)
        compare("read_tensors (hash checked) vs torch.load", lambda: store.read_tensors(KEY, "trained"),
                lambda: torch.load(path, map_location="cpu", weights_only=True), args.repeats)
        compare("complete (hash + record) vs write_tensors", lambda: store.complete(KEY, RECORD_FIELDS),
                lambda: store.write_tensors(KEY, "trained", weights), args.repeats)
        record = store.stage_dir(KEY) / RECORD
        compare("is_complete (record + sizes) vs exists()", lambda: [store.is_complete(KEY) for _ in range(1000)],
                lambda: [record.exists() for _ in range(1000)], args.repeats)


if __name__ == "__main__":
    main()
