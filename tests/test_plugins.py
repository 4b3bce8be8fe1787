"""Plugins: a researcher's own distribution registers a model, a dataset and a mask generator through entry
points, and a spec that names them validates, runs and reports like one with built-ins."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, ltspec, write_spec

PLUGIN_MODULE = '''
"""A tiny plugin: a 2-layer conv net, a dataset of blobs, and a generator that keeps the smallest weights."""

from typing import Literal

import torch
from torch import nn

from ltspec.data import Dataset, Split
from ltspec.datasets import DatasetInfo
from ltspec.masks import AtSparsities, Generator, Made
from ltspec.masks.base import per_sparsity
from ltspec.nets import Architecture

TINYNET = Architecture(
    lambda request: nn.Sequential(nn.Conv2d(request.in_channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                  nn.Linear(4 * request.input_size ** 2, request.num_classes)),
    input_kind="image", downsamplings=0, small=True)


def load_blobs(entry, root, download, seed):
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, entry.num_classes, (192,), generator=generator)
    x = (torch.rand(192, 1, 8, 8, generator=generator) * 100 + y[:, None, None, None] * 40).to(torch.uint8)
    return Dataset(entry, train=Split(x[:128], y[:128]), test=Split(x[128:], y[128:]), validation=None, mean=(0.5,),
                   std=(0.3,))


BLOBS = DatasetInfo("blobs", "image", 1, 8, 4, augmentable=False, downloadable=False,
                    loader="ltspec_demo_plugin:load_blobs")


class Smallest(AtSparsities):
    """Keep the smallest weights of θT: a sanity baseline."""

    kind: Literal["smallest"]


def make(config, sources):
    from ltspec.pruning import magnitude_mask

    weights, excluded = sources.prunable(sources.network("trained", mode="eval"))
    inverted = {name: 1.0 / (weight.detach().abs() + 1e-12) for name, weight in weights.items()}
    return Made(magnitude_mask(inverted, config["sparsity"], scope=config["scope"], exclude=excluded))


GENERATOR = Generator("smallest", Smallest, frozenset({"trained"}), per_sparsity, make)
'''

PLUGIN_PROJECT = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "ltspec-demo-plugin"
version = "0.1"

[tool.setuptools]
py-modules = ["ltspec_demo_plugin"]

[project.entry-points."ltspec.models"]
tinynet = "ltspec_demo_plugin:TINYNET"

[project.entry-points."ltspec.datasets"]
blobs = "ltspec_demo_plugin:BLOBS"

[project.entry-points."ltspec.masks"]
smallest = "ltspec_demo_plugin:GENERATOR"
'''

SPEC = """\
name = "plugin-demo"
seeds = [0]

[data]
dataset = "blobs"
batch_size = 32

[model]
arch = "tinynet"

[train]
epochs = 2
lr = 0.05

[masks.small]
kind = "smallest"
sparsities = [0.5]
exclude = [{exclude}]

[arms]
lottery = {{ start = "init" }}

[measure]
pairs = [["init*mask", "lottery"]]

[tracking]
uri = "sqlite:///{folder}/mlflow.db"

[storage]
root = "{folder}/store"
"""


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """The plugin distribution, built and installed with pip into a folder of its own."""
    source, site = tmp_path_factory.mktemp("plugin-source"), tmp_path_factory.mktemp("site")
    (source / "ltspec_demo_plugin.py").write_text(PLUGIN_MODULE)
    (source / "pyproject.toml").write_text(PLUGIN_PROJECT)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(source)], check=True, capture_output=True)
    return site


def with_plugin(site: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def test_a_spec_without_plugins_never_reads_the_entry_points():
    code = ("from ltspec import plugins; from ltspec.spec import load_spec; load_spec('specs/vgg16.toml'); "
            "print(plugins._loaded)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout == "False\n"


@pytest.mark.slow
def test_a_plugins_model_dataset_and_generator_validate_run_and_report(plugin_path, tmp_path):
    env = with_plugin(plugin_path)
    typo = write_spec(tmp_path, SPEC, name="typo.toml", exclude='"layer9"')
    spec = write_spec(tmp_path, SPEC, exclude='"0"')
    result = ltspec("validate", str(typo), str(spec), cwd=tmp_path, env=env)  # each spec judged on its own
    assert result.returncode == 2 and "`layer9` matches no prunable layer of tinynet" in result.stderr
    assert result.stdout.startswith(f"ok {spec}: ") and "typo" not in result.stdout, result.stdout + result.stderr
    result = ltspec("run", str(spec), "--device", "cpu", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads(ltspec("plan", str(spec), "--json", cwd=tmp_path, env=env).stdout)
    assert all(stage["done"] for stage in plan["stages"])
    (mask,) = [stage for stage in plan["stages"] if stage["kind"] == "mask"]
    record = json.loads((tmp_path / "store" / mask["key"][:2] / mask["key"] / "record.json").read_text())
    assert record["metrics"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert record["artifacts"]["layer_density"]["0.weight"] == 1.0  # excluded: dense
    result = ltspec("report", str(spec), "--out", str(tmp_path / "report"), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lottery" in (tmp_path / "report" / "arms-small.md").read_text()


def test_without_the_plugin_installed_its_names_are_unknown(tmp_path):
    spec = write_spec(tmp_path, SPEC, exclude='"0"')
    result = ltspec("validate", str(spec), cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown dataset `blobs`" in result.stderr and "unknown architecture `tinynet`" in result.stderr
    assert "smallest" in result.stderr


def test_installing_ltspec_adds_one_importable_name(tmp_path):
    """`runners/` installs as `ltspec.runners`: no top-level `runners` package to collide with another's."""
    code = ("import importlib.metadata, importlib.util; "
            "print(importlib.metadata.distribution('ltspec').read_text('top_level.txt').split(), "
            "importlib.util.find_spec('runners') is None, importlib.util.find_spec('ltspec.runners.ray') is not None)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.stdout.strip() == "['ltspec'] True True", result.stderr
