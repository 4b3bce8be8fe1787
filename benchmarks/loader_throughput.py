"""Images per second of DeviceLoader against torchvision's usual CIFAR input pipeline.

Both serve the same CIFAR-shaped synthetic images as normalised float batches on the device, with a random crop
(4-pixel zero padding) and a random horizontal flip. The baseline is what a CIFAR training script usually runs: a
Dataset that hands out PIL images, transforms.Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(),
Normalize(mean, std)]), and a DataLoader with num_workers 0 and 2. Run by hand:

    python benchmarks/loader_throughput.py [--images 10000] [--batch-size 128] [--device cuda] [--threads 1]
"""

import argparse
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms

from ltspec.data import Split, load_dataset
from ltspec.loader import CROP_PADDING, DeviceLoader


class PilImages(torch.utils.data.Dataset):
    """Hands out one PIL image at a time, as torchvision.datasets.CIFAR10 does."""

    def __init__(self, split: Split, transform) -> None:
        self.images = split.x.permute(0, 2, 3, 1).numpy()
        self.labels = split.y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def images_per_second(batches, count: int, device: torch.device) -> float:
    """Drains one epoch of batches onto the device and times it, waiting for the device at the end."""
    start = time.perf_counter()
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads of this process")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    device = torch.device(arguments.device)
    dataset = load_dataset("synthetic", root=".", synthetic_size=(arguments.images, 1))
    count = len(dataset.train)

    loader = DeviceLoader(
        dataset.train, batch_size=arguments.batch_size, mean=dataset.mean, std=dataset.std,
        augment=True, shuffle=True, seed=0, device=device,
    )
    images_per_second(loader.epoch(0), count, device)  # warm-up
    ours = images_per_second(loader.epoch(1), count, device)
    print(f"{device}, {count} images of 3x32x32, batch {arguments.batch_size}, {torch.get_num_threads()} torch threads")
    print(f"DeviceLoader, crop+flip on {device.type}:       {ours:12,.0f} images/s")

    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=CROP_PADDING),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(dataset.mean, dataset.std),
    ])
    for workers in (0, 2):
        baseline = DataLoader(
            PilImages(dataset.train, transform), batch_size=arguments.batch_size, shuffle=True,
            num_workers=workers, pin_memory=device.type == "cuda",
        )
        images_per_second(baseline, count, device)  # warm-up
        theirs = images_per_second(baseline, count, device)
        print(f"torchvision DataLoader, num_workers={workers}:  {theirs:12,.0f} images/s   ratio {ours / theirs:5.1f}x")


if __name__ == "__main__":
    main()
