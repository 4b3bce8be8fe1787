"""The editor schema in two real TOML engines: Taplo (the Even Better TOML extension) and Tombi.

Every shipped spec must pass both, and every bad spec below must be flagged by both and by `ltspec validate`, so
the editor and the CLI agree on what a spec is. Both engines run offline, on the committed schema, named by each
file's `#:schema` line as an editor would find it.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from ltspec.spec import SpecError, load_spec
from ltspec.spec.schema import schema

SCHEMA = ROOT / "schemas" / "ltspec.schema.json"
SPECS = sorted((ROOT / "specs").glob("*.toml"))
BASE = (ROOT / "specs" / "vgg16.toml").read_text()


def engine(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"the `{name}` CLI is not installed (pip install {name}, or the `test` extra)")
    return found


def taplo(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([engine("taplo"), "check", "--no-auto-config", "--colors", "never", *map(str, files)],
                          capture_output=True, text=True, timeout=60)


def tombi(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([engine("tombi"), "lint", "--offline", "--error-on-warnings", *map(str, files)],
                          capture_output=True, text=True, timeout=60, cwd=files[0].parent,
                          env={**os.environ, "NO_COLOR": "1"})


def test_every_shipped_spec_passes_taplo():
    result = taplo(*SPECS)
    assert result.returncode == 0, result.stderr


def test_every_shipped_spec_passes_tombi():
    result = tombi(*SPECS)
    assert result.returncode == 0, result.stderr


BAD = {
    "quoted-int": ("epochs = 150", 'epochs = "150"'),
    "quoted-float": ("lr = 0.1\n", 'lr = "0.01"\n'),
    "quoted-seeds": ("seeds = [0, 1, 2, 3, 4]", 'seeds = ["0", "1"]'),
    "quoted-batch": ("batch_size = 128", 'batch_size = "64"'),
    "download-yes": ("download = true", 'download = "yes"'),
    "download-1": ("download = true", "download = 1"),
    "dataset-typo": ('dataset = "cifar10"', 'dataset = "cifar1"'),
    "arch-typo": ('arch = "vgg16"', 'arch = "vgg15"'),
    "mask-kind-typo": ('kind = "imp"', 'kind = "imq"'),
    "mask-without-kind": ('kind = "imp"\n', ""),
    "optimizer-kind-typo": ('kind = "sgd"', 'kind = "sdg"'),
    "schedule-kind-typo": ('kind = "step"', 'kind = "stepp"'),
    "start-typo": ('start = "init"', 'start = "random"'),
    "range-in-list": ("p = [0.1, 0.2", "p = [0.1, 1.2"),
    "unknown-mask-key": ("rate = 0.2", "rat = 0.2"),
    "unknown-optimizer-key": ("momentum = 0.9", "momentun = 0.9"),
    "unknown-top-key": ("seeds =", "seed ="),
    "pair-of-three": ('["init", "trained"]', '["init", "trained", "reinit"]'),
    "pair-of-one": ('["init", "trained"]', '["init"]'),
    "layout-typo": ("[arms]", '[report]\nlayouts = ["arm"]\n\n[arms]'),
    "name-with-space": ('name = "vgg16-cifar10"', 'name = "vgg16 cifar10"'),
    "name-too-long": ('name = "vgg16-cifar10"', f'name = "{"n" * 201}"'),
    "experiment-too-long": ("[arms]", f'[tracking]\nexperiment = "{"e" * 501}"\n\n[arms]'),
    "too-many-seeds": ("seeds = [0, 1, 2, 3, 4]", f"seeds = {list(range(101))}"),
    "swept-base-value": ("lr = 0.1\n", 'lr = "abc"\n'),
    "rounds-quoted": ("rounds = 8", 'rounds = "8"'),
    "empty-sparsities": ("sparsities = [0.5, 0.7, 0.9]", "sparsities = []"),
    "negative-seed": ("seeds = [0, 1, 2, 3, 4]", "seeds = [-1]"),
    "repeated-seed": ("seeds = [0, 1, 2, 3, 4]", "seeds = [0, 1, 2, 3, 0]"),
    # Tombi refuses the integer; Taplo 0.9.3 reads it as 0 and so flags it only where 0 is out of range
    "epochs-beyond-64-bits": ("epochs = 150", "epochs = 10000000000000000000000000"),
    "unclosed-array": ("p = [0.1, 0.2, 0.3, 0.4, 0.5]", "p = [0.1, 0.2,"),
}


@pytest.fixture(scope="module")
def bad_specs(tmp_path_factory) -> dict[str, Path]:
    """Each bad spec in its own file, pointing at the committed schema by its absolute path; "good" is the
    unchanged spec, which shows that the engines load the schema from there."""
    folder = tmp_path_factory.mktemp("bad")
    files = {}
    for name, (old, new) in {"good": ("", ""), **BAD}.items():
        assert BASE.count(old) >= 1, name
        text = BASE.replace("#:schema ../schemas/ltspec.schema.json", f"#:schema {SCHEMA}").replace(old, new, 1)
        files[name] = folder / f"{name}.toml"
        files[name].write_text(text)
    return files


def test_the_unchanged_spec_passes_from_any_folder(bad_specs):
    assert taplo(bad_specs["good"]).returncode == 0
    assert tombi(bad_specs["good"]).returncode == 0


@pytest.mark.parametrize("name", BAD)
def test_a_bad_spec_is_flagged_by_taplo_tombi_and_validate(bad_specs, name):
    path = bad_specs[name]
    with pytest.raises(SpecError):
        load_spec(path)
    assert taplo(path).returncode != 0, f"taplo passes {name}"
    assert tombi(path).returncode != 0, f"tombi passes {name}"


def test_a_wrong_kind_names_the_kinds_in_both_engines(bad_specs):
    """The schema's unions are told apart by `kind`: the engines name the kinds, not "oneOf" failures."""
    for output in (taplo(bad_specs["mask-kind-typo"]).stderr, tombi(bad_specs["mask-kind-typo"]).stderr):
        assert "oneOf" not in output and '"admm", "gradual", "imp", "magnitude_init", "oneshot", "random", ' \
            '"shuffle", "snip", "synflow"' in output.replace('","', '", "')


def walk(node, path=()):
    """Every subschema of the schema document, with where it is."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key not in ("default", "const", "enum"):
                yield from walk(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, path + (index,))


def test_the_schema_is_shaped_for_editors():
    document = schema()
    assert document["$schema"] == "http://json-schema.org/draft-07/schema#" and "$id" not in document
    for path, node in walk(document):
        fields = node.get("properties", {}) if "if" not in path and path[-1:] != ("properties",) else {}
        for name, field in fields.items():
            assert field.get("title") and field.get("description"), (path, name)
        if node.get("type") == "object" and "properties" in node and "allOf" not in node:
            assert node.get("additionalProperties") is False, path
        assert {"type": "null"} not in node.get("anyOf", []) and node.get("default", 0) is not None, path
        assert "oneOf" not in node and "$defs" not in node and "prefixItems" not in node, path


def test_closed_vocabularies_are_enums_and_kinds_are_told_apart():
    definitions = schema()["definitions"]
    assert "cifar10" in definitions["Data"]["properties"]["dataset"]["enum"]
    assert "vgg16" in definitions["Model"]["properties"]["arch"]["enum"]
    masks = schema()["properties"]["masks"]["additionalProperties"]
    assert masks["required"] == ["kind"] and set(masks["properties"]["kind"]["enum"]) == {
        "oneshot", "imp", "admm", "random", "magnitude_init", "snip", "synflow", "gradual", "shuffle"}
    assert {rule["if"]["properties"]["kind"]["const"]: rule["then"]["$ref"] for rule in masks["allOf"]}["imp"] == \
        "#/definitions/Imp"
