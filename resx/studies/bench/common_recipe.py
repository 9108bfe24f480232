"""The baseline of `resx bench`, the common recipe: a torchvision CIFAR-style DataLoader with per-sample PIL
transforms (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize), eager fp32, torch.optim.SGD.
On a CPU its DataLoader's worker count is tried among 0, 1 and 2 and the fastest is used (`fastest_workers`);
on CUDA it gets 4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from resx.data import ImageData
from resx.models import create_model
from resx.studies.bench.timing import Measured


class PILDataset(torch.utils.data.Dataset):
    """The common recipe's dataset: one PIL image per sample, transformed one by one on the CPU."""

    def __init__(self, data: ImageData):
        import torchvision.transforms as T

        self.images, self.labels = data.train_images.cpu(), data.train_labels.cpu()
        size = tuple(data.train_images.shape[-2:])  # (H, W): ImageFolder images need not be square
        self.transform = T.Compose([
            T.RandomCrop(size, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(data.mean, data.std),
        ])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        array = self.images[i].permute(1, 2, 0).numpy()
        image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
        return self.transform(image), int(self.labels[i])


def common_recipe(model: str, data: ImageData, device: torch.device, batch_size: int, workers: int) -> Measured:
    net = create_model(model, **data.model_options).to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(
        PILDataset(data), batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0,
    )
    batches = iter(loader)

    def step() -> None:
        nonlocal batches
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return Measured(step, device, batch_size)


def fastest_workers(model: str, data: ImageData, device: torch.device, batch_size: int, seconds: float,
                    candidates: tuple[int, ...] = (0, 1, 2)) -> tuple[int, dict[int, float]]:
    """The common recipe's fastest DataLoader worker count among `candidates` (short trials), with each trial."""
    trials = {}
    for workers in candidates:
        method = common_recipe(model, data, device, batch_size, workers)
        method.prepare(seconds)
        steps, elapsed = method.measure(seconds)
        trials[workers] = steps * batch_size / elapsed
        del method
    return max(trials, key=trials.get), trials
