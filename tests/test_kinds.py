"""Stage kinds as records, and the shape of the code around them: each kind's name written only in its module,
kind modules readable without torch, configs whose canonical form is what keys hash, and imports that run one way
down the layers with no circle."""

import ast
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from conftest import QUICKSTART, ROOT
from ltspec import kinds
from ltspec.kinds.base import FLATTENED, OMITTED_IF_NONE, Stage, canonical
from ltspec.plan import compile_plan
from ltspec.recipe import Adam, CosineSchedule, Recipe, Sgd, StepSchedule
from ltspec.spec import load_spec

SOURCES = sorted([*(ROOT / "ltspec").rglob("*.py"), *(ROOT / "runners").rglob("*.py")])
PAPER = sorted((ROOT / "specs" / "paper").glob("*.toml"))
ANALYSES = ROOT / "specs" / "analyses.toml"


def test_the_registry_lists_every_kind_the_compiler_emits():
    assert len(kinds.REGISTRY) == len(kinds.BUILT_IN)
    emitted = {stage.kind.name for spec in (QUICKSTART, ANALYSES, *PAPER)
               for stage in compile_plan(load_spec(spec)).stages}
    assert emitted == set(kinds.REGISTRY)
    for kind in kinds.BUILT_IN:
        assert kind.place in ("trunk", "generator", "mask"), kind.name


def test_a_kind_name_is_written_only_in_its_module():
    """Everything outside `ltspec/kinds/` asks the record (`stage.kind == dense.KIND`, `stage.kind.place`), never
    compares or builds a kind by its name."""
    names = "|".join(kinds.REGISTRY)
    by_name = re.compile(rf"""\.kind(\.name)?\s*(==|!=|in)\s*[(\[{{]?\s*["']({names})["']|StageKind\(\s*["']"""
                         rf"""|ltspec\.kind`\s*=\s*'({names})'""")
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in SOURCES if "kinds" not in path.relative_to(ROOT).parts
             for number, line in enumerate(path.read_text().splitlines(), 1) if by_name.search(line)]
    assert not found, "\n".join(found)


def test_kinds_and_the_compiler_import_no_torch():
    code = ("import sys, ltspec.kinds, ltspec.plan, ltspec.plan.render; "
            "print(sorted(m for m in ('torch', 'mlflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() == "[]", result.stderr


@dataclass(frozen=True)
class Inner:
    a: int
    b: str | None = field(default=None, metadata=OMITTED_IF_NONE)


@dataclass(frozen=True)
class Outer:
    table: dict = field(metadata=FLATTENED)
    inner: Inner
    pair: tuple[int, int]


@given(a=st.integers(), b=st.one_of(st.none(), st.text(max_size=3)), table=st.dictionaries(
    st.sampled_from(["x", "y"]), st.integers(), max_size=2))
def test_canonical_is_plain_data_with_omissions_and_flattening(a, b, table):
    expected_inner = {"a": a, **({"b": b} if b is not None else {})}
    assert canonical(Outer(table, Inner(a, b), (1, 2))) == {**table, "inner": expected_inner, "pair": [1, 2]}


@pytest.mark.parametrize("recipe, expected", [
    (Recipe(150, 0.1, Sgd(), StepSchedule(milestones=[80, 120])),
     {"epochs": 150, "lr": 0.1, "precision": "fp32",
      "optimizer": {"kind": "sgd", "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4},
      "schedule": {"kind": "step", "milestones": [80, 120], "gamma": 0.1, "warmup_epochs": 0}}),
    (Recipe(3, 0.01, Adam(kind="adamw", betas=(0.8, 0.9)), CosineSchedule(kind="cosine"), "bf16"),
     {"epochs": 3, "lr": 0.01, "precision": "bf16",
      "optimizer": {"kind": "adamw", "betas": [0.8, 0.9], "weight_decay": 0.0},
      "schedule": {"kind": "cosine", "warmup_epochs": 0}}),
])
def test_a_recipe_is_hashed_as_the_plan_dict_it_replaced(recipe, expected):
    """The typed recipe's canonical form is the dict the plan held before it, so that no stage key moved."""
    assert canonical(recipe) == expected


def test_a_stage_refuses_a_config_of_another_kind():
    dense = compile_plan(load_spec(QUICKSTART)).trunks[0]
    with pytest.raises(TypeError, match="StageKind and its config"):
        Stage(kinds.REGISTRY["train"], dense.config)


# The layers, bottom to top: a module may import its own layer and those below, never one above. The package's
# front door, `ltspec/__init__.py` (its version, and `ltspec.load` imported on first use), is left out.
LAYERS = [
    {"strict", "faults", "files", "points", "datasets", "download", "architectures", "hooks",
     "recipe"},
    {"nets", "data", "loader", "pruning", "admm_hook", "correlation", "training", "checkpoints", "preemption", "shipped",
     "interpolation", "similarity", "signs"},
    {"masks", "layouts"},
    {"spec", "plugins", "rehearsal"},
    {"kinds"},
    {"store", "tracking_store", "tracking"},
    {"plan", "stages"},
    {"runners", "report", "tickets", "ui"},
    {"preflight"},
    {"cli", "__main__"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "runners":
        parts = ["ltspec", "runners", *parts[1:]]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in SOURCES}


def imported(path: Path) -> set[str]:
    """The project modules a file imports, at its top or inside functions (not under TYPE_CHECKING); `from pkg
    import sub` is an import of the submodule."""
    found = set()

    class Imports(ast.NodeVisitor):
        def visit_If(self, node):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                self.generic_visit(node)

        def visit_Import(self, node):
            found.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node):
            if node.module:
                submodules = {f"{node.module}.{alias.name}" for alias in node.names} & MODULES.keys()
                found.update(submodules or {node.module})

    Imports().visit(ast.parse(path.read_text()))
    return found & MODULES.keys()


GRAPH = {name: imported(path) - {name} for name, path in MODULES.items() if name != "ltspec"}


def layer(module: str) -> int:
    top = module.split(".")[1]
    return next(number for number, members in enumerate(LAYERS) if top in members)


def test_every_module_has_a_layer():
    placed = set().union(*LAYERS)
    unplaced = sorted(name for name in GRAPH if name.split(".")[1] not in placed)
    assert not unplaced, f"modules missing from LAYERS: {unplaced}"


def test_imports_point_down_the_layers():
    upward = [f"{module} -> {target}" for module, targets in GRAPH.items() for target in targets
              if target != "ltspec" and layer(target) > layer(module)]
    assert not upward, "\n".join(sorted(upward))


def test_the_import_graph_has_no_circle():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == "open":
                raise AssertionError("circle: " + " -> ".join([*path[path.index(target):], target]))
            if target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
