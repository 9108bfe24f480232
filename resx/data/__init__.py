"""Datasets by name, decoded once into uint8 tensors and cached in the data directory.

    load_dataset("cifar10" | "cifar100" | "fashion-mnist" | "mnist" | "imagefolder:PATH" | "synthetic[:k=v,...]",
                 data_dir=None)

Data directory: the `data_dir` argument (--data-dir), else $RESX_DATA, else ./data.
The cache (DATA_DIR/resx-cache/*.pt) is keyed by the source files' names, sizes and times, so a second run
does not decode 60,000 JPEGs again, and a changed folder is decoded anew.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import torch

from resx.atomic import save_torch_atomic
from resx.data.augment import normalize, random_crop_flip
from resx.data.dataset import ImageData
from resx.data.sizes import DataPlan, check_dataset_fits, imagefolder_shape
from resx.data.sources import (
    CIFAR,
    MNIST_LIKE,
    SYNTHETIC_DEFAULTS,
    list_imagefolder,
    make_synthetic,
    read_cifar,
    read_imagefolder,
    read_mnist_like,
)
from resx.errors import ResxError
from resx.text import count

DATASET_NAMES = ("cifar10", "cifar100", "fashion-mnist", "mnist", "imagefolder:PATH", "synthetic")
CACHE_VERSION = 1
# (train images, test images, (C, H, W)) of the datasets whose size is fixed, to size them before they are read
KNOWN_SIZES = {"cifar10": (50_000, 10_000, (3, 32, 32)), "cifar100": (50_000, 10_000, (3, 32, 32)),
               "fashion-mnist": (60_000, 10_000, (1, 28, 28)), "mnist": (60_000, 10_000, (1, 28, 28))}

__all__ = ["DATASET_NAMES", "ImageData", "load_dataset", "normalize", "random_crop_flip", "resolve_data_dir"]


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: `data_dir` (--data-dir), else $RESX_DATA, else ./data. One that is a file is refused
    (it is created when missing: downloads go there)."""
    given = data_dir or os.environ.get("RESX_DATA")
    path = Path(given or "data").expanduser()
    if path.exists() and not path.is_dir():
        where = "--data-dir" if data_dir else "$RESX_DATA" if given else "the data directory"
        raise ResxError(f"{where} {path} is a file, not a folder; give the folder that holds the datasets "
                        f"(it is created if missing)")
    return path


def parse_options(text: str, allowed: dict[str, object], what: str, kind: str = "INT") -> dict[str, str]:
    """`k=v,k=v` (a spec's options) -> {k: v} as given, in order, each key once: an item without '=', a key not in
    `allowed` (its values: the defaults, named in the message) or a key given twice is refused in one line naming
    `what` (e.g. 'synthetic option'; `kind`: what a value is). Every `k=v` list of the command line is parsed here."""
    values: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = (part.strip() for part in item.partition("="))
        if key not in allowed or not eq:
            raise ResxError(f"bad {what} {item!r}; allowed: {', '.join(f'{k}={kind}' for k in allowed)}")
        if key in values:
            raise ResxError(f"{what} {key} given twice ({key}={values[key]} and {key}={value}); give each once")
        values[key] = value
    return values


def parse_synthetic(spec: str) -> dict[str, int]:
    """`synthetic` or `synthetic:train=256,test=64,size=8,channels=1,classes=4,seed=1`."""
    options = dict(SYNTHETIC_DEFAULTS)
    _, _, rest = spec.partition(":")
    for key, value in parse_options(rest, SYNTHETIC_DEFAULTS, "synthetic option").items():
        try:
            options[key] = int(value)
        except ValueError:
            raise ResxError(f"synthetic option {key} must be an integer, got {value!r}") from None
        if options[key] < (0 if key == "seed" else 1):
            raise ResxError(f"synthetic option {key} must be positive, got {value}")
    if options["classes"] < 2:
        raise ResxError("synthetic option classes must be at least 2")
    return options


def normalise_data_spec(spec: str | None) -> str | None:
    """One spelling per dataset, to compare specs: synthetic options in a fixed order with their defaults filled
    in (`synthetic:size=8,train=512` is `synthetic:train=512,size=8`), imagefolder paths absolute and normalised
    (`./x` is `x`). Other names are returned as given; a spec that does not parse is returned as given too."""
    if not spec:
        return spec
    kind, _, rest = spec.partition(":")
    if kind == "synthetic":
        try:
            options = parse_synthetic(spec)
        except ResxError:
            return spec
        return "synthetic:" + ",".join(f"{k}={v}" for k, v in options.items())
    if kind == "imagefolder" and rest:
        return f"imagefolder:{os.path.abspath(os.path.expanduser(rest))}"
    return spec


def _fingerprint(parts: list[str]) -> str:
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def _file_fingerprint(paths: list[Path]) -> str:
    parts = [f"v{CACHE_VERSION}"]
    for p in paths:
        st = p.stat()
        parts.append(f"{p}:{st.st_size}:{int(st.st_mtime)}")
    return _fingerprint(parts)


def _load_cached(cache_file: Path) -> dict | None:
    if not cache_file.exists():
        return None
    try:
        return torch.load(cache_file, map_location="cpu", weights_only=True)
    except Exception:  # a corrupt cache is just decoded again
        return None


def load_dataset(spec: str, data_dir: str | os.PathLike | None = None, *, cache: bool = True) -> ImageData:
    """Load a dataset by name into CPU uint8 tensors (move it with `.to(device)`). Its size is known before it is
    read, and one that would not fit this machine's memory is refused in one line (resx.data.sizes)."""
    spec = spec.strip()
    root = resolve_data_dir(data_dir)
    kind = spec.split(":", 1)[0]
    augment = True
    cache_file: Path | None = None
    if kind == "synthetic":
        options = parse_synthetic(spec)
        reader = lambda: make_synthetic(**options)  # noqa: E731
        augment = False
        plan = DataPlan(options["train"], options["test"], (options["channels"], options["size"], options["size"]),
                        "synthetic")
        fix = "use a smaller size=..., fewer train=... or test=..."
    elif kind == "imagefolder":
        path = spec.partition(":")[2]
        if not path:
            raise ResxError("imagefolder needs a path: imagefolder:PATH with PATH/train/<class>/* and PATH/test/<class>/*")
        folder = Path(path).expanduser().resolve()
        files = list_imagefolder(folder)
        key = _file_fingerprint([p for s in ("train", "test") for p, _ in files[s]])
        cache_file = root / "resx-cache" / f"imagefolder-{folder.name}-{key}.pt"
        reader = lambda: read_imagefolder(folder, files)  # noqa: E731
        shape = imagefolder_shape(files)
        plan = DataPlan(len(files["train"]), len(files["test"]), shape, "imagefolder") if shape else None
        fix = "resize the images smaller, or use fewer of them"
    elif kind in CIFAR:
        reader = lambda: read_cifar(kind, root)  # noqa: E731
        folder = root / CIFAR[kind]["folder"]
        if folder.is_dir():
            key = _file_fingerprint(sorted(folder.iterdir()))
            cache_file = root / "resx-cache" / f"{kind}-{key}.pt"
        plan = DataPlan(*KNOWN_SIZES[kind], "cifar")
        fix = "free memory, or use a machine with more"
    elif kind in MNIST_LIKE:
        reader = lambda: read_mnist_like(kind, root)  # noqa: E731
        augment = False  # the papers augment CIFAR only
        plan = DataPlan(*KNOWN_SIZES[kind], "mnist")  # IDX files read in a second; no cache needed
        fix = "free memory, or use a machine with more"
    else:
        raise ResxError(f"unknown dataset {spec!r}; allowed: {', '.join(DATASET_NAMES)}")

    cached_file = cache_file if cache and cache_file is not None and cache_file.exists() else None
    if plan is not None and cached_file is not None:
        plan = replace(plan, reader="cache")
    check_dataset_fits(spec, plan, fix)  # every dataset, before anything is decoded or allocated
    cached = _load_cached(cached_file) if cached_file is not None else None
    if cached is not None:
        train, test, classes, source = (cached["train_images"], cached["train_labels"]), (
            cached["test_images"], cached["test_labels"]), cached["classes"], cached["source"]
    else:
        train, test, classes, source = reader()
        if cache and cache_file is not None:
            try:
                save_torch_atomic(cache_file, dict(train_images=train[0], train_labels=train[1], test_images=test[0],
                                                   test_labels=test[1], classes=classes, source=source))
            except OSError:
                pass  # a read-only data directory only costs decoding time next run
    check_classes(spec, train[1], classes)
    return ImageData(spec, *train, *test, classes, augment=augment, source=source)


def check_classes(spec: str, train_labels: torch.Tensor, classes: list[str]) -> None:
    """A dataset whose training images are of fewer than two classes is refused: a net trained on it reaches 0%
    error and learns nothing (imagefolder's folders are checked earlier, by name: see `list_imagefolder`)."""
    present = torch.unique(train_labels).tolist() if len(train_labels) else []
    if len(present) < 2:
        which = f" ({', '.join(repr(classes[int(i)]) for i in present if 0 <= int(i) < len(classes))})" if present else ""
        raise ResxError(f"dataset {spec} has training images of {count(len(present), 'class')}{which}; a classifier "
                        f"needs at least 2")
