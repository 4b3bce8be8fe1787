"""The model zoo: every network a spec can name, built by `build_model(arch, ...)`.

The CIFAR networks follow the implementations the pruning literature measures against: VGG as in OpenLTH's
`cifar_vgg_*`, ResNet-20..56 as in He et al. (2016) with the paper's option-A shortcuts, ResNet-18 and
MobileNet-V2 as in kuangliu/pytorch-cifar. Each is a `torch.nn.Sequential` of named parts, so module names
("conv1", "layer1.0.conv1", "fc") are stable, readable, and the same at every width and class count.

Input conventions. Images are (N, C, S, S) with C = `in_channels` and S = `input_size`. Signals are (N, C, L) with
L = `input_size`; a vector dataset (N, D) is a signal with in_channels=1 and input_size=D. Convolutional nets take
one kind; the MLPs flatten whatever they get and so take either, told which by `input_kind`.

The prunable tensors of a model are the weights of its Conv1d, Conv2d and Linear modules. `python -m ltspec.nets`
rewrites `layers.json`, the torch-free copy of their names that `ltspec.architectures` serves to the spec checker.
"""

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ltspec import architectures

PRUNABLE_MODULES = (nn.Conv1d, nn.Conv2d, nn.Linear)
LAYER_TABLE_PATH = Path(__file__).parent / "layers.json"


def scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal conv and linear weights (fan-in, ReLU gain) as in OpenLTH, zero biases, BN as identity."""
    for module in model.modules():
        if isinstance(module, PRUNABLE_MODULES):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()]


def projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """A 1x1 conv and BN that bring a shortcut to the shape of the residual branch."""
    conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels))


def classifier(in_features: int, num_classes: int) -> list[tuple[str, nn.Module]]:
    """Global average pooling and one linear layer: the head of every convolutional net here."""
    return [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(in_features, num_classes))]


# ---- VGG ------------------------------------------------------------------------------------------------------

VGG_PLANS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512),
    "convnet": (32, 32, "M", 64),  # a VGG in miniature, for small images such as 8x8 digits
}


def vgg(plan: tuple[int | str, ...], in_channels: int, num_classes: int, width: float) -> nn.Sequential:
    """Conv3x3-BN-ReLU layers with 2x2 max-pools at the "M"s, global average pooling, one linear layer.

    OpenLTH's CIFAR VGG ends in a 2x2 average pool on the 2x2 map a 32-pixel image leaves; the global pool is the
    same there and lets the net take larger images. Convs carry no bias: the BN after each would cancel it.
    """
    features, channels = [], in_channels
    for step in plan:
        if step == "M":
            features.append(nn.MaxPool2d(2))
        else:
            features += conv_bn_relu(channels, scaled(step, width))
            channels = scaled(step, width)
    return nn.Sequential(OrderedDict([("features", nn.Sequential(*features)), *classifier(channels, num_classes)]))


# ---- ResNets for CIFAR ----------------------------------------------------------------------------------------


class ZeroPadShortcut(nn.Module):
    """Option A of He et al.: subsample and append zero channels, so that the shortcut has no parameters."""

    def __init__(self, extra_channels: int, stride: int):
        super().__init__()
        self.extra_channels, self.stride = extra_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before = self.extra_channels // 2
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, before, self.extra_channels - before))


class BasicBlock(nn.Module):
    """Two conv3x3-BN layers plus a shortcut, then ReLU; option B projects the shortcut with a 1x1 conv and BN."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = ZeroPadShortcut(out_channels - in_channels, stride)
        else:
            self.shortcut = projection(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def resnet(
    stage_channels: tuple[int, ...],
    blocks_per_stage: int,
    in_channels: int,
    num_classes: int,
    width: float,
    shortcut: str,
) -> nn.Sequential:
    """A 3x3 stem at full resolution, then stages of basic blocks, each after the first halving the resolution."""
    channels = scaled(stage_channels[0], width)
    conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
    parts = [("conv1", conv1), ("bn1", nn.BatchNorm2d(channels)), ("relu", nn.ReLU())]
    for stage, stage_width in enumerate(stage_channels):
        blocks = []
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            blocks.append(BasicBlock(channels, scaled(stage_width, width), stride, shortcut))
            channels = scaled(stage_width, width)
        parts.append((f"layer{stage + 1}", nn.Sequential(*blocks)))
    return nn.Sequential(OrderedDict(parts + classifier(channels, num_classes)))


# ---- MobileNet-V2 for CIFAR -----------------------------------------------------------------------------------

# (expansion, out_channels, blocks, stride) per stage; kuangliu's CIFAR variant keeps the stem and the second
# stage at stride 1 so that a 32-pixel image ends on a 4x4 map.
MOBILENETV2_STAGES = (
    (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)
)


class InvertedResidual(nn.Module):
    """Expand 1x1, depthwise 3x3, project 1x1. At stride 1 the input is added back, through a 1x1 projection when
    the width changes (kuangliu's variant, which the CIFAR parameter counts in the literature include)."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int):
        super().__init__()
        hidden = expansion * in_channels
        self.conv1 = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        if stride > 1:
            self.shortcut = None
        elif in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = projection(in_channels, out_channels, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out if self.shortcut is None else out + self.shortcut(x)


def mobilenetv2(in_channels: int, num_classes: int, width: float) -> nn.Sequential:
    """A stride-1 conv3x3 stem, the inverted-residual stages, a 1x1 conv to 1280 channels, the classifier."""
    channels, last = scaled(32, width), scaled(1280, width)
    stem = [("conv1", nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)), ("bn1", nn.BatchNorm2d(channels))]
    blocks = []
    for expansion, out_channels, count, stride in MOBILENETV2_STAGES:
        for block in range(count):
            block_stride = stride if block == 0 else 1
            blocks.append(InvertedResidual(channels, scaled(out_channels, width), expansion, block_stride))
            channels = scaled(out_channels, width)
    top = [("conv2", nn.Conv2d(channels, last, 1, bias=False)), ("bn2", nn.BatchNorm2d(last)), ("relu2", nn.ReLU())]
    parts = stem + [("relu1", nn.ReLU()), ("layers", nn.Sequential(*blocks))] + top
    return nn.Sequential(OrderedDict(parts + classifier(last, num_classes)))


# ---- Small nets for the offline datasets ----------------------------------------------------------------------


def mlp(in_features: int, hidden: tuple[int, ...], num_classes: int, width: float) -> nn.Sequential:
    """Flatten, then Linear-ReLU per hidden layer, then a linear head; LeNet-300-100 is hidden=(300, 100)."""
    parts, features = [("flatten", nn.Flatten())], in_features
    for index, size in enumerate(hidden, start=1):
        parts += [(f"hidden{index}", nn.Linear(features, scaled(size, width))), (f"relu{index}", nn.ReLU())]
        features = scaled(size, width)
    return nn.Sequential(OrderedDict(parts + [("fc", nn.Linear(features, num_classes))]))


def conv1d(in_channels: int, length: int, num_classes: int, width: float) -> nn.Sequential:
    """Three stride-2 conv-BN-ReLU layers, then a linear layer on the flattened map, as in the MNIST-1D baselines:
    the position of a feature in the signal carries the class, so the head sees it rather than pooling it away."""
    channels, features = scaled(32, width), []
    for index in range(3):
        features += [
            nn.Conv1d(in_channels if index == 0 else channels, channels, 5, stride=2, padding=2, bias=False),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
        ]
        length = (length + 1) // 2
    head = [("flatten", nn.Flatten()), ("fc", nn.Linear(channels * length, num_classes))]
    return nn.Sequential(OrderedDict([("features", nn.Sequential(*features)), *head]))


def torchvision_model(name: str, num_classes: int) -> nn.Module:
    """An ImageNet-shaped torchvision model with its own initialisation; never pretrained weights."""
    import torchvision  # only these models need it, and it is slow to import

    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)


# ---- The registry ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What `build_model` was asked for, once checked: the arguments every builder below draws from."""

    num_classes: int
    in_channels: int
    input_size: int
    in_features: int
    width: float
    shortcut: str | None


@dataclass(frozen=True)
class Architecture:
    """A buildable network. `downsamplings` counts the halvings of resolution; the smallest input it accepts is
    the one that still leaves a 2x2 map at the end. `shortcut` is the reference choice for residual nets whose
    shortcuts may be either "A" or "B", and None for nets without a choice."""

    build: Callable[[Request], nn.Module]
    input_kind: str
    downsamplings: int
    shortcut: str | None = None
    from_torchvision: bool = False
    small: bool = False  # too small to keep a GPU busy alone: several of its stages share one on Ray

    @property
    def min_input_size(self) -> int:
        return 2 ** (self.downsamplings + 1) if self.downsamplings else 1


def vgg_architecture(name: str) -> Architecture:
    plan = VGG_PLANS[name]
    return Architecture(
        lambda request: vgg(plan, request.in_channels, request.num_classes, request.width),
        input_kind="image",
        downsamplings=plan.count("M"),
    )


def resnet_architecture(stage_channels: tuple[int, ...], blocks_per_stage: int, shortcut: str) -> Architecture:
    return Architecture(
        lambda request: resnet(
            stage_channels, blocks_per_stage, request.in_channels, request.num_classes, request.width, request.shortcut
        ),
        input_kind="image",
        downsamplings=len(stage_channels) - 1,
        shortcut=shortcut,
    )


def he_resnet_architecture(depth: int) -> Architecture:
    """ResNet-(6n+2) of He et al. for CIFAR: three stages of n blocks at 16, 32, 64 channels, option-A shortcuts."""
    return replace(resnet_architecture((16, 32, 64), (depth - 2) // 6, shortcut="A"), small=True)


def mlp_architecture(hidden: tuple[int, ...]) -> Architecture:
    return Architecture(
        lambda request: mlp(request.in_features, hidden, request.num_classes, request.width),
        input_kind="any",
        downsamplings=0,
        small=True,
    )


def torchvision_architecture(name: str) -> Architecture:
    return Architecture(
        lambda request: torchvision_model(name, request.num_classes),
        input_kind="image",
        downsamplings=5,
        from_torchvision=True,
    )


REGISTRY: dict[str, Architecture] = {
    **{name: vgg_architecture(name) for name in ("vgg11", "vgg13", "vgg16", "vgg19")},
    **{f"resnet{depth}": he_resnet_architecture(depth) for depth in (20, 32, 44, 56)},
    "resnet18": resnet_architecture((64, 128, 256, 512), blocks_per_stage=2, shortcut="B"),
    "mobilenetv2": Architecture(
        lambda request: mobilenetv2(request.in_channels, request.num_classes, request.width),
        input_kind="image",
        downsamplings=3,
        small=True,
    ),
    "lenet300100": mlp_architecture((300, 100)),
    "mlp": mlp_architecture((128, 64)),
    "convnet": replace(vgg_architecture("convnet"), small=True),
    "conv1d": Architecture(
        lambda request: conv1d(request.in_channels, request.input_size, request.num_classes, request.width),
        input_kind="signal",
        downsamplings=3,
        small=True,
    ),
    **{f"tv-{name}": torchvision_architecture(name) for name in ("resnet18", "resnet50", "vgg16_bn", "mobilenet_v2")},
}


def build_model(
    arch: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    input_size: int = 32,
    width: float = 1.0,
    shortcut: str | None = None,
    input_kind: str | None = None,
    seed: int | None = None,
) -> nn.Module:
    """Build `arch` for inputs of `in_channels` x `input_size` (see the module docstring for shapes).

    width: multiplies every channel and hidden-layer count (not for the torchvision models).
    shortcut: "A" or "B" for the CIFAR ResNets; None picks the reference one (A for ResNet-20..56, as in the
        paper; B for ResNet-18, as in kuangliu). Other nets have no shortcut to choose.
    input_kind: "image" or "signal"; None means the net's own kind, and "image" for the MLPs.
    seed: draw the weights from the CPU generator seeded with it and leave the caller's RNG state as it was;
        without it they come from the global RNG, which the caller seeds. The model is built on torch's default
        device: build on the CPU and move it with `.to(device)`, so that a seed means the same weights anywhere.
    """
    if arch not in REGISTRY:
        raise ValueError(f"unknown architecture {arch!r}; expected one of: {', '.join(sorted(REGISTRY))}")
    architecture = REGISTRY[arch]
    input_kind = input_kind or ("image" if architecture.input_kind == "any" else architecture.input_kind)
    if input_kind not in ("image", "signal"):
        raise ValueError(f"input_kind must be 'image' or 'signal', got {input_kind!r}")
    if architecture.input_kind not in ("any", input_kind):
        raise ValueError(f"{arch} takes {architecture.input_kind}s, not {input_kind}s")
    if num_classes < 1 or in_channels < 1 or width <= 0:
        raise ValueError(f"{arch} needs num_classes >= 1, in_channels >= 1 and width > 0")
    if input_size < architecture.min_input_size:
        side = "length" if input_kind == "signal" else "side"
        raise ValueError(f"{arch} needs inputs of {side} >= {architecture.min_input_size}, got {input_size}")
    if architecture.from_torchvision and (in_channels != 3 or width != 1.0):
        raise ValueError(f"{arch} is a torchvision model: it takes 3-channel images at width 1.0")
    shortcut = architectures.resolve_shortcut(arch, architecture.shortcut, shortcut)

    flat_size = input_size * input_size if input_kind == "image" else input_size
    in_features = in_channels * flat_size
    request = Request(num_classes, in_channels, input_size, in_features, width, shortcut)
    if seed is None:
        return construct(architecture, request)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return construct(architecture, request)


def construct(architecture: Architecture, request: Request) -> nn.Module:
    model = architecture.build(request)
    if not architecture.from_torchvision:
        init_weights(model)
    return model


def state_on_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state on the CPU, to store: a weight point, a trained result."""
    return {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}


def prunable_tensors(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weights of the model's Conv1d, Conv2d and Linear modules, by parameter name, in named_parameters order."""
    return {
        f"{name}.weight": module.weight
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_MODULES)
    }


# ---- The torch-free layer table -------------------------------------------------------------------------------


def layer_rows(arch: str, shortcut: str | None = None) -> list[dict[str, str]]:
    """The prunable layers of `arch`, built on the meta device, where its tensors take no memory or arithmetic."""
    with torch.device("meta"):
        model = build_model(arch, num_classes=10, input_size=REGISTRY[arch].min_input_size, shortcut=shortcut)
    return [
        {"name": name, "kind": "linear" if isinstance(module, nn.Linear) else "conv"}
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_MODULES)
    ]


def register(name: str, architecture: Architecture) -> None:
    """Add an architecture (a plugin's) and its row of the layer table (`ltspec.architectures`), made by building
    it; a name already taken is refused, so that a plugin never replaces a built-in."""
    if not isinstance(architecture, Architecture):
        raise TypeError(f"a model plugin must be a ltspec.nets.Architecture, got {type(architecture).__name__}")
    if name in REGISTRY:
        raise ValueError(f"architecture `{name}` is already registered")
    REGISTRY[name] = architecture
    architectures.TABLE[name] = table_entry(name)


def layer_table() -> dict[str, dict]:
    """What `layers.json` must hold: each architecture's input kind, smallest input, reference shortcut and
    prunable layers. Residual nets list their projection layers too, marked as present only with shortcut "B"."""
    return {arch: table_entry(arch) for arch in sorted(REGISTRY)}


def table_entry(arch: str) -> dict:
    """One architecture's row of the layer table (a plugin's is made this way when a spec names it)."""
    architecture = REGISTRY[arch]
    if architecture.shortcut is None:
        layers = layer_rows(arch)
    else:
        layers, without_projections = layer_rows(arch, shortcut="B"), layer_rows(arch, shortcut="A")
        for row in layers:
            if row not in without_projections:
                row["only_with_shortcut"] = "B"
    return {
        "input_kind": architecture.input_kind,
        "min_input_size": architecture.min_input_size,
        "shortcut": architecture.shortcut,
        "small": architecture.small,
        "layers": layers,
    }


def write_layer_table() -> None:
    LAYER_TABLE_PATH.write_text(json.dumps(layer_table(), indent=1) + "\n")


if __name__ == "__main__":
    write_layer_table()
    print(f"wrote {LAYER_TABLE_PATH}")
