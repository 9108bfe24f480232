"""Sizes that cannot work are refused before they start: every dataset and every net is sized before anything is
allocated (resx.memory, resx.data.sizes, resx.models.footprint), and a size that cannot fit is refused in one line
saying what was asked, its estimate, what the machine has and what to change. The machine's memory is patched
where a test needs it, so no test depends on this machine's RAM; no test allocates more than a few MB.
"""

from __future__ import annotations

import resource
import time

import pytest
import torch

import resx.memory
from resx.data import load_dataset, parse_synthetic
from resx.data.sizes import DataPlan
from resx.errors import ResxError
from resx.memory import check_fits, format_bytes
from resx.models import create_model, get_model_spec
from resx.models.footprint import measure, spec_footprint
from resx.studies.landscape.options import MAX_POINTS, check_options

from test_data import write_imagefolder
from test_reliability import fail

GB = 10**9


@pytest.fixture
def machine(monkeypatch):
    """This machine with 8 GB available, CPU and GPU alike."""
    monkeypatch.setattr(resx.memory, "available_bytes", lambda device=None: 8 * GB)


def tensors_bytes(data) -> int:
    return sum(t.nbytes for t in (data.train_images, data.train_labels, data.test_images, data.test_labels))


def max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- the module -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size, text", [(0, "0 B"), (512, "512 B"), (150e6, "150 MB"), (1.2e12, "1.2 TB"),
                                        (19.34e9, "19.3 GB"), (3e16, "30 PB"), (2e22, "20,000 EB")])
def test_format_bytes(size, text):
    assert format_bytes(size) == text


def test_available_memory_is_known_on_linux():
    assert resx.memory.available_bytes() > 0
    assert resx.memory.available_bytes("cpu") == pytest.approx(resx.memory.available_bytes(), rel=0.5)


def test_check_fits_keeps_a_margin(machine):
    check_fits("a thing", 6.4 * GB, "make it smaller")  # 80% of 8 GB: allowed
    with pytest.raises(ResxError) as error:
        check_fits("a thing", 6.5 * GB, "make it smaller")
    assert str(error.value) == ("a thing needs about 6.5 GB of memory; this machine has 8 GB available (resx uses at "
                                "most 80% of it); make it smaller")


# --- datasets -----------------------------------------------------------------------------------------------------
def test_synthetic_estimate_is_the_tensors_size():
    """The kept bytes are exact: N x (C x H x W uint8 + an int64 label), train and test."""
    spec = "synthetic:train=300,test=100,size=12,channels=3,classes=4"
    options = parse_synthetic(spec)
    plan = DataPlan(options["train"], options["test"], (3, 12, 12), "synthetic")
    data = load_dataset(spec)
    assert plan.kept_bytes == tensors_bytes(data) == 400 * (3 * 12 * 12 + 8)
    assert plan.peak_bytes > plan.kept_bytes  # the float32 working copies of the generator


def test_imagefolder_estimate_is_the_tensors_size(tmp_path):
    """An image folder is sized from its file count and its first image's header, before anything is decoded."""
    from resx.data.sizes import imagefolder_shape
    from resx.data.sources import list_imagefolder

    root = write_imagefolder(tmp_path / "folder")
    files = list_imagefolder(root)
    plan = DataPlan(len(files["train"]), len(files["test"]), imagefolder_shape(files), "imagefolder")
    assert plan.kept_bytes == tensors_bytes(load_dataset(f"imagefolder:{root}"))


def test_a_dataset_too_large_is_refused_before_it_is_made(machine, monkeypatch):
    monkeypatch.setattr("resx.data.make_synthetic", lambda **_: pytest.fail("the dataset was made"))
    with pytest.raises(ResxError, match=r"loading dataset synthetic:size=4096 \(2,560 images of 3 x 4,096 x 4,096, "
                                        r"129 GB as uint8\) needs about .* use a smaller size="):
        load_dataset("synthetic:size=4096")


def test_a_dataset_too_large_for_the_gpu_is_refused_before_it_is_copied(monkeypatch):
    data = load_dataset("synthetic:size=8,train=64,test=32")
    monkeypatch.setattr(resx.memory, "available_bytes", lambda device=None: 10_000)
    with pytest.raises(ResxError, match=r"dataset .* on cuda:0 needs about 19.2 kB of GPU memory; cuda:0 has 10 kB "
                                        r"available .* or --device cpu"):
        data.to("cuda:0")


# --- nets ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, options", [("resnet8", {}), ("mlp_res", {"depth": 6, "width": 16}),
                                           ("mlp_res", {"depth": 40, "width": 16}), ("plain26", {}),
                                           ("densenet_bc28", {}), ("linear_res", {"depth": 9, "width": 8})])
def test_parameter_estimate_is_exact(name, options):
    """Deep nets are extrapolated from their family's three smallest depths; the count is still exact."""
    spec = get_model_spec(name)
    kwargs = spec.builder_kwargs({"in_channels": 1, "input_size": 8, **options})
    estimate = spec_footprint(spec, kwargs, (1, 8, 8))
    assert estimate.extrapolated == (name != "resnet8" and options.get("depth") != 6)
    net = create_model(name, in_channels=1, input_size=8, **options)
    assert estimate.weight_bytes == sum(p.nbytes for p in net.parameters())
    direct = measure(lambda: spec.builder(**kwargs), (1, 8, 8))  # the net built at its own depth
    assert estimate.outputs == direct[1]


def test_a_net_too_large_is_refused_before_it_is_built(machine):
    started = time.perf_counter()
    with pytest.raises(ResxError, match=r"model mlp_res \(depth=100000, width=4096: 1,678,510,489,610 parameters\) "
                                        r"needs about 6.71 TB of memory; .*use a smaller --depth or --width"):
        create_model("mlp_res", depth=100_000, width=4096)
    assert time.perf_counter() - started < 5
    with torch.device("meta"):  # shapes only: nothing to refuse
        assert create_model("mlp_res", depth=6, width=10**6).num_parameters() > 10**12


# --- through the command line -------------------------------------------------------------------------------------
def test_train_refuses_a_dataset_that_cannot_fit(machine, tmp_path):
    before = max_rss()
    line = fail("train", "resnet8", "--data", "synthetic:size=100000,train=1000000",
                match=r"loading dataset synthetic:size=100000,train=1000000 \(1,000,512 images of 3 x 100,000 x "
                      r"100,000, 30 PB as uint8\) needs about \d+ PB of memory; this machine has 8 GB available")
    assert line.endswith("use a smaller size=..., fewer train=... or test=...")
    assert max_rss() - before < 100 * 2**20  # nothing allocated
    assert list(tmp_path.iterdir()) == []  # nothing written: no run folder, no data directory


def test_train_refuses_a_net_too_deep_at_once(machine, tmp_path):
    started = time.perf_counter()
    line = fail("train", "mlp_res", "--depth", "100000", "--data", "synthetic:size=8,train=64,test=32",
                "--batch-size", "32",
                match=r"training mlp_res \(depth=100000: [\d,]+ parameters\) at batch size 32 \(weights, gradients "
                      r"and momentum 20 GB, activations .* GB\) needs about .* GB of memory; this machine has 8 GB")
    assert line.endswith("use a smaller --depth or --width, or a smaller --batch-size")
    assert time.perf_counter() - started < 5  # a build would take minutes
    assert list(tmp_path.iterdir()) == []


def test_landscape_refuses_a_grid_that_cannot_fit(machine, tmp_path):
    fail("landscape", "--model", "resnet8", "--init", "--points", "100000", "--data", "synthetic:size=8,train=64",
         match=r"the landscape grid of 10,000,000,000 points \(100,000 x 100,000\) needs about 2 TB of memory; "
               r".* use fewer --points$")
    assert list(tmp_path.iterdir()) == []


def test_landscape_caps_the_points_of_one_process(machine):
    line = fail("landscape", "--model", "resnet8", "--init", "--points", "1000",
                match=r"landscape: 1,000 x 1,000 = 1,000,000 points x 1,024 \(cpu\) or 8,192 \(cuda\) images per net "
                      r"over the 40,401 \(201 x 201\) one process measures per net")
    assert "at least 25 shards with --shard I/N" in line
    fixed = dict(span="-1:1", directions="random", norm="filter", bn_recalibrate=False, seed=0, batch_size=None)
    assert check_options(dims=2, points=1000, samples=512, shard="1/25", **fixed).shard == (1, 25)  # sliced: allowed
    with pytest.raises(ResxError, match="in 24 shards is 41,667 points per shard"):
        check_options(dims=2, points=1000, samples=512, shard="1/24", **fixed)
    assert check_options(dims=1, points=MAX_POINTS, samples=None, shard=None, **fixed).points == MAX_POINTS
