"""Readers: each turns one dataset on disk into uint8 tensors [N, C, H, W] and int64 labels.

Names (see `resx.data.load_dataset`): cifar10, cifar100 (torchvision's pickled batches, downloaded when
online), fashion-mnist, mnist (IDX files, .gz or not: torchvision's raw folder or Debian's
dataset-fashion-mnist package), imagefolder:PATH (PATH/train/<class>/*, PATH/test/<class>/*), synthetic.
"""

from __future__ import annotations

import gzip
import os
import pickle
import socket
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from resx.errors import ResxError
from resx.text import count, reason

Split = tuple[torch.Tensor, torch.Tensor]  # images uint8 [N, C, H, W], labels int64 [N]

DOWNLOAD_TIMEOUT_S = 20


def downloads_allowed() -> bool:
    """RESX_NO_DOWNLOAD=1 turns downloads off (tests, air-gapped clusters)."""
    return os.environ.get("RESX_NO_DOWNLOAD", "") in ("", "0")


# --- CIFAR (torchvision's python pickles) ---------------------------------------------------------------

CIFAR = {
    "cifar10": dict(folder="cifar-10-batches-py", train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    meta=("batches.meta", "label_names"), labels="labels", cls="CIFAR10"),
    "cifar100": dict(folder="cifar-100-python", train=["train"], test=["test"],
                     meta=("meta", "fine_label_names"), labels="fine_labels", cls="CIFAR100"),
}


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _download_torchvision(cls_name: str, root: Path, what: str, where: str) -> None:
    """Let torchvision download a dataset into `root`; one-line ResxError when offline."""
    hint = f"{what} not found in {where}"
    if not downloads_allowed():
        raise ResxError(f"{hint}, and downloads are off (RESX_NO_DOWNLOAD); put the files there or pass --data-dir")
    import torchvision.datasets

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        root.mkdir(parents=True, exist_ok=True)
        getattr(torchvision.datasets, cls_name)(str(root), train=True, download=True)
    except Exception as e:  # network errors come in many types; the user needs one line
        raise ResxError(
            f"{hint} and the download failed ({reason(e, 120)}); download it on a machine with internet access "
            f"into {root} (or set --data-dir / RESX_DATA)"
        ) from None
    finally:
        socket.setdefaulttimeout(old)


def read_cifar(name: str, data_dir: Path) -> tuple[Split, Split, list[str], str]:
    spec = CIFAR[name]
    folder = data_dir / spec["folder"]
    if not all((folder / f).exists() for f in spec["train"] + spec["test"]):
        _download_torchvision(spec["cls"], data_dir, name, str(folder))

    def split(files: list[str]) -> Split:
        batches = [_unpickle(folder / f) for f in files]
        images = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32)
        labels = np.concatenate([np.asarray(b[spec["labels"]]) for b in batches])
        return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))

    try:
        meta_file, key = spec["meta"]
        classes = [str(c) for c in _unpickle(folder / meta_file)[key]]
        return split(spec["train"]), split(spec["test"]), classes, str(folder)
    except (OSError, KeyError, ValueError, pickle.UnpicklingError, EOFError) as e:
        raise ResxError(f"{name} files in {folder} are unreadable ({type(e).__name__}: {reason(e)}); delete them to re-download") from None


# --- MNIST and Fashion-MNIST (IDX files) -----------------------------------------------------------------

MNIST_LIKE = {
    "fashion-mnist": dict(cls="FashionMNIST", system=[Path("/usr/share/datasets/fashion-mnist")],
                          classes=["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                   "Sneaker", "Bag", "Ankle boot"]),
    "mnist": dict(cls="MNIST", system=[Path("/usr/share/datasets/mnist")], classes=[str(i) for i in range(10)]),
}
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    return None


def read_mnist_like(name: str, data_dir: Path) -> tuple[Split, Split, list[str], str]:
    spec = MNIST_LIKE[name]
    raw = data_dir / spec["cls"] / "raw"
    folders = [raw, data_dir / name, *spec["system"]]

    def complete(folder: Path) -> bool:
        return all(_find_idx(folder, stem) for pair in IDX_FILES.values() for stem in pair)

    found = next((f for f in folders if complete(f)), None)
    if found is None:
        looked = ", ".join(str(f) for f in folders)
        try:
            _download_torchvision(spec["cls"], data_dir, name, looked)
        except ResxError as e:
            extra = " (Debian: apt-get install dataset-fashion-mnist)" if name == "fashion-mnist" else ""
            raise ResxError(f"{e}{extra}") from None
        found = raw

    def split(which: str) -> Split:
        images_stem, labels_stem = IDX_FILES[which]
        images = read_idx(_find_idx(found, images_stem))
        labels = read_idx(_find_idx(found, labels_stem))
        return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))

    try:
        return split("train"), split("test"), list(spec["classes"]), str(found)
    except (OSError, ValueError, EOFError) as e:
        raise ResxError(f"{name} files in {found} are unreadable: {reason(e)}") from None


# --- ImageFolder (PATH/train/<class>/*, PATH/test/<class>/*) ---------------------------------------------

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


IMAGEFOLDER_LAYOUT = "expected PATH/train/<class>/* and PATH/test/<class>/*, at least two classes"


def _class_folders(split: Path) -> list[str]:
    """The class folders of a split, sorted; hidden ones (.ipynb_checkpoints, ...) are not classes."""
    return sorted(d.name for d in split.iterdir() if d.is_dir() and not d.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


def list_imagefolder(root: Path) -> dict[str, list[tuple[Path, int]]]:
    """The files of each split with class indices; classes are the sorted sub-folders of train/.

    Refused in one line, before anything is decoded: a missing root, split or class folder; a class folder of
    test/ that train/ lacks, or of train/ that test/ lacks (the splits must have the same classes, or the test
    error would not measure the task trained on); a class folder without images (it would be a class the net
    never sees, counted in its outputs); fewer than two classes (one class trains to 0% error and means nothing)."""
    if not root.is_dir():
        if root.exists():
            raise ResxError(f"imagefolder path {root} is a file, not a folder; {IMAGEFOLDER_LAYOUT}")
        raise ResxError(f"imagefolder path {root} does not exist; {IMAGEFOLDER_LAYOUT}")
    missing = [s for s in ("train", "test") if not (root / s).is_dir()]
    if missing:
        raise ResxError(f"imagefolder path {root} has no {missing[0]}/ folder; {IMAGEFOLDER_LAYOUT}")
    classes = _class_folders(root / "train")
    if not classes:
        raise ResxError(f"imagefolder path {root}/train has no class folders; {IMAGEFOLDER_LAYOUT}")
    test_classes = _class_folders(root / "test")
    extra = [c for c in test_classes if c not in classes]
    if extra:
        raise ResxError(f"imagefolder {root}/test has class folder {extra[0]!r} that train/ lacks; the splits "
                        f"must have the same classes")
    lacking = [c for c in classes if c not in test_classes]
    if lacking:
        raise ResxError(f"imagefolder {root}/test lacks class folder {lacking[0]!r} that train/ has; the splits "
                        f"must have the same classes")
    images = {split: {cls: _images(root / split / cls) for cls in classes} for split in ("train", "test")}
    empty = [f"{split}/{cls}" for split in ("train", "test") for cls in classes if not images[split][cls]]
    with_images = [cls for cls in classes if images["train"][cls]]
    if empty or len(with_images) < 2:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        if empty:
            which = f"class folder {empty[0]}" if len(empty) == 1 else f"class folders {', '.join(empty)}"
            problem = f"{which} {'holds' if len(empty) == 1 else 'hold'} no images ({suffixes})"
            if len(with_images) < 2:
                problem += f"; {count(len(with_images), 'class')} with training images, at least 2 needed"
        else:
            problem = (f"train/ has {count(len(with_images), 'class')} ({with_images[0]!r}), at least 2 needed: "
                       f"a net trained on one class has nothing to learn")
        raise ResxError(f"imagefolder {root}: {problem}; {IMAGEFOLDER_LAYOUT}")
    files: dict[str, list[tuple[Path, int]]] = {
        split: [(p, label) for label, cls in enumerate(classes) for p in images[split][cls]] for split in ("train", "test")
    }
    files["classes"] = classes  # type: ignore[assignment]
    return files


def _decode(path: Path) -> torch.Tensor:
    """One image as uint8 [3, H, W]. Pillow (a dependency of torchvision) rather than torchvision.io, whose
    codecs are deprecated since torchvision 0.29."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise RuntimeError(f"{path}: {e}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def read_imagefolder(root: Path, files: dict) -> tuple[Split, Split, list[str], str]:
    def split(which: str) -> Split:
        entries = files[which]
        with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
            try:
                images = list(pool.map(_decode, [p for p, _ in entries], chunksize=256))
            except RuntimeError as e:
                raise ResxError(f"cannot decode an image under {root}/{which}: {reason(e, 200)}") from None
        shapes = {tuple(im.shape) for im in images}
        if len(shapes) > 1:
            raise ResxError(f"images under {root}/{which} differ in size {sorted(shapes)[:3]}; resize them to one size first")
        return torch.stack(images), torch.tensor([label for _, label in entries], dtype=torch.int64)

    return split("train"), split("test"), list(files["classes"]), str(root)


# --- synthetic ---------------------------------------------------------------------------------------------

SYNTHETIC_DEFAULTS = dict(train=2048, test=512, size=16, channels=3, classes=10, seed=0)


def make_synthetic(train: int, test: int, size: int, channels: int, classes: int, seed: int) -> tuple[Split, Split, list[str], str]:
    """A small seeded image task that needs a few layers to solve: each class is a smooth random template
    (low-frequency pattern), each image a randomly shifted, scaled template plus noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(classes, channels, 4, 4, generator=g)
    templates = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)

    def split(n: int) -> Split:
        labels = torch.randint(0, classes, (n,), generator=g)
        x = templates[labels]
        shifts = torch.randint(-2, 3, (n, 2), generator=g)  # each image shifted by up to 2 pixels
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                chosen = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
                x[chosen] = torch.roll(x[chosen], shifts=(dy, dx), dims=(2, 3))
        x = x * (0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=g)) + 0.35 * torch.randn(x.shape, generator=g)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), labels

    return split(train), split(test), [f"class{i}" for i in range(classes)], f"synthetic(seed={seed})"
