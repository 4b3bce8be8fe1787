import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ltspec import architectures
from ltspec.nets import LAYER_TABLE_PATH, REGISTRY, ZeroPadShortcut, build_model, layer_table, prunable_tensors

RESIDUAL = [arch for arch in REGISTRY if REGISTRY[arch].shortcut is not None]


def meta_model(arch: str, **kwargs) -> nn.Module:
    kwargs = {"num_classes": 10, "input_size": max(32, architectures.min_input_size(arch))} | kwargs
    with torch.device("meta"):
        return build_model(arch, **kwargs)


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize(
    "arch, published",
    [
        ("resnet20", 0.27e6),
        ("resnet56", 0.85e6),
        ("vgg11", 9.2e6),
        ("vgg16", 14.7e6),
        ("resnet18", 11.2e6),
    ],
)
def test_parameter_counts_match_the_published_figures(arch, published):
    assert parameter_count(meta_model(arch)) == pytest.approx(published, rel=0.01)


def test_mobilenetv2_and_lenet_parameter_counts():
    assert 2.2e6 <= parameter_count(meta_model("mobilenetv2")) <= 2.3e6
    assert parameter_count(meta_model("lenet300100", in_channels=1, input_size=28)) == 266_610


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_every_model_classifies_its_smallest_input(arch):
    """In training mode, so that BatchNorm sees more than one value per channel at the last map. torchvision's
    models run on the meta device: their arithmetic is torchvision's to test, their shapes are ours, and a real
    VGG-16 with its 100 M-parameter classifier would take most of this file's time to initialise."""
    size, kind = architectures.min_input_size(arch), architectures.input_kind(arch)
    shape = (2, 3, size) if kind == "signal" else (2, 3, size, size)
    with torch.device("meta" if REGISTRY[arch].from_torchvision else "cpu"), torch.no_grad():
        model = build_model(arch, num_classes=7, input_size=size, seed=0)
        assert model(torch.randn(shape)).shape == (2, 7)
    if size > 1:
        with pytest.raises(ValueError, match=f"{arch} needs inputs"):
            build_model(arch, num_classes=7, input_size=size - 1)


@settings(max_examples=12, deadline=None)
@given(
    arch=st.sampled_from(["resnet20", "convnet", "conv1d", "mlp", "lenet300100"]),
    num_classes=st.integers(1, 12),
    in_channels=st.integers(1, 4),
    extra_size=st.integers(0, 12),
    width=st.sampled_from([0.25, 0.5, 1.0, 1.5]),
)
def test_small_models_take_any_valid_shape(arch, num_classes, in_channels, extra_size, width):
    size = architectures.min_input_size(arch) + extra_size
    signal = architectures.input_kind(arch) == "signal"
    model = build_model(arch, num_classes=num_classes, in_channels=in_channels, input_size=size, width=width)
    batch = torch.randn((2, in_channels, size) if signal else (2, in_channels, size, size))
    with torch.no_grad():
        assert model(batch).shape == (2, num_classes)


def test_mlps_flatten_vectors_signals_and_images():
    vectors = build_model("mlp", num_classes=3, in_channels=1, input_size=10, input_kind="signal")
    assert vectors(torch.randn(4, 10)).shape == vectors(torch.randn(4, 1, 10)).shape == (4, 3)
    signals = build_model("mlp", num_classes=10, input_size=40, in_channels=1, input_kind="signal")
    assert signals.hidden1.in_features == 40
    lenet = build_model("lenet300100", num_classes=10, in_channels=1, input_size=28)
    assert lenet.hidden1.in_features == 784
    assert lenet(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_conv1d_takes_mnist1d_signals():
    model = build_model("conv1d", num_classes=10, in_channels=1, input_size=40)
    assert model(torch.randn(5, 1, 40)).shape == (5, 10)


def test_width_scales_channels():
    half = build_model("resnet20", num_classes=10, width=0.5)
    assert half.conv1.out_channels == 8 and half.layer3[0].conv1.out_channels == 32
    assert parameter_count(half) < parameter_count(build_model("resnet20", num_classes=10)) / 3


def test_shortcut_a_has_no_projection_and_b_does():
    option_a, option_b = meta_model("resnet20", shortcut="A"), meta_model("resnet20", shortcut="B")
    assert not any("shortcut" in name for name, _ in option_a.named_parameters())
    assert {name for name, _ in option_b.named_parameters() if "shortcut" in name} == {
        f"{stage}.0.shortcut.{part}" for stage in ("layer2", "layer3") for part in ("0.weight", "1.weight", "1.bias")
    }
    assert parameter_count(meta_model("resnet20")) == parameter_count(option_a)
    assert parameter_count(meta_model("resnet18")) == parameter_count(meta_model("resnet18", shortcut="B"))


def test_zero_pad_shortcut_subsamples_and_appends_zero_channels():
    x = torch.randn(2, 4, 5, 5)
    out = ZeroPadShortcut(extra_channels=4, stride=2)(x)
    assert out.shape == (2, 8, 3, 3)
    assert torch.equal(out[:, 2:6], x[:, :, ::2, ::2])
    assert not out[:, :2].any() and not out[:, 6:].any()


def test_standard_initialisation():
    model = build_model("resnet20", num_classes=10, seed=0)
    conv = model.layer3[0].conv2.weight
    fan_in = conv[0].numel()
    assert conv.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.05)
    assert torch.equal(model.bn1.weight, torch.ones(16)) and torch.equal(model.bn1.bias, torch.zeros(16))
    assert not model.fc.bias.any()


def test_seeded_builds_are_identical_and_leave_the_global_rng_alone():
    rng_state = torch.get_rng_state()
    first, again = build_model("resnet20", num_classes=10, seed=0), build_model("resnet20", num_classes=10, seed=0)
    other = build_model("resnet20", num_classes=10, seed=1)
    assert torch.equal(torch.get_rng_state(), rng_state)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name])
    assert not torch.equal(first.conv1.weight, other.conv1.weight)


def test_caller_seeded_builds_are_identical_for_torchvision_models_too():
    torch.manual_seed(5)
    first = build_model("tv-mobilenet_v2", num_classes=10, input_size=64)
    torch.manual_seed(5)
    again = build_model("tv-mobilenet_v2", num_classes=10, input_size=64)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters(), strict=True))


@pytest.mark.parametrize(
    "arch, kwargs, message",
    [
        ("vgg17", {}, "unknown architecture 'vgg17'"),
        ("vgg11", {"input_size": 8}, "vgg11 needs inputs of side >= 32, got 8"),
        ("conv1d", {"input_size": 40, "input_kind": "image"}, "conv1d takes signals, not images"),
        ("resnet20", {"input_kind": "signal"}, "resnet20 takes images, not signals"),
        ("mlp", {"input_kind": "vector"}, "input_kind must be"),
        ("tv-resnet18", {"in_channels": 1, "input_size": 64}, "3-channel images at width 1.0"),
        ("tv-resnet18", {"width": 0.5, "input_size": 64}, "3-channel images at width 1.0"),
        ("vgg16", {"shortcut": "B"}, "vgg16 has no shortcut"),
        ("resnet20", {"shortcut": "C"}, "shortcut must be 'A'"),
        ("resnet20", {"width": 0}, "width > 0"),
    ],
)
def test_bad_requests_raise_a_clear_value_error(arch, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_model(arch, num_classes=10, **kwargs)


def test_layer_table_is_in_sync_with_the_models():
    assert layer_table() == json.loads(LAYER_TABLE_PATH.read_text()), (
        "ltspec/layers.json is stale: regenerate it with `python -m ltspec.nets`"
    )
    assert architectures.names() == sorted(REGISTRY)


@pytest.mark.parametrize("arch, shortcut", [(arch, None) for arch in sorted(REGISTRY)] + [
    (arch, shortcut) for arch in RESIDUAL for shortcut in ("A", "B")
])
def test_prunable_tensors_follow_the_layer_table(arch, shortcut):
    model = meta_model(arch, shortcut=shortcut)
    tensors = prunable_tensors(model)
    layers = architectures.prunable_layers(arch, shortcut)
    assert list(tensors) == [f"{layer.name}.weight" for layer in layers]
    assert list(tensors) == [name for name, _ in model.named_parameters() if name in tensors]
    modules = dict(model.named_modules())
    for layer in layers:
        module = modules[layer.name]
        assert tensors[f"{layer.name}.weight"] is module.weight
        assert layer.kind == ("linear" if isinstance(module, nn.Linear) else "conv")
    conv_and_linear = (nn.Conv1d, nn.Conv2d, nn.Linear)
    assert len(tensors) == sum(isinstance(module, conv_and_linear) for module in model.modules())


def test_architecture_facts():
    assert architectures.first_conv("resnet20") == "conv1"
    assert architectures.first_conv("vgg16") == "features.0"
    assert architectures.first_conv("conv1d") == "features.0"
    assert architectures.first_conv("lenet300100") is None
    assert architectures.input_kind("mlp") == "any" and architectures.input_kind("conv1d") == "signal"
    assert architectures.min_input_size("vgg11") == 32 and architectures.min_input_size("resnet20") == 8
    assert architectures.min_input_size("tv-resnet50") == 64 and architectures.min_input_size("convnet") == 4
    assert len(architectures.prunable_layers("resnet20")) == 20
    assert len(architectures.prunable_layers("resnet20", "B")) == 22


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: architectures.input_kind("resnet21"), "unknown architecture 'resnet21'"),
        (lambda: architectures.prunable_layers("vgg11", "A"), "vgg11 has no shortcut"),
        (lambda: architectures.prunable_layers("resnet20", "C"), "shortcut must be 'A'"),
    ],
)
def test_architecture_lookups_reject_bad_requests(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_architectures_does_not_import_torch():
    check = "import sys, ltspec.architectures; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True, cwd=Path(__file__).parents[1])
