"""Where the local runner's stages run: slots on the CPU or on GPUs, a stage's share of a GPU, its memory cap.

A small net cannot keep a modern GPU busy alone (eager ResNet-20 at batch 128 waits on kernel launches), so several
of its stages train on one GPU at once, each in its own process with its own kernels and CUDA context: a GPU has
`stages_per_gpu` slots, one worker process pinned to each. A stage takes as many slots of one GPU as its share of
the GPU asks for: `resources.gpu_share`, the setting Ray reads, by default a quarter for small nets and a whole GPU
for large ones. So on a machine of 8 GPUs a plan of ResNet-20 stages trains 32 at once, and a VGG-11 stage of the
same plan takes the four slots of one GPU.

Each process on a shared GPU gets a memory cap (`torch.cuda.set_per_process_memory_fraction`), so that one stage
cannot starve its neighbours: its share of the GPU, less a headroom for what the caching allocator does not count
(the process's CUDA context, cuDNN and cuBLAS handles). Everything here is plain arithmetic on indices and bytes,
so that it is tested without a GPU; `ltspec.runners.local` asks torch for the devices and applies the caps.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from ltspec import architectures
from ltspec.plan import Stage

SMALL_NET_GPU_SHARE = 0.25  # four small-net stages keep one GPU busy; one alone leaves it mostly idle
CONTEXT_HEADROOM_BYTES = 1 << 30  # per process, outside its cap: its CUDA context, cuDNN and cuBLAS handles
SHARE_TOLERANCE = 1e-9  # 1 / 0.1 is 10.000000000000002


@dataclass(frozen=True)
class Slot:
    """Room for one stage at a time: one worker process, pinned to `device` (`cpu` or `cuda:N`)."""

    index: int
    device: str


@dataclass(frozen=True)
class Layout:
    """Where a run's stages go: its slots, and each stage's share of a GPU by key (none on a CPU, where every stage
    takes one slot)."""

    slots: tuple[Slot, ...]
    shares: dict[str, float] = field(default_factory=dict)

    @cached_property
    def per_device(self) -> dict[str, int]:
        return dict(Counter(slot.device for slot in self.slots))

    def need(self, stage: Stage, device: str) -> int:
        """The slots of `device` the stage takes."""
        return units(self.shares[stage.key], self.per_device[device]) if self.shares else 1


def gpu_share(arch: str, share: float | None) -> float:
    """The share of a GPU one stage of `arch` asks for, in both runners: the given share (`resources.gpu_share`,
    `--gpu-share`), else a quarter for a small net and a whole GPU for a large one."""
    if share is not None:
        return share
    return SMALL_NET_GPU_SHARE if architectures.is_small(arch) else 1.0


def stages_per_gpu(shares: Iterable[float]) -> int:
    """The slots of each GPU: as many as the smallest share fits (four for 0.25, three for 0.3), at least one."""
    smallest = min(shares, default=1.0)
    return max(1, math.floor(1.0 / smallest + SHARE_TOLERANCE))


def slots(devices: Sequence[str], per_device: int) -> tuple[Slot, ...]:
    """`per_device` slots on each device, numbered across the devices in turn: 8 GPUs at four stages each are 32
    slots, slot i on the (i mod 8)-th GPU, so that the first slots filled spread over the GPUs."""
    return tuple(Slot(index, devices[index % len(devices)]) for index in range(per_device * len(devices)))


def units(share: float, per_device: int) -> int:
    """The slots of one GPU a stage of this share takes, when the GPU has `per_device` slots: enough to hold its
    share (never fewer: a 0.4 share takes two quarter slots), at least one, at most the whole GPU (a stage trains
    on one device, so a share above 1 is a whole GPU here)."""
    return min(per_device, max(1, math.ceil(share * per_device - SHARE_TOLERANCE)))


def memory_fraction(taken: int, per_device: int, total_bytes: int,
                    headroom_bytes: int = CONTEXT_HEADROOM_BYTES) -> float | None:
    """The memory cap of a stage that takes `taken` of a GPU's `per_device` slots, as the fraction of the GPU's
    `total_bytes` that torch's `set_per_process_memory_fraction` takes: its share less one headroom per slot it
    holds, so that the caps and the headrooms of a full GPU add up to the whole. None when the GPU has one slot:
    a stage alone on its GPU needs no cap."""
    if per_device == 1:
        return None
    fraction = taken * (1.0 / per_device - headroom_bytes / total_bytes)
    if fraction <= 0:
        raise ValueError(f"{per_device} stages per GPU do not fit on a GPU of {total_bytes / 2**30:.1f} GiB: each "
                         f"process needs about {headroom_bytes / 2**30:.1f} GiB besides its share for its CUDA "
                         "context; raise `resources.gpu_share` (fewer stages per GPU) or lower `--workers`")
    return fraction


def parse_gpus(text: str) -> tuple[int, ...]:
    """`--gpus 0,2` as the GPU indices (0, 2)."""
    try:
        found = tuple(int(part) for part in text.split(","))
    except ValueError:
        found = ()
    if not found or min(found) < 0:
        raise ValueError(f"--gpus takes GPU indices separated by commas, like `--gpus 0,2`; got `{text}`")
    return found


def gpu_indices(device: str, gpus: Sequence[int] | None, visible: int) -> tuple[int, ...]:
    """The GPUs a run spreads over: those of `--gpus`, else the one `--device cuda:N` names, else every visible
    one. `device` is the resolved device (`cpu`, `cuda`, `cuda:N`); `visible` is how many GPUs torch sees."""
    if not device.startswith("cuda"):
        if gpus:
            raise ValueError(f"--gpus names GPUs, but the run is on `{device}`; drop --gpus, or use --device cuda")
        return ()
    named = int(device.partition(":")[2]) if ":" in device else None
    if gpus and named is not None and tuple(gpus) != (named,):
        raise ValueError(f"--device {device} and --gpus {','.join(map(str, gpus))} name different GPUs; give one "
                         "of them (--device cuda --gpus 0,2 spreads the run over GPUs 0 and 2)")
    chosen = tuple(gpus) if gpus else (named,) if named is not None else tuple(range(visible))
    wrong = [index for index in chosen if index >= visible]
    if wrong or len(set(chosen)) != len(chosen):
        raise ValueError(f"--gpus {','.join(map(str, chosen))}: torch sees {visible} GPU{'s' * (visible != 1)} "
                         f"(indices 0 to {visible - 1}), and each may be named once; CUDA_VISIBLE_DEVICES decides "
                         "which are visible")
    return chosen
