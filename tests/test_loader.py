"""The device loader: seeded epochs that replay exactly, every sample once, normalisation, and crops and flips that
are torchvision's, draw for draw and in distribution."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy.stats import chi2_contingency, chisquare
from torchvision import transforms
from torchvision.transforms import functional as TF

from ltspec.data import Split
from ltspec.loader import CROP_PADDING, DeviceLoader, crop_and_flip

# ---------------------------------------------------------------- the device loader


def _indexed_images(count, seed=0):
    """Images whose label is their index, so that a batch says which samples it holds."""
    generator = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator), torch.arange(count))


def _loader(split, **overrides):
    arguments = {
        "batch_size": 8, "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.25, 0.3), "augment": True, "shuffle": True, "seed": 0,
    }
    return DeviceLoader(split, **{**arguments, **overrides})


def _batches(loader, epoch):
    return [(x.clone(), y.clone()) for x, y in loader.epoch(epoch)]


def test_an_epoch_replays_exactly_and_epochs_differ():
    split = _indexed_images(40)
    first, replay = _batches(_loader(split), 3), _batches(_loader(split), 3)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, replay, strict=True))
    next_epoch = _batches(_loader(split), 4)
    assert not torch.equal(torch.cat([y for _, y in first]), torch.cat([y for _, y in next_epoch]))
    other_seed = _batches(_loader(split, seed=1), 3)
    assert not torch.equal(torch.cat([y for _, y in first]), torch.cat([y for _, y in other_seed]))


@settings(max_examples=30, deadline=None)
@given(
    count=st.integers(1, 50),
    batch_size=st.integers(1, 20),
    drop_last=st.booleans(),
    shuffle=st.booleans(),
    epoch=st.integers(0, 1000),
)
def test_an_epoch_serves_every_sample_once_but_a_dropped_tail(count, batch_size, drop_last, shuffle, epoch):
    split = Split(torch.zeros(count, 1, 3), torch.arange(count))
    loader = DeviceLoader(
        split, batch_size=batch_size, mean=(0.0,), std=(1.0,), augment=False, shuffle=shuffle, seed=0,
        drop_last=drop_last,
    )
    labels = [y for _, y in loader.epoch(epoch)]
    assert len(labels) == len(loader)
    assert all(len(y) == batch_size for y in labels[:-1])
    served = torch.cat(labels) if labels else torch.empty(0, dtype=torch.int64)
    assert len(served.unique()) == len(served)
    assert len(served) == (count - count % batch_size if drop_last else count)
    if not shuffle:
        assert served.tolist() == list(range(len(served)))


def test_batches_are_normalised_per_channel():
    split = _indexed_images(10)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    x, y = next(_loader(split, batch_size=10, mean=mean, std=std, augment=False, shuffle=False).epoch(0))
    expected = (split.x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    torch.testing.assert_close(x, expected)


def test_signals_are_normalised_without_the_pixel_scale():
    signals = Split(torch.randn(6, 1, 40) * 3 + 2, torch.arange(6))
    loader = DeviceLoader(signals, batch_size=6, mean=(2.0,), std=(3.0,), augment=False, shuffle=False, seed=0)
    x, _ = next(loader.epoch(0))
    torch.testing.assert_close(x, (signals.x - 2) / 3)


def test_channels_last_batches_hold_the_same_values():
    split = _indexed_images(16)
    plain = _batches(_loader(split), 0)
    for (x, y), (x_plain, y_plain) in zip(_batches(_loader(split, channels_last=True), 0), plain, strict=True):
        assert x.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(x, x_plain) and torch.equal(y, y_plain)


def test_signals_cannot_be_augmented():
    signals = Split(torch.zeros(4, 1, 40), torch.arange(4))
    with pytest.raises(ValueError, match="augment"):
        DeviceLoader(signals, batch_size=2, mean=(0.0,), std=(1.0,), augment=True, shuffle=False, seed=0)


# ---------------------------------------------------------------- augmentation against torchvision

_OFFSETS = 2 * CROP_PADDING + 1  # 9 crop offsets per axis: 81 crops, each flipped or not


def _torchvision_crop_and_flip(image, top, left, flip):
    """What torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip() give when they draw these values."""
    cropped = TF.crop(TF.pad(image, [CROP_PADDING]), top, left, 32, 32)
    return TF.hflip(cropped) if flip else cropped


def _draws():
    return [(top, left, flip) for top in range(_OFFSETS) for left in range(_OFFSETS) for flip in (False, True)]


def test_crop_and_flip_equals_torchvision_for_every_draw():
    images = _indexed_images(2).x
    for top, left, flip in _draws():
        batch = crop_and_flip(images, torch.tensor([top, top]), torch.tensor([left, left]), torch.tensor([flip, flip]))
        for image, augmented in zip(images, batch):
            assert torch.equal(augmented, _torchvision_crop_and_flip(image, top, left, flip))


def _draw_index(images, outputs):
    """For each output, which of the 162 crop-and-flips of its source image it is; fails if it is none of them.

    Pixels are 1..255, so zeros come from padding alone and no two draws give the same output.
    """
    indices = []
    for image, samples in zip(images, outputs.transpose(0, 1)):
        candidates = {bytes(_torchvision_crop_and_flip(image, *draw).numpy()): i for i, draw in enumerate(_draws())}
        assert len(candidates) == len(_draws())
        for sample in samples:
            index = candidates.get(bytes(sample.numpy()))
            assert index is not None, "an augmented image is no crop-and-flip of its source image"
            indices.append(index)
    return torch.tensor(indices)


def test_augmentation_matches_torchvision_in_distribution():
    images = torch.randint(1, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    epochs = 400  # 3200 samples: about 20 per draw
    split = Split(images, torch.arange(8))
    loader = DeviceLoader(split, batch_size=8, mean=(0.0,) * 3, std=(1.0,) * 3, augment=True, shuffle=False, seed=0)
    ours = torch.stack([(next(loader.epoch(epoch))[0] * 255).round().to(torch.uint8) for epoch in range(epochs)])

    torch.manual_seed(0)
    reference = transforms.Compose([transforms.RandomCrop(32, padding=CROP_PADDING), transforms.RandomHorizontalFlip()])
    pil_images = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in images]

    def one_pass():
        return torch.stack([torch.from_numpy(np.array(reference(image))).permute(2, 0, 1) for image in pil_images])

    theirs = torch.stack([one_pass() for _ in range(epochs)])

    # Every output is one of the 162 crop-and-flips, and the draws are uniform and alike for both.
    ours_counts = _draw_index(images, ours).bincount(minlength=len(_draws())).numpy()
    theirs_counts = _draw_index(images, theirs).bincount(minlength=len(_draws())).numpy()
    assert chisquare(ours_counts).pvalue > 1e-3
    assert chisquare(theirs_counts).pvalue > 1e-3
    assert chi2_contingency(np.stack([ours_counts, theirs_counts])).pvalue > 1e-3

    # Where the padding lands: the share of zero pixels at each position, within 5 binomial standard errors.
    ours_zeros = (ours == 0).all(dim=2).flatten(0, 1).float().mean(dim=0)
    theirs_zeros = (theirs == 0).all(dim=2).flatten(0, 1).float().mean(dim=0)
    pooled = (ours_zeros + theirs_zeros) / 2
    bound = 5 * (pooled * (1 - pooled) * 2 / (epochs * 8)).sqrt()
    assert torch.all((ours_zeros - theirs_zeros).abs() <= bound)
    assert pooled[0, 0] > 0.5 and pooled[16, 16] == 0  # corners are often padding, the centre never
