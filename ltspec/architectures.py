"""Facts about each architecture, by name, without importing torch: its layers, inputs and size class.

`ltspec validate` must start in a fraction of a second, so it reads `layers.json` rather than building models.
That file is generated from the real models by `python -m ltspec.nets`, and a test fails when it falls behind.
Layer names are module names ("layer1.0.conv1"); the prunable tensor of a layer is its ".weight". An architecture
a plugin registers (`ltspec.plugins`) is not in the file: its row is made by building it when the plugin is loaded,
which happens only when a spec names something that is not built in.
"""

import json
from dataclasses import dataclass
from pathlib import Path

TABLE: dict[str, dict] = json.loads((Path(__file__).parent / "layers.json").read_text())


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str  # "conv" or "linear"


def known(arch: str) -> bool:
    """Whether `arch` is built in or registered by a plugin (`ltspec.plugins.load`)."""
    return arch in TABLE


def names() -> list[str]:
    return sorted(TABLE)


def entry(arch: str) -> dict:
    if not known(arch):
        raise ValueError(f"unknown architecture {arch!r}; expected one of: {', '.join(names())}")
    return TABLE[arch]


def is_small(arch: str) -> bool:
    """A net too small to keep a GPU busy on its own (ResNet-20 barely loads an H100): Ray packs such stages
    several to one GPU."""
    return entry(arch)["small"]


def resolve_shortcut(arch: str, reference: str | None, shortcut: str | None) -> str | None:
    """The shortcut a residual net is built with: the one asked for, else the architecture's `reference`; a net
    without a choice (reference None) takes none."""
    if shortcut not in (None, "A", "B"):
        raise ValueError(f"shortcut must be 'A' (zero padding) or 'B' (1x1 projection), got {shortcut!r}")
    if reference is None and shortcut is not None:
        raise ValueError(f"{arch} has no shortcut to choose; leave shortcut unset")
    return shortcut or reference


def prunable_layers(arch: str, shortcut: str | None = None) -> tuple[Layer, ...]:
    """The conv and linear layers of `arch`, in the model's named_parameters order.

    The CIFAR ResNets gain 1x1 projection layers with shortcut "B"; None means the architecture's reference
    shortcut, as in `ltspec.nets.build_model`."""
    table_entry = entry(arch)
    shortcut = resolve_shortcut(arch, table_entry["shortcut"], shortcut)
    return tuple(
        Layer(row["name"], row["kind"])
        for row in table_entry["layers"]
        if row.get("only_with_shortcut") in (None, shortcut)
    )


def weight_names(arch: str, shortcut: str | None, kinds: list[str]) -> list[str]:
    """Names of the model's weight tensors of the given kinds (conv, linear), in model order."""
    return [f"{layer.name}.weight" for layer in prunable_layers(arch, shortcut) if layer.kind in kinds]


def first_conv(arch: str) -> str | None:
    """The first conv layer, which the paper leaves dense; None for the MLPs."""
    return next((layer.name for layer in prunable_layers(arch) if layer.kind == "conv"), None)


def input_kind(arch: str) -> str:
    """"image" (N, C, S, S), "signal" (N, C, L), or "any" for the MLPs, which flatten what they get."""
    return entry(arch)["input_kind"]


def min_input_size(arch: str) -> int:
    """The smallest image side (or signal length) the architecture accepts: the one that still leaves a 2x2 map
    (a length of 2) after its last downsampling; 1 for the MLPs, which never downsample."""
    return entry(arch)["min_input_size"]
