"""`ImageData`: a whole dataset as uint8 tensors, ready to live on the GPU.

resx never uses a DataLoader in the training loop: the dataset is decoded once, cached, moved to the device
whole (CIFAR-10 is 150 MB as uint8), and every batch is gathered, augmented and normalised there
(see augment.py). airbench works the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ImageData:
    name: str  # the spec it was loaded from, e.g. "cifar10" or "imagefolder:/data/cifar10-jpeg"
    train_images: torch.Tensor  # uint8 [N, C, H, W]
    train_labels: torch.Tensor  # int64 [N]
    test_images: torch.Tensor  # uint8 [M, C, H, W]
    test_labels: torch.Tensor  # int64 [M]
    classes: list[str]
    augment: bool = True  # pad-4 random crop + horizontal flip (He et al. 2015, §4.2) during training
    source: str = ""  # where it was read from, for provenance
    mean: tuple[float, ...] = field(default=())  # per-channel, of the training images in [0, 1]
    std: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.mean:
            self.mean, self.std = channel_stats(self.train_images)

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def model_options(self) -> dict:
        """What a model needs to know about this data (see resx.models.registry.DATA_OPTIONS)."""
        return {"num_classes": self.num_classes, "in_channels": self.channels, "input_size": self.image_size}

    def describe(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "train_images": int(self.train_images.shape[0]),
            "test_images": int(self.test_images.shape[0]),
            "shape": list(self.train_images.shape[1:]),
            "classes": self.num_classes,
            "augment": self.augment,
        }

    def to(self, device: torch.device | str) -> "ImageData":
        """A copy with every tensor on `device` (no copy if already there); a GPU that cannot hold it is refused in
        one line before anything is copied (resx.memory)."""
        device = torch.device(device)
        if device.type == "cuda" and self.train_images.device != device:
            from resx.memory import check_fits

            size = sum(t.nbytes for t in (self.train_images, self.train_labels, self.test_images, self.test_labels))
            images = len(self.train_images) + len(self.test_images)
            check_fits(f"dataset {self.name} ({images:,} images) on {device}", size,
                       "use a smaller dataset, or --device cpu", device)
        return ImageData(
            self.name,
            self.train_images.to(device),
            self.train_labels.to(device),
            self.test_images.to(device),
            self.test_labels.to(device),
            self.classes,
            self.augment,
            self.source,
            self.mean,
            self.std,
        )


def channel_stats(images: torch.Tensor, max_images: int = 10_000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, scaled to [0, 1], from at most `max_images` of them spread
    evenly over the set (an ImageFolder is sorted by class: its first images would all be airplanes)."""
    n = images.shape[0]
    index = torch.linspace(0, n - 1, min(n, max_images)).round().long()
    sample = images[index].to(torch.float64) / 255.0
    mean = sample.mean(dim=(0, 2, 3))
    std = sample.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
