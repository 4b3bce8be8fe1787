"""Stages: the nodes of a plan, named by what they compute.

A stage's key hashes its kind, the canonical values it consumes and its parents' keys (a Merkle DAG). Two specs
that need the same dense run, with the same data, model, recipe and seed, get the same key and so share one
result; anything that does not change what is computed (names, descriptions, tracking, storage, speed settings)
stays out of the key and lives in `runtime` or `labels`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ltspec.spec.models import SCHEMA_VERSION

KINDS = ("dense", "mask", "train", "evaluate", "measure")
CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False)


def stage_key(kind: str, config: dict, parents: tuple[str, ...]) -> str:
    """Content hash of a stage; the schema version is in it so that a format change never reuses old results."""
    payload = {"schema_version": SCHEMA_VERSION, "kind": kind, "config": config, "parents": list(parents)}
    return hashlib.sha256(CANONICAL_JSON.encode(payload).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Stage:
    """One unit of work: train dense, make a mask, train an arm on a mask, evaluate, or measure R_p.

    `config` holds everything the stage computes from (and only that): it is what the key hashes. `runtime` says
    how to run it (speed settings, where the data lives, which rewind points to keep) and `labels` say what it is
    to a person (seed, sweep values, generator, arm, round, sparsity): neither is in the key.
    """

    kind: str
    config: dict[str, Any]
    parents: tuple[str, ...] = ()
    epochs: int = 0
    runtime: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    key: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown stage kind {self.kind!r}")
        object.__setattr__(self, "key", stage_key(self.kind, self.config, self.parents))

    def describe(self) -> str:
        """A short human name: `dense seed=0 lr=0.1`, `mask imp r3 (48.8%)`, `train lottery on imp r3`."""
        labels = self.labels
        sweep = " ".join(f"{k.removeprefix('sweep.')}={v}" for k, v in labels.items() if k.startswith("sweep."))
        where = f"{labels.get('generator')} {_mask_name(labels)}".strip()
        if self.kind == "dense":
            return f"dense seed={labels.get('seed')} {sweep}".strip()
        if self.kind == "mask":
            return f"mask {where}"
        if self.kind == "train":
            return f"train {labels.get('arm') or 'imp round'} on {where}"
        if self.kind == "evaluate":
            return f"evaluate trained*mask on {where}"
        return f"measure R_p on {where}" if labels.get("generator") else "measure R_p (dense)"


def _mask_name(labels: dict) -> str:
    if labels.get("round") is not None:
        return f"r{labels['round']} ({labels['sparsity']:.1%})"
    if labels.get("sparsity") is not None:
        return f"{labels['sparsity']:.1%}"
    return ""
