"""Wall time of one lottery-ticket experiment in ltspec against the same experiment in OpenLTH.

    git clone https://github.com/facebookresearch/open_lth /somewhere/open_lth
    python benchmarks/openlth.py --openlth /somewhere/open_lth [--rounds 1] [--epochs 12] [--openlth-data both]

The experiment: LeNet-300-100 on the 8x8 digits (ltspec's copy and its train/test split, 1437 / 360), trained dense,
then 3 levels of iterative magnitude pruning at 50% under one global threshold, each level's ticket retrained from
the original initialisation (lottery arm), and a random reinitialisation trained on each of the 3 masks (reinit
arm): 7 trainings of `--epochs` epochs on either side, batch 64, SGD lr 0.01, momentum 0.9, weight decay 5e-4, lr
x0.1 after 8 of 12 epochs, a test evaluation after every epoch.

A: `python -m ltspec run SPEC --device cpu` on a spec this file writes, in a fresh folder each round (new result
   store, new MLflow store), with the default runner options (one intra-op thread per stage).
B: OpenLTH, from `--openlth` (a checkout of https://github.com/facebookresearch/open_lth), copied to a temporary
   folder and patched there (below), run in a process of its own by this file with a hidden flag: `lottery
   --levels 3` (the dense run and 3 levels, each retrained from init), then `lottery_branch randomly_reinitialize
   --levels 1-3`, the two commands one after the other in that one process (so B pays for one interpreter and one
   torch import where its two CLI commands would pay for two), with one intra-op thread (`torch.set_num_threads(1)`,
   its fastest setting for this net, see benchmarks/threads.py), writing under the temporary folder. B runs twice
   per round, with the digits registered in two ways:
   - images: as OpenLTH serves MNIST and CIFAR-10, an `ImageDataset` whose every example becomes a PIL image, then
     `ToTensor` and `Normalize` (the training split's mean and std, as ltspec normalises);
   - tensors: the lightest registration its `Dataset` class allows, float32 arrays normalised once, which its
     DataLoader only indexes and collates. This is OpenLTH's training loop without the per-example transforms.
Each is timed as a whole process, imports included, alternating A B B' A B B' for `--rounds` rounds; each ratio,
OpenLTH's time over ltspec's, is the median of the per-round ratios. Goal: at least 1.5x. Before anything is
printed, every round's outputs are checked to show the same work on all sides (7 trainings of `--epochs` epochs,
both arms at every level, the same weights kept at every level up to one per level of rounding), and the table
shows the last level's test accuracies of the last round as a sanity check.

The patches, applied to the temporary copy only (no OpenLTH code is kept in this repository), each checked to
match exactly once:
1. training/optimizers.py: the lr schedule multiplies its factors with `np.product`, an alias NumPy 2.0 removed;
   building the first LambdaLR fails with AttributeError. It becomes `np.prod`.
2. models/base.py: `class Model(abc.ABC, torch.nn.Module)`, and the same file subclasses it together with torch's
   DistributedDataParallel, which in current torch derives from Module then `Joinable`, an ABC: no consistent
   method order exists, so importing any model fails with TypeError (MRO). The bases swap to
   `(torch.nn.Module, abc.ABC)`, which changes nothing else (ABC only contributes its metaclass).
Nothing else in the files is changed. At run time, in B's process, this file also registers the digits in
`datasets.registry` (reading the arrays `ltspec.data.load_dataset("digits")` gives, exported once before any
timing), adds a `digits_lenet_300_100` model (OpenLTH's `mnist_lenet` with 64 inputs: its first layer is fixed at
MNIST's 784), and points the local platform's `root` at the temporary folder (it is `~/open_lth_data`). With these
two patches OpenLTH runs offline on torch 2.14 and NumPy 2.4 (its MNIST and CIFAR-10 datasets, which download, are
not used); its torch.load calls read only tensors, plain containers and strings, so torch's `weights_only=True`
default needs no patch.

Settings matched. Pruning: ltspec's IMP with `scope = "global"` pools the weights of hidden1, hidden2 and fc (an
MLP has no first conv, which is all ltspec leaves dense by default) under one threshold; OpenLTH's `sparse_global`
runs without `--pruning_layers_to_ignore`, so it pools the same three tensors (its `mnist_lenet` defaults leave
fc.weight out), and both prune weights only, never biases. Recipe: the same batch size, optimizer, lr, momentum,
weight decay, step schedule (OpenLTH's `--milestone_steps 8ep --gamma 0.1`) and epochs. Remaining differences,
none of which changes the amount of work:
- counts: ltspec prunes round(0.5 k) of the k weights still kept; OpenLTH prunes every weight at or below the
  ceil(0.5 k)-th smallest magnitude, one more, so it keeps 25,099 / 12,548 / 6,273 of the 50,200 weights where
  ltspec keeps 25,100 / 12,550 / 6,275;
- initialisation: both draw Kaiming-normal weights (fan-in, ReLU gain), but ltspec zeroes the biases where OpenLTH
  keeps PyTorch's uniform ones, and OpenLTH draws from torch's unseeded global generator, so its weights, and its
  accuracies, change from run to run; ltspec's are seeded. Accuracies therefore agree only roughly;
- data order: both reshuffle every epoch from a seeded generator (OpenLTH `--data_order_seed 0`), each its own;
- per epoch, OpenLTH also writes a checkpoint (model and optimizer) and evaluates once more, before the first
  epoch; ltspec checkpoints by its time policy, logs every stage to MLflow, and adds one `evaluate trained*mask`
  stage per level (a single test pass);
- the digits arrays are exported for B outside its timing (milliseconds); A loads its own. ltspec's MLflow store
  template is built once per machine in ~/.cache/ltspec, as for any user.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EPOCHS = 12
BATCH_SIZE = 64
LR = 0.01
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
GAMMA = 0.1
RATE = 0.5
LEVELS = 3

SPEC = """\
name = "openlth-benchmark"
description = "LeNet-300-100 on digits: 3 rounds of 50% global IMP, lottery and reinit arms"
seeds = [0]

[data]
dataset = "digits"
batch_size = {batch_size}
augmentation = "none"

[model]
arch = "lenet300100"

[train]
epochs = {epochs}
lr = {lr}
optimizer = {{ kind = "sgd", momentum = {momentum}, weight_decay = {weight_decay} }}
schedule = {{ kind = "step", milestones = [{milestone}], gamma = {gamma} }}

[masks.imp]
kind = "imp"
scope = "global"
rate = {rate}
rounds = {levels}

[arms]
lottery = {{ start = "init" }}
reinit = {{ start = "reinit" }}
"""

# (file, old text, new text): each must occur exactly once in the checkout.
PATCHES = [
    ("training/optimizers.py", "np.product(", "np.prod("),
    ("models/base.py", "class Model(abc.ABC, torch.nn.Module):", "class Model(torch.nn.Module, abc.ABC):"),
]


def milestone(epochs: int) -> int:
    """The epoch after which the lr drops: 8 of 12 (two thirds), always inside the training."""
    return min(epochs - 1, max(1, round(epochs * 2 / 3)))


def openlth_arguments(epochs: int) -> list[list[str]]:
    """The two OpenLTH commands: the lottery run (dense + 3 IMP levels), then the reinit branch on levels 1-3."""
    common = [
        "--model_name", "digits_lenet_300_100", "--model_init", "kaiming_normal", "--batchnorm_init", "uniform",
        "--dataset_name", "digits", "--batch_size", str(BATCH_SIZE),
        "--optimizer_name", "sgd", "--lr", str(LR), "--momentum", str(MOMENTUM), "--weight_decay", str(WEIGHT_DECAY),
        "--training_steps", f"{epochs}ep", "--milestone_steps", f"{milestone(epochs)}ep", "--gamma", str(GAMMA),
        "--data_order_seed", "0",
        "--pruning_strategy", "sparse_global", "--pruning_fraction", str(RATE),
        "--quiet",
    ]
    return [["lottery", *common, "--levels", str(LEVELS)],
            ["lottery_branch", "randomly_reinitialize", *common, "--levels", f"1-{LEVELS}"]]


def prepare_openlth(checkout: Path, tree: Path) -> None:
    """Copy the checkout to `tree` (without .git) and apply PATCHES there."""
    if not (checkout / "open_lth.py").is_file():
        sys.exit(f"{checkout} is not an OpenLTH checkout (no open_lth.py); "
                 "git clone https://github.com/facebookresearch/open_lth")
    shutil.copytree(checkout, tree, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    for name, old, new in PATCHES:
        path = tree / name
        text = path.read_text()
        if text.count(old) != 1:
            sys.exit(f"cannot patch {name}: {old!r} occurs {text.count(old)} times (expected once); "
                     "this OpenLTH checkout differs from the one the patches were written for")
        path.write_text(text.replace(old, new))


def export_digits(path: Path) -> None:
    """ltspec's digits split (the one `ltspec run` trains on) as plain arrays for OpenLTH's dataset."""
    import numpy as np

    from ltspec.data import load_dataset
    from ltspec.stages.context import DATA_SEED

    with tempfile.TemporaryDirectory() as root:
        data = load_dataset("digits", root=root, seed=DATA_SEED)
    np.savez(path, train_x=data.train.x[:, 0].numpy(), train_y=data.train.y.numpy(),
             test_x=data.test.x[:, 0].numpy(), test_y=data.test.y.numpy(),
             mean=np.array(data.mean), std=np.array(data.std))


def run_openlth(tree: str, digits: str, output: str, epochs: int, data: str) -> None:
    """The body of process B: register the digits dataset (`data`: "images" or "tensors") and model, point the
    platform at `output`, run the two commands."""
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, tree)
    import types

    import numpy as np
    import torch.nn as nn
    import torchvision
    from PIL import Image

    import datasets.base
    import datasets.registry
    import models.registry
    import open_lth
    import platforms.local
    from models import mnist_lenet

    arrays = dict(np.load(digits))

    class Split:
        """The split sizes, and the train and test sets of ltspec's digits arrays, for either dataset class."""

        @staticmethod
        def num_train_examples(): return len(arrays["train_y"])

        @staticmethod
        def num_test_examples(): return len(arrays["test_y"])

        @staticmethod
        def num_classes(): return 10

        @classmethod
        def get_train_set(cls, use_augmentation): return cls(arrays["train_x"], arrays["train_y"])

        @classmethod
        def get_test_set(cls): return cls(arrays["test_x"], arrays["test_y"])

    class DigitImages(Split, datasets.base.ImageDataset):
        """Served the way OpenLTH serves MNIST and CIFAR-10: each example a PIL image, then ToTensor, Normalize."""

        def __init__(self, examples, labels):
            normalize = torchvision.transforms.Normalize(mean=arrays["mean"].tolist(), std=arrays["std"].tolist())
            super().__init__(examples, labels, [], [normalize])

        def example_to_image(self, example):
            return Image.fromarray(example)

    class DigitTensors(Split, datasets.base.Dataset):
        """Normalised once up front: the DataLoader only indexes float32 arrays and collates them."""

        def __init__(self, examples, labels):
            scaled = (examples[:, None] / 255.0 - arrays["mean"][0]) / arrays["std"][0]
            super().__init__(scaled.astype(np.float32), labels)

    digits_dataset = {"images": DigitImages, "tensors": DigitTensors}[data]

    class DigitsLeNet(mnist_lenet.Model):
        """OpenLTH's LeNet with 64 inputs (its first layer is fixed at MNIST's 784)."""

        def __init__(self, plan, initializer, outputs=10):
            super().__init__(plan, initializer, outputs)
            self.fc_layers[0] = nn.Linear(8 * 8, plan[0])
            self.fc_layers[0].apply(initializer)

        @staticmethod
        def is_valid_model_name(model_name):
            return mnist_lenet.Model.is_valid_model_name(model_name.replace("digits_", "mnist_", 1))

        @staticmethod
        def get_model_from_name(model_name, initializer, outputs=None):
            return DigitsLeNet([int(n) for n in model_name.split("_")[2:]], initializer, outputs or 10)

    datasets.registry.registered_datasets["digits"] = types.SimpleNamespace(Dataset=digits_dataset,
                                                                            DataLoader=datasets.base.DataLoader)
    models.registry.registered_models.append(DigitsLeNet)
    platforms.local.Platform.root = property(lambda self: output)
    platforms.local.Platform.dataset_root = property(lambda self: output)
    for arguments in openlth_arguments(epochs):
        sys.argv = ["open_lth.py", *arguments]
        open_lth.main()


# ---- what each side did, read from its outputs -------------------------------------------------------------------
# Both readers return {(arm, level): (epochs trained, weights kept, final test accuracy)}, arm "lottery" (level 0 is
# the dense run) or "reinit", so that the two can be compared entry by entry.


def ltspec_outputs(folder: Path) -> dict[tuple[str, int], tuple[int, int, float]]:
    import torch

    records = {path.parent.name: json.loads(path.read_text()) for path in folder.glob("results/*/*/record.json")}
    kept, total = {}, None
    for key, record in records.items():
        if record["kind"] == "mask":
            tensors = torch.load(folder / "results" / key[:2] / key / "mask.pt", weights_only=True)
            kept[key] = (record["config"]["round"], sum(int(mask.sum()) for mask in tensors.values()))
            total = sum(mask.numel() for mask in tensors.values())
    found = {}
    for record in records.values():
        if record["kind"] == "dense":
            arm, (level, count) = "lottery", (0, total)
        elif record["kind"] == "train":
            arm = {"init": "lottery", "reinit": "reinit"}[record["config"]["start"]]
            level, count = kept[record["parents"][1]]
        else:
            continue
        found[arm, level] = (len(record["history"]), count, record["metrics"]["final_test_accuracy"])
    return found


def openlth_outputs(output: Path) -> dict[tuple[str, int], tuple[int, int, float]]:
    found = {}
    for folder in output.glob("lottery_*/replicate_1/level_*/*"):
        level = int(folder.parent.name.removeprefix("level_"))
        arm = "lottery" if folder.name == "main" else "reinit" if "randomly_reinitialize" in folder.name else None
        if arm is None or not (folder / "logger").is_file():
            continue
        # The model is saved at the first and the last step of training: model_ep{E}_it0.pth.
        epochs = max(int(path.name.split("_")[1].removeprefix("ep")) for path in folder.glob("model_ep*_it0.pth"))
        tests = sorted((int(step), float(value)) for name, step, value in
                       (line.split(",") for line in (folder / "logger").read_text().splitlines())
                       if name == "test_accuracy")
        kept = int(json.loads((folder / "sparsity_report.json").read_text())["unpruned"])
        found[arm, level] = (epochs, kept, tests[-1][1])
    return found


def check_same_work(ltspec: dict, openlth: dict, epochs: int) -> None:
    """Both trained the dense net and both arms on every level for `epochs` epochs, at the same sparsities up to
    one weight of rounding per level."""
    expected = {("lottery", 0)} | {(arm, level) for arm in ("lottery", "reinit") for level in range(1, LEVELS + 1)}
    problems = []
    for name, found in (("ltspec", ltspec), ("OpenLTH", openlth)):
        if set(found) != expected:
            problems.append(f"{name} trained {sorted(found)}, expected {sorted(expected)}")
        problems += [f"{name} {arm} level {level}: {found[arm, level][0]} epochs, expected {epochs}"
                     for arm, level in sorted(found) if found[arm, level][0] != epochs]
    for arm, level in sorted(expected & set(ltspec) & set(openlth)):
        if abs(ltspec[arm, level][1] - openlth[arm, level][1]) > level:
            problems.append(f"{arm} level {level}: ltspec kept {ltspec[arm, level][1]} weights, "
                            f"OpenLTH {openlth[arm, level][1]}")
    if problems:
        sys.exit("the two did not do the same work:\n  " + "\n  ".join(problems))


# ---- the benchmark ---------------------------------------------------------------------------------------------


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return elapsed


VARIANTS = {"images": "OpenLTH, PIL images as its MNIST", "tensors": "OpenLTH, arrays normalised once"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openlth", type=Path, help="a checkout of https://github.com/facebookresearch/open_lth")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs of each of the 7 trainings")
    parser.add_argument("--openlth-data", choices=("both", *VARIANTS), default="both",
                        help="which registration of the digits in OpenLTH to time (default: both, see above)")
    parser.add_argument("--run-openlth", nargs=3, metavar=("TREE", "DIGITS", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_openlth:
        run_openlth(*args.run_openlth, args.epochs, args.openlth_data)
        return
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the lr drops once, inside the training)")
    if args.openlth is None:
        parser.error("--openlth PATH is required (git clone https://github.com/facebookresearch/open_lth)")

    variants = list(VARIANTS) if args.openlth_data == "both" else [args.openlth_data]
    walls = {side: [] for side in ["ltspec", *variants]}
    ratios = {variant: [] for variant in variants}
    with tempfile.TemporaryDirectory(prefix="openlth-benchmark-") as scratch:
        scratch = Path(scratch)
        tree, digits, spec = scratch / "open_lth", scratch / "digits.npz", scratch / "spec.toml"
        prepare_openlth(args.openlth.resolve(), tree)
        export_digits(digits)
        spec.write_text(SPEC.format(batch_size=BATCH_SIZE, epochs=args.epochs, lr=LR, momentum=MOMENTUM,
                                    weight_decay=WEIGHT_DECAY, milestone=milestone(args.epochs), gamma=GAMMA,
                                    rate=RATE, levels=LEVELS))
        for _ in range(args.rounds):
            outputs = {}
            for side in walls:
                folder = scratch / side
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                if side == "ltspec":
                    command = [sys.executable, "-m", "ltspec", "run", str(spec), "--device", "cpu"]
                else:
                    command = [sys.executable, __file__, "--epochs", str(args.epochs), "--openlth-data", side,
                               "--run-openlth", str(tree), str(digits), str(folder)]
                walls[side].append(timed(command, folder))
                outputs[side] = ltspec_outputs(folder) if side == "ltspec" else openlth_outputs(folder)
            for variant in variants:
                check_same_work(outputs["ltspec"], outputs[variant], args.epochs)
                ratios[variant].append(walls[variant][-1] / walls["ltspec"][-1])

    ltspec = outputs["ltspec"]
    print(f"LeNet-300-100 on digits, dense + {LEVELS} levels of {RATE:.0%} global IMP, lottery and reinit arms: "
          f"{len(ltspec)} trainings of {args.epochs} epochs on every side; median of {args.rounds} round(s)")
    rows = [("ltspec run (fresh stores)", walls["ltspec"], [1.0], ltspec)]
    rows += [(VARIANTS[variant] + ", 1 thread", walls[variant], ratios[variant], outputs[variant])
             for variant in variants]
    width = max(len(row[0]) for row in rows)
    print(f"{'':{width}} {'wall':>8}  {'ratio':>6}   last level's test accuracy, lottery / reinit")
    for label, wall, ratio, found in rows:
        print(f"{label:{width}} {statistics.median(wall):6.1f} s  {statistics.median(ratio):5.2f}x   "
              f"{found['lottery', LEVELS][2]:.3f} / {found['reinit', LEVELS][2]:.3f}")
    if args.rounds > 1:
        for variant in variants:
            print(f"per-round ratios, {variant:8} " + ", ".join(f"{ratio:.2f}x" for ratio in ratios[variant]))
    for side in walls:
        kept = " / ".join(str(outputs[side]["lottery", level][1]) for level in range(LEVELS + 1))
        print(f"weights kept per level, {side:8} {kept}")
    print("ratio: OpenLTH's wall time over ltspec's, the median of the per-round ratios; goal: at least 1.5x")


if __name__ == "__main__":
    main()
