"""What a dataset will take in memory, known before it is read: `DataPlan` (images per split and their shape, from
the spec, the known datasets' sizes or an image folder's file count and first image's header) and the one check every
load passes (`check_dataset_fits`, called by resx.data.load_dataset before anything is decoded).

The estimate, in bytes (N = train + test images, P = C x H x W pixels per image, S = the larger split's images):
  kept:     N x (P + 8)                                 uint8 images and int64 labels, what ImageData holds
  loading:  S x P x `working` bytes                     the reader's copies at its peak, besides what it keeps:
            synthetic 20 (five float32 copies of a split), CIFAR 2 (the pickled batches and their concatenation),
            MNIST 1 (the file's bytes), an image folder 1 (the decoded images before they are stacked), a cache 0
  stats:    min(train, 10,000) x P x 17                 channel_stats: a uint8 sample, as float64, and scaled
The peak is kept + the larger of loading and stats (stats are computed once the reader's copies are freed).
tests/test_memory.py holds the kept bytes to the tensors' own and the peak to a measured one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from resx.memory import check_fits, format_bytes

STATS_IMAGES = 10_000  # resx.data.dataset.channel_stats's sample
STATS_BYTES = 17  # per pixel of that sample: its uint8 copy, as float64, and divided by 255
LABEL_BYTES = 8  # int64

# Bytes per pixel of the larger split that each reader holds at its peak besides the images it returns
WORKING = {"synthetic": 20.0, "cifar": 2.0, "mnist": 1.0, "imagefolder": 1.0, "cache": 0.0}


@dataclass(frozen=True)
class DataPlan:
    """A dataset's size before it is read: images per split, their shape (C, H, W) and how its reader works."""

    train: int
    test: int
    shape: tuple[int, int, int]
    reader: str  # a key of WORKING

    @property
    def pixels(self) -> int:
        channels, height, width = self.shape
        return channels * height * width

    @property
    def kept_bytes(self) -> int:
        """The images (uint8) and labels (int64) of both splits: what the loaded dataset's tensors hold."""
        return (self.train + self.test) * (self.pixels + LABEL_BYTES)

    @property
    def peak_bytes(self) -> int:
        """The most memory loading it takes at once: what is kept, plus the reader's or channel_stats' copies."""
        loading = max(self.train, self.test) * self.pixels * WORKING[self.reader]
        stats = min(self.train, STATS_IMAGES) * self.pixels * STATS_BYTES
        return int(self.kept_bytes + max(loading, stats))

    def describe(self) -> str:
        channels, height, width = self.shape
        return f"{self.train + self.test:,} images of {channels} x {height:,} x {width:,}"


def imagefolder_shape(files: dict) -> tuple[int, int, int] | None:
    """(3, H, W) of an image folder, from its first training image's header (nothing decoded); None when that
    header cannot be read (decoding then says why)."""
    from PIL import Image, UnidentifiedImageError

    entries = files.get("train") or []
    if not entries:
        return None
    try:
        with Image.open(Path(entries[0][0])) as image:  # lazy: reads the header only
            width, height = image.size
    except (UnidentifiedImageError, OSError):
        return None
    return 3, height, width  # decoded as RGB


def check_dataset_fits(spec: str, plan: DataPlan | None, fix: str) -> None:
    """Refuse, in one line, a dataset whose loading would not fit this machine's memory (resx.memory.check_fits)."""
    if plan is None:
        return
    what = f"loading dataset {spec} ({plan.describe()}, {format_bytes(plan.kept_bytes)} as uint8)"
    check_fits(what, plan.peak_bytes, fix)
