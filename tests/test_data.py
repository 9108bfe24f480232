"""Datasets by name, each on tiny files the test writes itself in the formats resx reads:
torchvision's CIFAR pickles, gzipped IDX files (MNIST, Fashion-MNIST), an ImageFolder of JPEGs, synthetic.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import resx.data
from resx.data import load_dataset, normalize, random_crop_flip, resolve_data_dir
from resx.data.sources import MNIST_LIKE
from resx.errors import ResxError


# --- writers for the on-disk formats ------------------------------------------------------------------------


def write_pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def cifar_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, per_batch: int = 4) -> dict:
    """torchvision's cifar-10-batches-py: data_batch_1..5, test_batch, batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    truth = {"train_data": [], "train_labels": []}
    for i in range(1, 6):
        data, labels = cifar_images(per_batch, i), [(i + j) % 10 for j in range(per_batch)]
        write_pickle(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5", "data": data, "labels": labels})
        truth["train_data"].append(data)
        truth["train_labels"] += labels
    truth["test_data"], truth["test_labels"] = cifar_images(per_batch, 99), [9, 8, 7, 6][:per_batch]
    write_pickle(folder / "test_batch", {"data": truth["test_data"], "labels": truth["test_labels"]})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    write_pickle(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": per_batch})
    truth["train_data"] = np.concatenate(truth["train_data"])
    truth["classes"] = names
    return truth


def write_cifar100(root: Path) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    names = [f"fine{i}" for i in range(100)]
    train, test = cifar_images(6, 1), cifar_images(3, 2)
    write_pickle(folder / "train", {"data": train, "fine_labels": [0, 1, 2, 97, 98, 99], "coarse_labels": [0] * 6})
    write_pickle(folder / "test", {"data": test, "fine_labels": [5, 50, 99], "coarse_labels": [0] * 3})
    write_pickle(folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"c{i}" for i in range(20)]})
    return {"train": train, "test": test, "classes": names}


def write_idx(path: Path, array: np.ndarray) -> None:
    """LeCun's IDX format: 0x0000, type 0x08 (unsigned byte), ndim, big-endian dims, then the bytes; gzipped."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_mnist_like(folder: Path, seed: int = 0) -> dict:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    truth = {
        "train_images": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "train_labels": np.array([0, 1, 2, 3, 9], dtype=np.uint8),
        "test_images": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "test_labels": np.array([4, 5, 6], dtype=np.uint8),
    }
    write_idx(folder / "train-images-idx3-ubyte.gz", truth["train_images"])
    write_idx(folder / "train-labels-idx1-ubyte.gz", truth["train_labels"])
    write_idx(folder / "t10k-images-idx3-ubyte.gz", truth["test_images"])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", truth["test_labels"])
    return truth


def write_jpeg(path: Path, color: tuple[int, int, int], size: int = 8) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path, format="JPEG", quality=95)


COLORS = {"cat": (250, 10, 10), "dog": (10, 10, 250)}


def write_imagefolder(root: Path) -> Path:
    for split, count in (("train", 2), ("test", 1)):
        for cls, color in COLORS.items():
            for i in range(count):
                write_jpeg(root / split / cls / f"{i}.jpg", color)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")  # ignored
    return root


@pytest.fixture
def data_dir() -> Path:
    return resolve_data_dir()  # $RESX_DATA, set per test by conftest


# --- datasets by name -------------------------------------------------------------------------------------------


def test_data_dir_comes_from_environment(tmp_path):
    assert resolve_data_dir() == tmp_path / "data"
    assert resolve_data_dir(tmp_path / "elsewhere") == tmp_path / "elsewhere"


def test_cifar10(data_dir):
    truth = write_cifar10(data_dir)
    data = load_dataset("cifar10")
    assert data.train_images.shape == (20, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (4, 3, 32, 32) and data.test_images.dtype == torch.uint8
    assert data.train_labels.dtype == torch.int64 and data.test_labels.dtype == torch.int64
    assert data.train_labels.tolist() == truth["train_labels"]
    assert data.test_labels.tolist() == truth["test_labels"]
    # CIFAR rows are 1024 red, 1024 green, 1024 blue values, row-major
    assert np.array_equal(data.train_images.reshape(20, -1).numpy(), truth["train_data"])
    assert data.classes == truth["classes"] and data.num_classes == 10
    assert data.augment is True  # He et al. 2015 §4.2 augment CIFAR
    assert data.model_options == {"num_classes": 10, "in_channels": 3, "input_size": 32}
    assert len(data.mean) == len(data.std) == 3


def test_cifar100(data_dir):
    truth = write_cifar100(data_dir)
    data = load_dataset("cifar100")
    assert data.train_images.shape == (6, 3, 32, 32) and data.test_images.shape == (3, 3, 32, 32)
    assert data.train_labels.tolist() == [0, 1, 2, 97, 98, 99]
    assert data.test_labels.tolist() == [5, 50, 99]
    assert np.array_equal(data.test_images.reshape(3, -1).numpy(), truth["test"])
    assert data.classes == truth["classes"] and data.num_classes == 100


@pytest.mark.parametrize("name, folder", [("fashion-mnist", "FashionMNIST"), ("mnist", "MNIST")])
def test_mnist_like(data_dir, name, folder):
    raw = data_dir / folder / "raw"
    truth = write_mnist_like(raw)
    data = load_dataset(name)
    # the data dir is searched before the system copy (/usr/share/datasets/fashion-mnist on Debian)
    assert Path(data.source) == raw
    assert data.train_images.shape == (5, 1, 28, 28) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (3, 1, 28, 28)
    assert np.array_equal(data.train_images[:, 0].numpy(), truth["train_images"])
    assert data.train_labels.tolist() == [0, 1, 2, 3, 9] and data.train_labels.dtype == torch.int64
    assert data.test_labels.tolist() == [4, 5, 6]
    assert data.num_classes == 10 and data.channels == 1
    assert data.augment is False
    if name == "fashion-mnist":
        assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"


def test_fashion_mnist_in_named_folder(data_dir):
    """The second place searched: DATA_DIR/fashion-mnist (ungzipped files work too)."""
    folder = data_dir / "fashion-mnist"
    write_mnist_like(folder, seed=3)
    for gz in folder.glob("*.gz"):
        with gzip.open(gz) as f:
            (folder / gz.stem).write_bytes(f.read())
        gz.unlink()
    data = load_dataset("fashion-mnist")
    assert Path(data.source) == folder and data.train_images.shape == (5, 1, 28, 28)


def test_imagefolder(tmp_path):
    root = write_imagefolder(tmp_path / "pets")
    data = load_dataset(f"imagefolder:{root}")
    assert data.classes == ["cat", "dog"]
    assert data.train_images.shape == (4, 3, 8, 8) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (2, 3, 8, 8)
    assert data.train_labels.tolist() == [0, 0, 1, 1] and data.test_labels.tolist() == [0, 1]
    # JPEG is lossy: the colours come back close, not exact
    cat = data.train_images[0].float().mean(dim=(1, 2))
    assert torch.allclose(cat, torch.tensor(COLORS["cat"], dtype=torch.float32), atol=12)
    assert data.augment is True


def test_synthetic_defaults_and_options():
    data = load_dataset("synthetic")
    assert data.train_images.shape == (2048, 3, 16, 16) and data.test_images.shape == (512, 3, 16, 16)
    assert data.num_classes == 10
    small = load_dataset("synthetic:size=8,train=32,test=16,channels=1,classes=4,seed=3")
    assert small.train_images.shape == (32, 1, 8, 8) and small.train_images.dtype == torch.uint8
    assert small.test_images.shape == (16, 1, 8, 8)
    assert small.classes == ["class0", "class1", "class2", "class3"]
    assert small.train_labels.dtype == torch.int64
    assert 0 <= int(small.train_labels.min()) and int(small.train_labels.max()) < 4
    assert small.augment is False


def test_synthetic_is_seeded():
    a = load_dataset("synthetic:size=8,train=32,test=8,seed=1")
    b = load_dataset("synthetic:size=8,train=32,test=8,seed=1")
    c = load_dataset("synthetic:size=8,train=32,test=8,seed=2")
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.train_labels, b.train_labels)
    assert not torch.equal(a.train_images, c.train_images)


def test_synthetic_is_learnable_by_class_template():
    """Images of one class look alike: the class means differ far more than the noise between classes' means."""
    data = load_dataset("synthetic:size=8,train=512,test=8,classes=2")
    x = data.train_images.float()
    means = [x[data.train_labels == k].mean(0) for k in (0, 1)]
    assert (means[0] - means[1]).abs().mean() > 5


# --- the cache ------------------------------------------------------------------------------------------------


def test_cifar_cache_is_written_and_used(data_dir, monkeypatch):
    write_cifar10(data_dir)
    first = load_dataset("cifar10")
    cache_files = list((data_dir / "resx-cache").glob("cifar10-*.pt"))
    assert len(cache_files) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache is there")

    monkeypatch.setattr(resx.data, "read_cifar", no_decoding)
    second = load_dataset("cifar10")
    assert torch.equal(first.train_images, second.train_images)
    assert torch.equal(first.test_labels, second.test_labels)
    assert second.classes == first.classes and second.source == first.source


def test_cifar_cache_follows_changed_files(data_dir):
    write_cifar10(data_dir)
    load_dataset("cifar10")
    batch = data_dir / "cifar-10-batches-py" / "test_batch"
    write_pickle(batch, {"data": cifar_images(4, 5), "labels": [1, 1, 1, 1]})
    os.utime(batch, (1_000_000_000, 1_000_000_000))  # a different time, even within the same second
    assert load_dataset("cifar10").test_labels.tolist() == [1, 1, 1, 1]


def test_corrupt_cache_is_decoded_again(data_dir):
    write_cifar10(data_dir)
    load_dataset("cifar10")
    (cache,) = (data_dir / "resx-cache").glob("cifar10-*.pt")
    cache.write_bytes(b"garbage")
    assert load_dataset("cifar10").train_images.shape == (20, 3, 32, 32)


def test_imagefolder_cache_is_written_and_used(tmp_path, data_dir, monkeypatch):
    root = write_imagefolder(tmp_path / "pets")
    first = load_dataset(f"imagefolder:{root}")
    assert len(list((data_dir / "resx-cache").glob("imagefolder-pets-*.pt"))) == 1
    monkeypatch.setattr(resx.data, "read_imagefolder", lambda *a: (_ for _ in ()).throw(AssertionError("decoded again")))
    second = load_dataset(f"imagefolder:{root}")
    assert torch.equal(first.train_images, second.train_images) and second.classes == ["cat", "dog"]


def test_no_cache_option(data_dir):
    write_cifar10(data_dir)
    load_dataset("cifar10", cache=False)
    assert not (data_dir / "resx-cache").exists()


# --- bad specs and missing data: one ResxError that says what is wrong ---------------------------------------


def test_unknown_dataset():
    with pytest.raises(ResxError) as e:
        load_dataset("cifar11")
    message = str(e.value)
    assert "cifar11" in message
    for name in ("cifar10", "cifar100", "fashion-mnist", "mnist", "imagefolder", "synthetic"):
        assert name in message


def test_imagefolder_needs_a_path():
    with pytest.raises(ResxError, match="imagefolder:PATH"):
        load_dataset("imagefolder:")


def test_imagefolder_missing_path(tmp_path):
    with pytest.raises(ResxError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}")


@pytest.mark.parametrize("missing", ["train", "test"])
def test_imagefolder_without_split(tmp_path, missing):
    root = write_imagefolder(tmp_path / "pets")
    for p in sorted((root / missing).rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (root / missing).rmdir()
    with pytest.raises(ResxError, match=f"no {missing}/ folder"):
        load_dataset(f"imagefolder:{root}")


def test_imagefolder_without_class_folders(tmp_path):
    (tmp_path / "pets" / "train").mkdir(parents=True)
    (tmp_path / "pets" / "test").mkdir()
    with pytest.raises(ResxError, match="no class folders"):
        load_dataset(f"imagefolder:{tmp_path / 'pets'}")


def test_imagefolder_empty_class_folders(tmp_path):
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (tmp_path / "pets" / split / cls).mkdir(parents=True)
    with pytest.raises(ResxError, match="holds? no images"):
        load_dataset(f"imagefolder:{tmp_path / 'pets'}")


def test_imagefolder_test_class_unknown_to_train(tmp_path):
    root = write_imagefolder(tmp_path / "pets")
    write_jpeg(root / "test" / "bird" / "0.jpg", (0, 250, 0))
    with pytest.raises(ResxError, match="'bird'"):
        load_dataset(f"imagefolder:{root}")


def test_imagefolder_mixed_sizes(tmp_path):
    root = write_imagefolder(tmp_path / "pets")
    write_jpeg(root / "train" / "dog" / "big.jpg", (0, 0, 250), size=16)
    with pytest.raises(ResxError, match="differ in size"):
        load_dataset(f"imagefolder:{root}")


def test_imagefolder_corrupt_image(tmp_path):
    root = write_imagefolder(tmp_path / "pets")
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ResxError, match="cannot decode"):
        load_dataset(f"imagefolder:{root}")


@pytest.mark.parametrize(
    "spec, match",
    [
        ("synthetic:foo=1", "bad synthetic option 'foo=1'; allowed: train=INT"),
        ("synthetic:size", "bad synthetic option 'size'"),
        ("synthetic:size=big", "size must be an integer"),
        ("synthetic:size=0", "size must be positive"),
        ("synthetic:train=-5", "train must be positive"),
        ("synthetic:classes=1", "classes must be at least 2"),
    ],
)
def test_bad_synthetic_options(spec, match):
    with pytest.raises(ResxError, match=match):
        load_dataset(spec)


def test_missing_cifar10_offline(data_dir):
    with pytest.raises(ResxError) as e:
        load_dataset("cifar10")
    message = str(e.value)
    assert str(data_dir / "cifar-10-batches-py") in message  # where it looked
    assert "RESX_NO_DOWNLOAD" in message and "--data-dir" in message


def test_incomplete_cifar10_offline(data_dir):
    write_cifar10(data_dir)
    (data_dir / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(ResxError, match="not found in .*cifar-10-batches-py"):
        load_dataset("cifar10")


def test_missing_cifar100_offline(data_dir):
    with pytest.raises(ResxError, match="cifar-100-python"):
        load_dataset("cifar100")


def test_corrupt_cifar_file(data_dir):
    write_cifar10(data_dir)
    (data_dir / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"\x80\x02 truncated")
    with pytest.raises(ResxError, match="unreadable"):
        load_dataset("cifar10")


def test_missing_mnist_offline(data_dir):
    with pytest.raises(ResxError) as e:
        load_dataset("mnist")
    assert str(data_dir / "MNIST" / "raw") in str(e.value) and "RESX_NO_DOWNLOAD" in str(e.value)


def test_missing_fashion_mnist_offline(data_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(MNIST_LIKE["fashion-mnist"], "system", [tmp_path / "no-system-copy"])
    with pytest.raises(ResxError) as e:
        load_dataset("fashion-mnist")
    message = str(e.value)
    assert str(data_dir / "FashionMNIST" / "raw") in message and str(tmp_path / "no-system-copy") in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_corrupt_idx_file(data_dir):
    raw = data_dir / "MNIST" / "raw"
    write_mnist_like(raw)
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x0D, 1) + struct.pack(">I", 3) + bytes(12))  # float IDX, not bytes
    with pytest.raises(ResxError, match="unreadable"):
        load_dataset("mnist")


# --- augmentation and normalisation ----------------------------------------------------------------------------


def test_random_crop_flip_shape_and_dtype():
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(images)
    assert out.shape == images.shape and out.dtype == torch.uint8


def test_random_crop_flip_identity_without_pad_or_flip():
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(random_crop_flip(images, pad=0, flip=False), images)


def windows(image: torch.Tensor, pad: int) -> list[tuple[int, int, bool, torch.Tensor]]:
    """Every crop of the zero-padded image, plain and flipped."""
    c, h, w = image.shape
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    out = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            out += [(dy, dx, False, crop), (dy, dx, True, crop.flip(-1))]
    return out


def test_random_crop_flip_takes_real_windows():
    """He et al. 2015 §4.2: pad 4, random crop of the original size, random horizontal flip."""
    torch.manual_seed(0)
    # distinct pixel values (1..192 per image, never 0) so a window is recognised without doubt
    images = torch.stack([torch.randperm(192).add(1).view(3, 8, 8) for _ in range(64)]).to(torch.uint8)
    out = random_crop_flip(images, pad=4)
    seen_offsets, seen_flips = set(), set()
    for image, crop in zip(images, out):
        matches = [(dy, dx, flip) for dy, dx, flip, window in windows(image, 4) if torch.equal(window, crop)]
        assert matches, "an output is not a window of the padded input"
        dy, dx, flip = matches[0]
        seen_offsets.add((dy, dx))
        seen_flips.add(flip)
    assert seen_flips == {False, True}
    assert len(seen_offsets) > 10  # offsets are drawn per image


def test_random_crop_without_flip_never_flips():
    torch.manual_seed(1)
    images = torch.stack([torch.randperm(192).add(1).view(3, 8, 8) for _ in range(32)]).to(torch.uint8)
    out = random_crop_flip(images, pad=2, flip=False)
    for image, crop in zip(images, out):
        assert any(torch.equal(window, crop) for _, _, flip, window in windows(image, 2) if not flip)


def test_normalize():
    images = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    before = images.clone()
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    out = normalize(images, mean, std)
    assert out.dtype == torch.float32 and out.shape == images.shape
    torch.testing.assert_close(out, (images.double() / 255 - mean.double()) / std.double(), check_dtype=False)
    assert torch.equal(images, before)  # the uint8 dataset is not touched
    assert normalize(images, mean, std, channels_last=True).is_contiguous(memory_format=torch.channels_last)


def test_dataset_statistics_normalise_to_zero_mean_unit_std():
    data = load_dataset("synthetic:size=8,train=256,test=8")
    shape = (1, data.channels, 1, 1)
    x = normalize(data.train_images, torch.tensor(data.mean).view(shape), torch.tensor(data.std).view(shape))
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-3
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-2


def test_crop_padding_takes_the_fill_colour():
    """The training step pads with the channel means (0 after normalisation), as He et al. padded mean-subtracted
    images with zeros; without a fill the padding is black."""
    from resx.data.augment import crop_flip

    images = torch.full((2, 3, 4, 4), 200, dtype=torch.uint8)
    corner = torch.zeros((2, 2), dtype=torch.int64)  # the top-left crop: 2 padded rows and columns for pad 2
    no_flip = torch.zeros(2, dtype=torch.bool)
    fill = torch.tensor([125, 123, 114], dtype=torch.uint8)
    out = crop_flip(images, corner, no_flip, pad=2, fill=fill)
    assert out[:, :, 0, 0].tolist() == [[125, 123, 114]] * 2 and out[:, :, 3, 3].tolist() == [[200] * 3] * 2
    assert crop_flip(images, corner, no_flip, pad=2)[:, :, 0, 0].sum() == 0
