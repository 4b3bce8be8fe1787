"""A loader that serves a split from the device, in seeded epochs that replay exactly.

With the small networks of the paper (VGG-11, ResNet-20, MobileNet-V2 on CIFAR) a GPU waits on the input pipeline
when images are decoded, cropped, flipped and collated on the host one at a time. Here a split moves to the device
once, as uint8; each epoch draws its shuffle and its crops and flips from a generator seeded by (seed, epoch), so any
epoch replays exactly after a restart; and the augmentation is a handful of batched tensor ops with the same
distribution as torchvision's `RandomCrop(32, padding=4)` + `RandomHorizontalFlip()`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from ltspec.data import Split, derive_seed

CROP_PADDING = 4  # pixels of zeros around each image before the random crop, as in the paper's CIFAR recipe


def crop_and_flip(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, padding: int = CROP_PADDING
) -> torch.Tensor:
    """Crop each image of a batch at (top, left) of its zero-padded copy, then mirror those whose flip is set.

    For the same draws this is exactly torchvision's RandomCrop(side, padding) followed by RandomHorizontalFlip()
    on the raw image: zeros are padded in pixel space, before any normalisation. It is one gather over the batch,
    with no loop over images. top and left are in [0, 2 * padding].
    """
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = top[:, None] + torch.arange(height, device=images.device)
    columns = torch.arange(width, device=images.device)
    columns = torch.where(flip[:, None], columns.flip(0), columns) + left[:, None]
    index = rows[:, :, None] * (width + 2 * padding) + columns[:, None, :]
    index = index.view(batch, 1, height * width).expand(batch, channels, height * width)
    return padded.flatten(2).gather(2, index).view(batch, channels, height, width)


class DeviceLoader:
    """Serves one split from the device in seeded, replayable epochs.

    The split moves to the device once. epoch(e) draws the whole epoch's permutation and augmentation up front from
    a generator seeded by (seed, e), so epoch e gives the same batches whenever it is asked for, as a run resumed
    after a crash needs. Batches come out as normalised float32 inputs and int64 labels, with no host sync.
    """

    def __init__(
        self,
        split: Split,
        *,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool,
        shuffle: bool,
        seed: int,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
        channels_last: bool = False,
    ) -> None:
        if (augment or channels_last) and split.x.dim() != 4:
            raise ValueError(f"augment and channels_last need (N, C, H, W) images, got shape {tuple(split.x.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = torch.device(device)
        self.x = split.x.to(self.device)
        self.y = split.y.to(self.device)
        self.batch_size = batch_size
        self.augment = augment
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.channels_last = channels_last
        # (x / unit - mean) / std as a multiply and an add: x * scale + shift.
        unit = 255.0 if self.x.dtype == torch.uint8 else 1.0
        per_channel = (1, -1) + (1,) * (self.x.dim() - 2)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=self.device).view(per_channel)
        std_t = torch.tensor(std, dtype=torch.float32, device=self.device).view(per_channel)
        self.scale = 1.0 / (unit * std_t)
        self.shift = -mean_t / std_t

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.y) // self.batch_size
        return math.ceil(len(self.y) / self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = len(self.y)
        generator = torch.Generator(device=self.device).manual_seed(derive_seed(self.seed, "epoch", epoch))
        if self.shuffle:
            order = torch.randperm(count, generator=generator, device=self.device)
        else:
            order = torch.arange(count, device=self.device)
        if self.augment:
            top, left = torch.randint(0, 2 * CROP_PADDING + 1, (2, count), generator=generator, device=self.device)
            flip = torch.rand(count, generator=generator, device=self.device) < 0.5
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            positions = slice(start, start + self.batch_size)
            x = self.x[order[positions]]
            if self.augment:
                x = crop_and_flip(x, top[positions], left[positions], flip[positions])
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            # In place: x is the batch's own copy (indexing copies), and mul_ + add_ beat addcmul on CPU.
            yield x.float().mul_(self.scale).add_(self.shift), self.y[order[positions]]
