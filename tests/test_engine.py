"""The training engine on the CPU: the SGD update, the schedule, run folders, exact resume, checkpoints."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import resx
from resx.config import TrainConfig, resolve_config
from resx.engine import METRIC_COLUMNS, TrainingRun, load_model, read_checkpoint, train, train_many
from resx.engine.sgd import sgd_update
from resx.errors import ResxError

from conftest import TINY_DATA

# Numbers that must be equal between an uninterrupted run and a resumed one (timings are not).
RESULT_COLUMNS = ["epoch", "iteration", "lr", "train_loss", "train_error", "test_loss", "test_error"]


def tiny_config(**changes) -> TrainConfig:
    """resnet8 on 256 8x8 images, 8 steps of 32 per epoch; augmentation on, so resume must restore the RNG."""
    values = dict(model="resnet8", data=TINY_DATA, epochs=4, batch_size=32, device="cpu", augment=True, seed=0)
    values.update(changes)
    return resolve_config(None, values)


def results(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "metrics.csv")[RESULT_COLUMNS]


def train_epochs(run: TrainingRun, epochs: int) -> None:
    for _ in range(epochs):
        for _ in run.steps():
            pass
        run.finish_epoch()


# --- SGD ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("momentum, weight_decay", [(0.9, 1e-4), (0.0, 0.0), (0.9, 0.0), (0.0, 5e-4)])
def test_sgd_update_matches_torch_optim(momentum, weight_decay):
    torch.manual_seed(0)
    shapes = [(16, 3, 3, 3), (16,), (10, 64)]
    reference = [torch.randn(s, requires_grad=True) for s in shapes]
    params = [p.detach().clone() for p in reference]
    buffers = [torch.zeros_like(p) for p in params]
    optimizer = torch.optim.SGD(reference, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    for step in range(6):
        lr = 0.1 if step < 3 else 0.01  # a schedule change between steps, as at a milestone
        for group in optimizer.param_groups:
            group["lr"] = lr
        grads = [torch.randn(s) for s in shapes]
        for p, g in zip(reference, grads):
            p.grad = g.clone()
        optimizer.step()
        sgd_update(params, grads, buffers, torch.tensor(lr), momentum, weight_decay)
        for mine, theirs in zip(params, reference):
            torch.testing.assert_close(mine, theirs.detach(), rtol=1e-6, atol=1e-7)
    if momentum:
        for buf, p in zip(buffers, reference):
            torch.testing.assert_close(buf, optimizer.state[p]["momentum_buffer"], rtol=1e-6, atol=1e-7)


# --- training -----------------------------------------------------------------------------------------------


def test_short_training_learns():
    run = train(tiny_config(augment=None), "run")  # the dataset's default: no augmentation on synthetic data
    rows = run.metrics
    assert len(rows) == 4
    assert rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"]
    assert rows[-1]["train_error"] < rows[0]["train_error"]
    assert rows[-1]["test_error"] < 0.6  # chance is 0.9 on 10 classes
    assert run.status == "finished"


def test_run_folder_files():
    train(tiny_config(epochs=2, seed=3), "run")
    run_dir = Path("run")
    assert {"config.yaml", "metrics.csv", "checkpoint.pt", "run_info.json"} <= {p.name for p in run_dir.iterdir()}
    assert not list(run_dir.glob(".*.tmp")), "a temporary file of an atomic write was left behind"

    metrics = pd.read_csv(run_dir / "metrics.csv")
    for column in ("epoch", "iteration", "lr", "train_loss", "train_error", "test_loss", "test_error", "seconds",
                   "images_per_second"):
        assert column in metrics.columns
    assert list(metrics.columns) == METRIC_COLUMNS
    assert metrics["epoch"].tolist() == [1, 2] and metrics["iteration"].tolist() == [8, 16]
    assert metrics[["train_error", "test_error"]].stack().between(0, 1).all()
    assert (metrics["images_per_second"] > 0).all() and (metrics["seconds"] > 0).all()

    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["seed"] == 3
    assert info["torch"] == torch.__version__
    assert info["cuda"] == (torch.version.cuda or "none")
    assert info["device_name"].startswith("CPU")
    assert info["status"] == "finished"
    package_dir = Path(resx.__file__).resolve().parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package_dir, capture_output=True, text=True)
    if head.returncode == 0:  # running from a git checkout: the exact commit, marked when dirty
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", info["git_commit"])
        assert info["git_commit"].startswith(head.stdout.strip())
    else:
        assert info["git_commit"] == "unknown"

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved == tiny_config(epochs=2, seed=3).to_dict()


def test_checkpoint_alone_rebuilds_the_model():
    run = train(tiny_config(epochs=1, model="preresnet8"), "run")
    net, ckpt = load_model("run/checkpoint.pt")
    assert ckpt["model_name"] == "preresnet8"
    assert not net.training
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        # The run trained in channels_last, the rebuilt net is NCHW: same weights, other convolution kernels,
        # so equal to float rounding rather than bit for bit.
        torch.testing.assert_close(net(x), run.net.eval()(x), rtol=1e-5, atol=1e-6)
    net2, _ = load_model("run")  # a run folder works too
    assert net2.num_parameters() == net.num_parameters()


def test_checkpoint_keeps_data_shaped_model_options():
    """A net trained on 1-channel, 4-class data rebuilds with those shapes from the checkpoint alone."""
    train(tiny_config(epochs=1, data="synthetic:size=8,train=64,test=16,channels=1,classes=4"), "run")
    net, _ = load_model("run")
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 4)


# --- resume equals uninterrupted ---------------------------------------------------------------------------


def test_resume_after_epochs_equals_uninterrupted():
    train(tiny_config(), "straight")

    run = TrainingRun(tiny_config(), "resumed")
    train_epochs(run, 2)
    del run  # as if the process had ended after epoch 2
    resumed = train(tiny_config(), "resumed", resume="require")
    pd.testing.assert_frame_equal(results("resumed"), results("straight"))
    assert resumed.status == "finished"


@pytest.mark.parametrize("steps_done", [1, 5])
def test_resume_mid_epoch_equals_uninterrupted(steps_done):
    train(tiny_config(epochs=3), "straight")

    run = TrainingRun(tiny_config(epochs=3), "resumed")
    train_epochs(run, 1)
    steps = run.steps()
    for _ in range(steps_done):
        next(steps)
    run.save_interrupted()  # what Ctrl-C does
    info = json.loads(Path("resumed/run_info.json").read_text())
    assert info["status"] == "interrupted" and info["iterations_done"] == 8 + steps_done
    del run, steps

    train(tiny_config(epochs=3), "resumed", resume="require")
    pd.testing.assert_frame_equal(results("resumed"), results("straight"))


def test_resume_twice_mid_epoch():
    train(tiny_config(epochs=2), "straight")
    for steps_done in (3, 6):
        run = TrainingRun(tiny_config(epochs=2), "resumed", resume="auto")
        steps = run.steps()
        for _ in range(steps_done - run._cursor):
            next(steps)
        run.save_interrupted()
        del run, steps
    train(tiny_config(epochs=2), "resumed", resume="require")
    pd.testing.assert_frame_equal(results("resumed"), results("straight"))


def test_resume_of_finished_run_changes_nothing():
    train(tiny_config(epochs=1), "run")
    before = Path("run/metrics.csv").read_bytes()
    run = train(tiny_config(epochs=1), "run", resume="require")
    assert Path("run/metrics.csv").read_bytes() == before
    assert len(run.metrics) == 1 and run.status == "finished"


def test_existing_run_is_refused_without_resume_or_overwrite():
    train(tiny_config(epochs=1), "run")
    with pytest.raises(ResxError, match="--resume.*--overwrite"):
        train(tiny_config(epochs=1), "run")
    fresh = train(tiny_config(epochs=1, seed=1), "run", overwrite=True)
    assert len(fresh.metrics) == 1 and read_checkpoint("run")["config"]["seed"] == 1


def test_resume_auto_starts_fresh_when_empty():
    run = train(tiny_config(epochs=1), "run", resume="auto")
    assert len(run.metrics) == 1


def test_a_built_run_is_ready_to_train_and_keeps_its_attributes():
    """Building a TrainingRun sets it up (folder checked and locked, net, step, config.yaml, run_info.json);
    training adds no attribute, so nothing a caller reads exists only after some step has run."""
    run = TrainingRun(tiny_config(epochs=2), "run")
    assert run.setup() is run  # kept for callers that still call it
    assert run.status == "running" and run.total_iterations == 16 and run.total_epochs == 2
    assert Path("run/config.yaml").exists() and json.loads(Path("run/run_info.json").read_text())["status"] == "running"
    attributes = set(vars(run))
    train_many([run])
    assert run.status == "finished" and set(vars(run)) == attributes
    run.release_lock()


def test_save_every_keeps_every_nth_epoch_and_survives_a_resume():
    train(tiny_config(epochs=4, save_every=2), "straight")
    assert sorted(p.name for p in Path("straight/checkpoints").iterdir()) == ["epoch-002.pt", "epoch-004.pt"]
    kept = read_checkpoint("straight/checkpoints/epoch-002.pt")
    assert kept["epoch"] == 2 and kept["iteration"] == 16
    net, _ = load_model("straight/checkpoints/epoch-002.pt")
    assert net.model_name == "resnet8"

    run = TrainingRun(tiny_config(epochs=4, save_every=2), "resumed")
    train_epochs(run, 3)
    del run  # as if the process had ended after epoch 3
    assert sorted(p.name for p in Path("resumed/checkpoints").iterdir()) == ["epoch-002.pt"]
    train(tiny_config(epochs=4, save_every=2), "resumed", resume="require")
    pd.testing.assert_frame_equal(results("resumed"), results("straight"))
    assert sorted(p.name for p in Path("resumed/checkpoints").iterdir()) == ["epoch-002.pt", "epoch-004.pt"]
    for name in ("epoch-002.pt", "epoch-004.pt"):
        a = read_checkpoint(f"resumed/checkpoints/{name}")["model_state"]
        b = read_checkpoint(f"straight/checkpoints/{name}")["model_state"]
        assert all(torch.equal(a[k], b[k]) for k in a)

    train(tiny_config(epochs=1), "straight", overwrite=True)  # a new run keeps none of the old one's copies
    assert not list(Path("straight/checkpoints").glob("*.pt"))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ResxError, match="save-every"):
            tiny_config(save_every=bad)


def test_train_many_runs_every_run():
    runs = [TrainingRun(tiny_config(epochs=2, seed=s), f"run{s}") for s in (0, 1)]
    train_many(runs)
    for s, run in zip((0, 1), runs):
        assert run.status == "finished" and len(pd.read_csv(f"run{s}/metrics.csv")) == 2


def test_train_many_equals_training_alone():
    train(tiny_config(epochs=2, seed=0), "alone")
    runs = [TrainingRun(tiny_config(epochs=2, seed=s), f"together{s}") for s in (0, 1)]
    train_many(runs)
    pd.testing.assert_frame_equal(results("together0"), results("alone"))


def test_train_many_pool_starts_queued_runs_as_others_finish():
    """A pool of 2 over 3 runs of different lengths: every run finishes, each with the numbers it gets alone."""
    train(tiny_config(epochs=1, seed=2), "alone2")
    queue = [lambda s=s, e=e: TrainingRun(tiny_config(epochs=e, seed=s), f"pool{s}")
             for s, e in ((0, 3), (1, 1), (2, 1))]
    started = train_many([], queue=queue, concurrency=2)
    assert [r.name for r in started] == ["pool0", "pool1", "pool2"]
    assert all(r.status == "finished" for r in started)
    pd.testing.assert_frame_equal(results("pool2"), results("alone2"))


# --- learning-rate schedule (He et al. 2015 §4.2) ------------------------------------------------------------


def lrs_used(run: TrainingRun) -> list[float]:
    """The lr each step of the run actually used, read from the step's lr tensor."""
    used = []
    while not run.done:
        for _ in run.steps():
            used.append(round(float(run.step.state.lr), 6))
        run.finish_epoch()
    return used


def test_lr_schedule_divides_by_ten_at_half_and_three_quarters():
    run = TrainingRun(tiny_config(epochs=4), "run")  # 32 iterations: milestones at 16 and 24
    assert run.total_iterations == 32
    assert [run.lr_at(i) for i in (0, 15, 16, 23, 24, 31)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    used = lrs_used(run)
    assert used == [0.1] * 16 + [0.01] * 8 + [0.001] * 8
    assert pd.read_csv("run/metrics.csv")["lr"].tolist() == pytest.approx([0.1, 0.1, 0.01, 0.001])


def test_lr_schedule_with_iterations_mid_epoch():
    run = TrainingRun(tiny_config(epochs=None, iterations=20), "run")  # milestones at 10 and 15
    used = lrs_used(run)
    assert used == [0.1] * 10 + [0.01] * 5 + [0.001] * 5
    assert pd.read_csv("run/metrics.csv")["iteration"].tolist() == [8, 16, 20]


def test_warmup_lr_until_train_error_below_80_percent():
    """ResNet-110 recipe: lr 0.01 until the training error is below 80%, then back to the schedule (0.1)."""
    run = TrainingRun(tiny_config(epochs=6, warmup_lr=0.01, lr_milestones=[0.99]), "run")  # no decay here
    used = lrs_used(run)
    metrics = pd.read_csv("run/metrics.csv")
    per_epoch = [used[i * 8 : (i + 1) * 8] for i in range(6)]
    warm = True
    for epoch, (lrs, row) in enumerate(zip(per_epoch, metrics.itertuples())):
        assert len(set(lrs)) == 1, "lr changed inside an epoch (warm-up is checked at epoch ends)"
        assert lrs[0] == pytest.approx(0.01 if warm else 0.1), f"epoch {epoch + 1}"
        assert row.lr == pytest.approx(lrs[0]), f"metrics.csv reports lr {row.lr} for epoch {epoch + 1}, trained at {lrs[0]}"
        warm = warm and row.train_error >= 0.8
    assert per_epoch[0][0] == pytest.approx(0.01)
    assert not warm, "the tiny task should leave warm-up within 6 epochs"


def test_warmup_survives_resume():
    cfg = tiny_config(epochs=3, warmup_lr=0.01, warmup_until_train_error=0.0)  # never below 0%: warm all along
    run = TrainingRun(cfg, "run")
    train_epochs(run, 1)
    del run
    train(cfg, "run", resume="require")
    assert pd.read_csv("run/metrics.csv")["lr"].tolist() == pytest.approx([0.01] * 3)


# --- configuration: defaults < YAML < options --------------------------------------------------------------


def test_config_precedence(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model: plain20\nlr: 0.05\nbatch_size: 64\niterations: 1000\nlr_milestones: [0.25, 0.5]\n")
    defaults = TrainConfig()
    from_yaml = resolve_config(path)
    assert (from_yaml.model, from_yaml.lr, from_yaml.batch_size, from_yaml.iterations) == ("plain20", 0.05, 64, 1000)
    assert from_yaml.momentum == defaults.momentum == 0.9 and from_yaml.weight_decay == 1e-4
    assert from_yaml.lr_milestones == [0.25, 0.5]
    both = resolve_config(path, {"lr": 0.2, "epochs": 3, "batch_size": None})
    assert both.lr == 0.2  # option beats YAML
    assert both.batch_size == 64  # None means 'not given'
    assert both.epochs == 3 and both.iterations is None  # --epochs replaces the YAML's iterations
    assert both.model == "plain20"


def test_config_defaults_are_the_paper_recipe():
    cfg = TrainConfig()
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size) == (0.1, 0.9, 1e-4, 128)
    assert cfg.lr_milestones == [0.5, 0.75] and cfg.lr_decay == 0.1


def test_config_yaml_int_where_float_expected(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("lr: 1\n")
    cfg = resolve_config(path)
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)


def test_config_unknown_option_key():
    with pytest.raises(ResxError, match="unknown key 'learning_rate'"):
        resolve_config(None, {"learning_rate": 0.1})


@pytest.mark.parametrize("key, value", [("lr", float("nan")), ("lr", float("inf")), ("weight_decay", float("nan")),
                                        ("weight_decay", float("inf")), ("warmup_lr", float("inf")), ("momentum", 1.0),
                                        ("lr_milestones", [0.5, 1.5]), ("epochs", 0), ("iterations", -1)])
def test_config_rejects_bad_numbers(key, value):
    with pytest.raises(ResxError, match=key.replace("_", "[-_]")):
        resolve_config(None, {key: value})


def test_config_yaml_error_names_the_line_where_it_began(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model: resnet8\nlr_milestones: [0.5, 0.75\nepochs: 2\n")
    with pytest.raises(ResxError, match=r"at line 3, column \d+: .*started at line 2\)"):
        resolve_config(path)


# --- the CUDA-graph path, exercised on the CPU with a stand-in for torch.cuda.graph ------------------------------


class _ReplayEager:
    """Stands in for a captured graph: replay() runs the captured function again."""

    def __init__(self, fn):
        self.fn = fn

    def replay(self):
        self.fn()


def _fake_capture(fn, *, warmup_steps=3, pool=None):
    for _ in range(warmup_steps):  # the real capture() runs the warm-up steps for real, as this does
        fn()
    return _ReplayEager(fn)


def test_graph_capture_warmup_leaves_training_exactly_as_eager(monkeypatch):
    """capture_graph() must undo its warm-up steps (weights, BN statistics, momentum, counters), so a graphed
    run trains exactly like an eager one. No GPU here: the capture is replaced by eager replays."""
    import resx.engine.step as step_module

    eager = TrainingRun(tiny_config(epochs=2), "eager")
    train_many([eager])
    monkeypatch.setattr(step_module, "capture", _fake_capture)
    graphed = TrainingRun(tiny_config(epochs=2), "graphed")
    graphed.step.capture_graph()
    assert graphed.step.graph is not None
    train_many([graphed])
    pd.testing.assert_frame_equal(results("graphed"), results("eager"))


def test_graphed_resume_from_the_end_of_an_epoch(monkeypatch):
    """A checkpoint written at the end of an epoch leaves the step's cursor past the epoch's last batch; the
    graph's warm-up steps must not start from there (on CUDA: a device-side assert). Resumed and graphed, the
    run still equals an uninterrupted eager one."""
    import resx.engine.step as step_module

    train(tiny_config(epochs=2), "straight")
    first = TrainingRun(tiny_config(epochs=2), "resumed")
    train_epochs(first, 1)
    del first
    monkeypatch.setattr(step_module, "capture", _fake_capture)
    run = TrainingRun(tiny_config(epochs=2), "resumed", resume="require")
    assert int(run.step.state.cursor) == run.step.steps_per_epoch
    run.step.capture_graph()
    assert int(run.step.state.cursor) == run.step.steps_per_epoch  # restored after the warm-up
    train_many([run])
    pd.testing.assert_frame_equal(results("resumed"), results("straight"))


def test_a_run_draws_from_its_own_generator():
    """Everything random in training (order, crops, flips, stochastic depth) comes from the run's generator:
    another run reseeding or drawing from the global generators between its steps changes nothing. (On CUDA,
    where graphs replay, this is what keeps concurrent runs independent and each one reproducible.)"""
    config = tiny_config(epochs=2, model="resnet14", stochastic_depth=0.5)
    train(config, "alone")
    run = TrainingRun(config, "disturbed")
    while not run.done:
        for _ in run.steps():
            torch.manual_seed(1234)  # what a queued run's setup does
            torch.rand(100)
        run.finish_epoch()
    pd.testing.assert_frame_equal(results("disturbed"), results("alone"))


def test_stochastic_depth_draws_follow_the_survival_probabilities():
    """Huang et al. 2016: block l is kept with probability p_l, one draw per block per mini-batch."""
    run = TrainingRun(tiny_config(model="resnet14", stochastic_depth=0.5), "sd")
    step = run.step
    assert step.stochastic_depth
    kept = torch.stack([step.start_epoch() or step.state.keep.clone() for _ in range(100)]).flatten(0, 1)
    assert set(kept.unique().tolist()) <= {0.0, 1.0}
    expected = torch.tensor(run.net.survival_probs())
    assert (kept.mean(0) - expected).abs().max() < 0.06  # 800 draws per block
    plain = TrainingRun(tiny_config(epochs=1), "no-sd")
    assert not plain.step.stochastic_depth


def test_channels_last_step_matches_the_default_layout():
    """CUDA runs use channels_last; the step (gather, pad, option A shortcut) must compute the same function."""
    a = TrainingRun(tiny_config(epochs=1), "contiguous")
    b = TrainingRun(tiny_config(epochs=1), "channels-last")
    b.net.to(memory_format=torch.channels_last)
    b.step.channels_last = True
    train_many([a])
    train_many([b])
    x, y = results("contiguous"), results("channels-last")
    assert (x["train_loss"] - y["train_loss"]).abs().max() < 1e-4


# --- device and precision choices that only a GPU run would reach ------------------------------------------------


@pytest.mark.parametrize("capability, expected", [((7, 5), "fp32"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_auto_precision_is_bf16_only_where_the_gpu_computes_it(monkeypatch, capability, expected):
    from resx.engine.device import resolve_precision

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert resolve_precision("auto", torch.device("cuda")) == expected
    assert resolve_precision("bf16", torch.device("cuda")) == "bf16"  # asked for: given


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse avx2 avx512f avx512_bf16", "bf16"),  # AVX-512 BF16 (AMD Zen 4/5, Intel Cooper Lake)
    ("fpu sse avx2 avx512f amx_bf16 amx_tile", "bf16"),  # AMX (Intel Sapphire Rapids)
    ("fpu sse avx2 avx512f", "fp32"),  # AVX-512 without BF16: bf16 would be emulated
    ("fpu sse avx2", "fp32"),
])
def test_auto_precision_on_the_cpu_is_bf16_only_where_it_is_native(monkeypatch, tmp_path, flags, expected):
    from resx.engine import device

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    real = device.cpu_native_bf16
    monkeypatch.setattr(device, "cpu_native_bf16", lambda: real(cpuinfo))
    precision, why = device.precision_choice("auto", torch.device("cpu"))
    assert precision == expected
    assert why.startswith("auto: ") and ("natively" in why if expected == "bf16" else "no native bf16" in why)
    assert device.precision_choice("fp32", torch.device("cpu")) == ("fp32", "asked for")


def test_cpu_without_readable_flags_trains_in_fp32(tmp_path):
    from resx.engine.device import cpu_native_bf16

    native, why = cpu_native_bf16(tmp_path / "absent")
    assert not native and "unknown" in why


def test_run_info_records_precision_layout_and_threads():
    train(tiny_config(epochs=1, precision="bf16", threads=1), "run")
    info = json.loads(Path("run/run_info.json").read_text())
    assert info["precision"] == "bf16" and info["precision_reason"] == "asked for"
    assert info["channels_last"] is True and info["cpu_threads"] == 1


def test_evaluation_ignores_padding_rows_even_when_they_overflow():
    """The graphed evaluation pads its last batch with stale rows; an infinite loss there must not make NaN."""
    from resx.data import load_dataset
    from resx.engine.evaluate import Evaluator

    data = load_dataset(TINY_DATA)
    evaluator = Evaluator(torch.nn.Identity(), data, device=torch.device("cpu"))
    logits_net = lambda x: torch.full((x.shape[0], data.num_classes), float("inf")).index_fill(1, torch.tensor([0]), 0.0)  # noqa: E731
    images, labels = data.test_images[:4], data.test_labels[:4]
    valid = torch.zeros(4, dtype=torch.bool)
    loss, wrong = evaluator._batch_stats(logits_net, images, labels, valid)
    assert float(loss) == 0.0 and int(wrong) == 0


def test_cuda_device_choice_makes_an_indexed_gpu_current(monkeypatch):
    """--device cuda:N must become the current device (graph capture uses the current device's streams); plain
    `cuda` is left as it is (torch.cuda.set_device refuses a device without an index)."""
    from torch.cuda._utils import _get_device_index

    from resx.engine.device import resolve_device

    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: current.append(_get_device_index(d)))
    assert resolve_device("cuda") == torch.device("cuda") and current == []
    assert resolve_device("auto") == torch.device("cuda") and current == []
    assert resolve_device("cuda:1") == torch.device("cuda:1") and current == [1]
    with pytest.raises(ResxError, match="only 2 CUDA device"):
        resolve_device("cuda:2")


def test_resume_on_another_device_type_reseeds_instead_of_failing():
    """CPU and CUDA generators keep different states: a run started on one device type and resumed on the other
    goes on (the current epoch's draws come from the checkpoint, later ones from a reseeded generator) and says so."""
    train(tiny_config(epochs=2), "straight")
    first = TrainingRun(tiny_config(epochs=2), "moved")
    train_epochs(first, 1)
    del first
    ckpt = torch.load("moved/checkpoint.pt", weights_only=False)
    ckpt["rng"] = {"step": torch.zeros(16, dtype=torch.uint8), "device": "cuda"}  # what a CUDA run saves
    torch.save(ckpt, "moved/checkpoint.pt")
    run = train(tiny_config(epochs=2), "moved", resume="require")
    assert run.status == "finished" and len(run.metrics) == 2
    assert json.loads(Path("moved/run_info.json").read_text())["resumed_from_device"] == "cuda"
    pd.testing.assert_frame_equal(results("moved").iloc[:1], results("straight").iloc[:1])


def test_graph_warmup_fits_an_epoch_of_fewer_than_three_batches(monkeypatch):
    import resx.engine.step as step_module

    monkeypatch.setattr(step_module, "capture", _fake_capture)
    run = TrainingRun(tiny_config(epochs=1, batch_size=128), "two-steps")
    assert run.step.steps_per_epoch == 2
    run.step.capture_graph()  # three warm-up steps would read the epoch's row 2 (on CUDA: a device-side assert)
    train_many([run])
    assert run.status == "finished"


def test_run_info_keeps_every_attempt_in_its_history():
    """Started on one thread, interrupted mid-epoch, resumed on two: run_info.json's history says both attempts
    (their thread counts, iterations, statuses, start times); the top level describes the latest one."""
    run = TrainingRun(tiny_config(epochs=2, threads=1), "run")
    train_epochs(run, 1)
    steps = run.steps()
    next(steps)
    run.save_interrupted()
    first = json.loads(Path("run/run_info.json").read_text())
    assert [h["status"] for h in first["history"]] == ["interrupted"]
    del run, steps

    train(tiny_config(epochs=2, threads=2), "run", resume="require")
    info = json.loads(Path("run/run_info.json").read_text())
    history = info["history"]
    assert [h["status"] for h in history] == ["interrupted", "finished"]
    assert [h["threads"] for h in history] == [1, 2]
    assert history[0]["iterations_at_start"] == 0 and history[0]["iterations_done"] == 9
    assert history[1]["iterations_at_start"] == 9 and history[1]["iterations_done"] == 16
    assert info["cpu_threads"] == 2 and info["provenance"]["threads"] == 2  # the latest attempt
    assert info["started"] == history[0]["start"] and history[1]["start"] >= history[0]["start"]
    for entry in history:
        assert {"start", "end", "git_commit", "resx_version", "torch", "device", "precision", "host"} <= set(entry)


def test_an_attempt_that_ended_without_a_word_is_recorded_as_killed():
    """A process killed outright leaves its attempt 'running' in run_info.json; the next attempt marks it killed."""
    run = TrainingRun(tiny_config(epochs=2), "run")
    train_epochs(run, 1)  # run_info.json now says running (as a SIGKILL would leave it)
    run.release_lock()
    del run
    train(tiny_config(epochs=2), "run", resume="require")
    history = json.loads(Path("run/run_info.json").read_text())["history"]
    assert [h["status"] for h in history] == ["killed", "finished"]
