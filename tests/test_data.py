"""Datasets (on their real on-disk formats where they have one), their downloads, splits and stand-ins."""

import contextlib
import hashlib
import http.server
import io
import math
import pickle
import random
import socket
import tarfile
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision.datasets import CIFAR10, CIFAR100

from ltspec import datasets
from ltspec.data import DIGITS, Dataset, Split, load_dataset, stratified_split
from ltspec.datasets import DatasetError
from ltspec.download import unreachable
from ltspec.loader import DeviceLoader

# ---------------------------------------------------------------- CIFAR in its real on-disk format


def _write_pickle(path, content):
    with open(path, "wb") as file:
        pickle.dump(content, file)
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_cifar10(root, per_batch=4, test_size=6):
    """cifar-10-batches-py/ as the archive unpacks it, returning its images, labels and the md5 of each file."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    images, labels, md5s = {}, {}, {}
    for name, count in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test_size)]:
        images[name] = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        labels[name] = rng.integers(0, 10, count).tolist()
        filenames = [f"{i}.png" for i in range(count)]
        batch = {"batch_label": name, "labels": labels[name], "data": images[name], "filenames": filenames}
        md5s[name] = _write_pickle(folder / name, batch)
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    md5s["batches.meta"] = _write_pickle(folder / "batches.meta", meta)
    return images, labels, md5s


def _write_cifar100(root, train_size=10, test_size=5):
    folder = root / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    images, labels, md5s = {}, {}, {}
    for name, count in [("train", train_size), ("test", test_size)]:
        images[name] = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        labels[name] = rng.integers(0, 100, count).tolist()
        coarse = [label // 5 for label in labels[name]]
        batch = {"data": images[name], "fine_labels": labels[name], "coarse_labels": coarse}
        md5s[name] = _write_pickle(folder / name, batch)
    meta = {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]}
    md5s["meta"] = _write_pickle(folder / "meta", meta)
    return images, labels, md5s


def _trust_md5s(monkeypatch, source, md5s):
    """Point torchvision's integrity check at our files' md5s, so that it checks them as it checks the real ones."""
    monkeypatch.setattr(source, "train_list", [[name, md5s[name]] for name, _ in source.train_list])
    monkeypatch.setattr(source, "test_list", [[name, md5s[name]] for name, _ in source.test_list])
    monkeypatch.setattr(source, "meta", {**source.meta, "md5": md5s[source.meta["filename"]]})


def _as_nchw(rows):
    return torch.from_numpy(rows).view(-1, 3, 32, 32)


def test_cifar10_loads_from_its_on_disk_format(tmp_path, monkeypatch):
    images, labels, md5s = _write_cifar10(tmp_path)
    _trust_md5s(monkeypatch, CIFAR10, md5s)
    dataset = load_dataset("cifar10", root=tmp_path)
    train_rows = np.concatenate([images[f"data_batch_{i}"] for i in range(1, 6)])
    assert dataset.train.x.dtype == torch.uint8 and dataset.train.x.shape == (20, 3, 32, 32)
    assert torch.equal(dataset.train.x, _as_nchw(train_rows))
    assert dataset.train.y.dtype == torch.int64
    assert dataset.train.y.tolist() == [label for i in range(1, 6) for label in labels[f"data_batch_{i}"]]
    assert torch.equal(dataset.test.x, _as_nchw(images["test_batch"]))
    assert dataset.test.y.tolist() == labels["test_batch"]
    assert (dataset.num_classes, dataset.in_channels, dataset.input_size) == (10, 3, 32)
    assert dataset.augmentable and dataset.validation is None
    assert dataset.mean == pytest.approx((0.4914, 0.4822, 0.4465))
    assert dataset.std == pytest.approx((0.2470, 0.2435, 0.2616))


def test_cifar100_loads_fine_labels(tmp_path, monkeypatch):
    images, labels, md5s = _write_cifar100(tmp_path)
    _trust_md5s(monkeypatch, CIFAR100, md5s)
    dataset = load_dataset("cifar100", root=tmp_path, validation_split=0.2)
    assert dataset.num_classes == 100
    assert len(dataset.train) == 8 and len(dataset.validation) == 2
    assert torch.equal(dataset.test.x, _as_nchw(images["test"]))
    assert dataset.test.y.tolist() == labels["test"]


def test_missing_cifar_names_its_folder_and_the_download_flag(tmp_path):
    with pytest.raises(DatasetError) as error:
        load_dataset("cifar10", root=tmp_path, download=False)
    assert str(tmp_path / "cifar-10-batches-py") in str(error.value)
    assert "data.download" in str(error.value)


def test_cifar_files_that_fail_the_md5_check_are_an_error(tmp_path):
    _write_cifar10(tmp_path)  # torchvision still expects the real files' md5s
    with pytest.raises(DatasetError, match="corrupted"):
        load_dataset("cifar10", root=tmp_path)


def test_the_download_urls_are_torchvisions():
    """ltspec downloads from its dataset table's URL (so that a test can point it elsewhere); it must stay the one
    torchvision knows the archive's md5 for."""
    assert datasets.info("cifar10").download_url == CIFAR10.url
    assert datasets.info("cifar100").download_url == CIFAR100.url


@contextlib.contextmanager
def serving(content: bytes):
    """A real HTTP server on this machine that answers every GET with `content`; yields its URL for the archive."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/cifar-10-python.tar.gz"
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_download_unpacks_into_the_root_at_once_and_keeps_no_archive(tmp_path, monkeypatch):
    source = tmp_path / "made"
    source.mkdir()
    images, _, md5s = _write_cifar10(source)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    _trust_md5s(monkeypatch, CIFAR10, md5s)
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive.getvalue()).hexdigest())
    root = tmp_path / "data" / "cifar"
    with serving(archive.getvalue()) as url:
        monkeypatch.setitem(datasets.DATASETS, "cifar10", replace(datasets.info("cifar10"), download_url=url))
        dataset = load_dataset("cifar10", root=root, download=True)
    assert torch.equal(dataset.test.x, _as_nchw(images["test_batch"]))
    assert sorted(path.name for path in root.iterdir()) == ["cifar-10-batches-py"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data", "made"]  # no temporary folder left


@pytest.mark.parametrize("where", ["served-garbage", "closed-port", "no-such-host"])
def test_a_failed_download_writes_nothing_and_says_how_to_run_offline(tmp_path, monkeypatch, where):
    """A download that cannot finish (an archive that fails its md5, a host that refuses or does not exist) leaves
    no folder behind, not even an empty one, and says where the files go and which flag to set."""
    root = tmp_path / "data"
    with serving(b"not an archive") as served:
        url = {"served-garbage": served,
               "closed-port": f"http://127.0.0.1:{closed_port()}/cifar-10-python.tar.gz",
               "no-such-host": "https://ltspec-test.invalid/cifar-10-python.tar.gz"}[where]  # RFC 2606: never resolves
        monkeypatch.setitem(datasets.DATASETS, "cifar10", replace(datasets.info("cifar10"), download_url=url))
        with pytest.raises(DatasetError) as error:
            load_dataset("cifar10", root=root, download=True)
    message = str(error.value)
    assert "cifar10" in message and str(root) in message and "data.download = false" in message, message
    assert url in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_a_host_is_unreachable_when_nothing_answers_and_reachable_when_something_listens(monkeypatch):
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    with serving(b"") as url:
        assert unreachable(url) is None
    assert "refused" in unreachable(f"http://127.0.0.1:{closed_port()}/x")
    assert "ltspec-test.invalid" in unreachable("https://ltspec-test.invalid/x", timeout=3.0)


def test_a_host_behind_a_proxy_is_reached_through_it(monkeypatch):
    """urllib, which downloads, goes through the proxy the environment names, so the check does too."""
    port = closed_port()
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    reason = unreachable("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")
    assert reason is not None and f"proxy 127.0.0.1:{port}" in reason and "refused" in reason
    with serving(b"") as url:
        monkeypatch.setenv("https_proxy", url.rsplit("/", 1)[0])
        assert unreachable("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz") is None


# ---------------------------------------------------------------- Tiny ImageNet in class folders


def _write_image_folder(folder, classes, per_class, rng, subfolder=""):
    pixels = {}
    for name in classes:
        (folder / name / subfolder).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(image).save(folder / name / subfolder / f"{name}_{i}.png")
            pixels[(name, i)] = image
    return pixels


def test_tiny_imagenet_loads_train_and_val_class_folders(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "tiny-imagenet-200"
    train_pixels = _write_image_folder(base / "train", ["n01", "n02"], 3, rng, subfolder="images")
    _write_image_folder(base / "val", ["n01", "n02"], 2, rng)
    dataset = load_dataset("tiny-imagenet", root=tmp_path)
    assert dataset.train.x.shape == (6, 3, 64, 64) and dataset.train.x.dtype == torch.uint8
    assert dataset.test.x.shape == (4, 3, 64, 64)
    assert dataset.train.y.tolist() == [0, 0, 0, 1, 1, 1] and dataset.test.y.tolist() == [0, 0, 1, 1]
    assert torch.equal(dataset.train.x[4], torch.from_numpy(train_pixels[("n02", 1)]).permute(2, 0, 1))
    assert (dataset.num_classes, dataset.input_size, dataset.augmentable) == (200, 64, True)  # the entry's facts
    stacked = np.stack(list(train_pixels.values())) / 255
    assert dataset.mean == pytest.approx(tuple(stacked.mean(axis=(0, 1, 2))))
    assert dataset.std == pytest.approx(tuple(stacked.std(axis=(0, 1, 2))))


def test_tiny_imagenet_val_as_unpacked_is_an_error_that_explains_the_layout(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "tiny-imagenet-200"
    _write_image_folder(base / "train", ["n01", "n02"], 1, rng, subfolder="images")
    _write_image_folder(base / "val", ["images"], 2, rng)
    with pytest.raises(DatasetError, match="class folders"):
        load_dataset("tiny-imagenet", root=tmp_path)


def test_missing_tiny_imagenet_says_to_fetch_it_by_hand(tmp_path):
    with pytest.raises(DatasetError, match="by hand") as error:
        load_dataset("tiny-imagenet", root=tmp_path)
    assert str(tmp_path / "tiny-imagenet-200") in str(error.value)


# ---------------------------------------------------------------- datasets generated or shipped offline


def test_digits_is_a_seeded_stratified_uint8_split():
    dataset = load_dataset("digits", root="unused", seed=3)
    assert dataset.train.x.shape == (1437, 1, 8, 8) and dataset.test.x.shape == (360, 1, 8, 8)
    assert dataset.train.x.dtype == torch.uint8 and dataset.train.y.dtype == torch.int64
    assert int(dataset.train.x.max()) == 255 and int(dataset.train.x.min()) == 0
    assert (dataset.num_classes, dataset.in_channels, dataset.input_size, dataset.augmentable) == (10, 1, 8, False)
    train_counts, test_counts = dataset.train.y.bincount(minlength=10), dataset.test.y.bincount(minlength=10)
    train_share = train_counts / (train_counts + test_counts)
    assert torch.all((train_share - 0.8).abs() < 0.02)  # stratified: every class splits 80/20
    again, other = load_dataset("digits", root="unused", seed=3), load_dataset("digits", root="unused", seed=4)
    assert torch.equal(again.test.x, dataset.test.x) and torch.equal(again.test.y, dataset.test.y)
    assert not torch.equal(other.test.x, dataset.test.x)


def test_mnist1d_is_generated_locally_and_leaves_global_randomness_alone():
    np.random.seed(7)
    random.seed(7)
    dataset = load_dataset("mnist1d", root="unused")
    after = (np.random.rand(), random.random())
    np.random.seed(7)
    random.seed(7)
    assert after == (np.random.rand(), random.random())
    assert dataset.train.x.shape == (4000, 1, 40) and dataset.test.x.shape == (1000, 1, 40)
    assert dataset.train.x.dtype == torch.float32 and dataset.train.y.dtype == torch.int64
    assert (dataset.num_classes, dataset.in_channels, dataset.input_size, dataset.augmentable) == (10, 1, 40, False)
    assert dataset.mean == pytest.approx((dataset.train.x.double().mean().item(),))


def test_synthetic_is_seeded_and_shaped_as_asked():
    asked = {"root": "unused", "synthetic_shape": (3, 16, 16), "synthetic_size": (40, 24), "synthetic_classes": 5}
    dataset = load_dataset("synthetic", **asked)
    assert dataset.train.x.shape == (40, 3, 16, 16) and dataset.test.x.shape == (24, 3, 16, 16)
    assert dataset.train.x.dtype == torch.uint8 and dataset.train.y.dtype == torch.int64
    assert set(dataset.train.y.tolist()) <= set(range(5))
    assert (dataset.num_classes, dataset.in_channels, dataset.input_size) == (5, 3, 16)
    same, other = load_dataset("synthetic", **asked), load_dataset("synthetic", **asked, seed=1)
    assert torch.equal(same.train.x, dataset.train.x) and torch.equal(same.test.y, dataset.test.y)
    assert not torch.equal(other.train.x, dataset.train.x)
    signals = load_dataset("synthetic", root="unused", synthetic_shape=(2, 40))
    assert signals.train.x.shape == (256, 2, 40) and (signals.in_channels, signals.input_size) == (2, 40)


def test_synthetic_labels_can_be_learned():
    dataset = load_dataset("synthetic", root="unused")
    normalise = {"mean": dataset.mean, "std": dataset.std, "augment": False, "seed": 0}
    train = DeviceLoader(dataset.train, batch_size=32, shuffle=True, **normalise)
    test_x, test_y = next(DeviceLoader(dataset.test, batch_size=128, shuffle=False, **normalise).epoch(0))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for x, y in train.epoch(0):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    assert (model(test_x).argmax(dim=1) == test_y).float().mean() > 0.5  # chance is 0.1


def test_validation_is_a_seeded_disjoint_part_of_train(tmp_path, monkeypatch):
    _trust_md5s(monkeypatch, CIFAR10, _write_cifar10(tmp_path)[2])
    full = load_dataset("cifar10", root=tmp_path)
    dataset = load_dataset("cifar10", root=tmp_path, validation_split=0.25, seed=5)

    def fingerprints(split):
        return [(bytes(image.numpy()), int(label)) for image, label in zip(split.x, split.y)]

    train, validation = fingerprints(dataset.train), fingerprints(dataset.validation)
    assert len(train) == 15 and len(validation) == 5
    assert not set(train) & set(validation)
    assert sorted(train + validation) == sorted(fingerprints(full.train))
    assert torch.equal(dataset.test.x, full.test.x)
    assert fingerprints(load_dataset("cifar10", root=tmp_path, validation_split=0.25, seed=5).validation) == validation
    other_seed = load_dataset("cifar10", root=tmp_path, validation_split=0.25, seed=6)
    assert set(fingerprints(other_seed.validation)) != set(validation)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"name": "imagenet"}, "unknown dataset"),
        ({"name": "synthetic", "validation_split": 1.0}, "validation_split"),
        ({"name": "synthetic", "synthetic_size": (2, 2), "validation_split": 0.1}, "leaves 0 of 2"),
        ({"name": "digits", "num_classes": 7}, "10 classes"),
        ({"name": "synthetic", "synthetic_shape": (32,)}, "synthetic_shape"),
    ],
)
def test_bad_requests_are_dataset_errors(arguments, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(root="unused", **arguments)


def test_the_packaged_digits_are_scikit_learns():
    from sklearn.datasets import load_digits as scikit_learn_digits

    digits = scikit_learn_digits()
    with np.load(DIGITS) as stored:
        assert np.array_equal(stored["images"], digits.images) and np.array_equal(stored["labels"], digits.target)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), fraction=st.sampled_from([0.1, 0.2, 0.25, 0.5]),
       counts=st.lists(st.integers(2, 40), min_size=2, max_size=12))
def test_the_stratified_split_is_scikit_learns_draw_for_draw(seed, fraction, counts):
    from sklearn.model_selection import train_test_split

    labels = np.random.RandomState(seed).permutation(np.repeat(np.arange(len(counts)), counts))
    indices = np.arange(len(labels))
    test_size = math.ceil(fraction * len(labels))
    assume(min(test_size, len(labels) - test_size) >= len(counts))  # scikit-learn refuses fewer than one per class
    expected_train, expected_test = train_test_split(indices, test_size=fraction, stratify=labels, random_state=seed)
    train, test = stratified_split(labels, fraction, seed)
    assert np.array_equal(train, expected_train) and np.array_equal(test, expected_test)


def test_a_dataset_states_its_facts_once_in_its_entry_and_its_splits_must_match_them():
    """Classes, input shape and augmentation come from the dataset's entry (`ltspec.datasets`), never a second time
    from its loader; splits of another shape, or labels past its classes, are refused."""
    entry = datasets.info("digits")
    x, y = torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 2, 9])
    dataset = Dataset(entry, Split(x, y), Split(x, y), None, (0.5,), (0.3,))
    assert (dataset.name, dataset.num_classes, dataset.in_channels, dataset.input_size, dataset.augmentable) == \
        ("digits", 10, 1, 8, False)
    with pytest.raises(DatasetError, match=r"shape \(1, 8, 9\), but its entry says \(1, 8, 8\)"):
        Dataset(entry, Split(torch.zeros(4, 1, 8, 9), y), Split(x, y), None, (0.5,), (0.3,))
    with pytest.raises(DatasetError, match="labels outside 0..9"):
        Dataset(entry, Split(x, torch.tensor([0, 1, 2, 10])), Split(x, y), None, (0.5,), (0.3,))
