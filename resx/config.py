"""Training configuration: dataclass defaults < YAML experiment file < command-line options.

The defaults are He et al. 2015's CIFAR recipe (§4.2): SGD, momentum 0.9, weight decay 1e-4, batch 128,
lr 0.1 divided by 10 at 32k and 48k of 64k iterations (50% and 75%), He init, pad-4 crop + flip.
One iteration is one batch (of `batch_size`, 128 by default).
Two deliberate differences, both usual in PyTorch reproductions: inputs are standardised per channel (mean and std
of the training set) where He et al. subtract the per-pixel mean, and the warm-up (`warmup_lr`) ends when an
epoch's training error is below 80%, checked at the end of each epoch (He et al.: "about 400 iterations").
Crops are padded with the mean colour, as He et al.'s mean-subtracted images were padded with zeros.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from resx.errors import ResxError
from resx.models.variants import parse_block, parse_shortcut, split_model_name

PAPER_ITERATIONS = 64_000


@dataclass
class TrainConfig:
    model: str = "resnet20"
    data: str = "cifar10"
    data_dir: str | None = None  # else $RESX_DATA, else ./data
    # Length of training: give one of them; with neither, the paper's 64k iterations.
    epochs: int | None = None
    iterations: int | None = None
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # lr is multiplied by lr_decay at each milestone, given as fractions of training (32k/64k, 48k/64k).
    lr_milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    lr_decay: float = 0.1
    # He et al. 2015 §4.2, ResNet-110: "we use 0.01 to warm up the training until the training error is
    # below 80% (about 400 iterations), and then go back to 0.1". Checked at the end of each epoch.
    warmup_lr: float | None = None
    warmup_until_train_error: float = 0.8
    # Model options (None: the model's default).
    # 'A' (identity + zero-pad) or 'B' (projection), or a variant of He et al. 2016 Table 1 (identity, scale-L,
    # frozen-gate-L, exclusive-gate[-bN], shortcut-gate[-bN], conv1x1, dropout-P; resx/models/variants.py)
    shortcut: str | None = None
    # where BN and ReLU sit (He et al. 2016 Table 2 / Fig. 4): original (None) | bn-after-add | relu-before-add |
    # relu-only-preact | full-preact
    block: str | None = None
    stochastic_depth: float | None = None  # p_L, survival probability of the last block (Huang et al.: 0.5)
    depth: int | None = None  # MLPs only
    width: int | None = None  # MLPs only
    # Residual branches start at zero (their last BN weight 0; Goyal et al. 2017 §5.1). Residual nets only; a grid
    # applies it to the residual twins, never to plain nets. Not the papers' recipe: the demo's MLPs use it.
    zero_init_residual: bool | None = None
    augment: bool | None = None  # None: the dataset's default (on for CIFAR and imagefolder)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 where the GPU or CPU computes it natively, else fp32) | fp32 | bf16
    graph: bool = True  # capture the training step as a CUDA graph (CUDA only)
    eval_batch_size: int = 1000
    threads: int | None = None  # CPU intra-op threads (None: one per core); changes speed, never results' meaning
    # iterations.csv: a row every curve_every iterations, with the training error over the last curve_window
    # batches (He et al. 2015 Fig. 6 draws training error against iterations)
    curve_window: int = 100
    curve_every: int = 10
    # Every N epochs, also keep that epoch's checkpoint as RUN_DIR/checkpoints/epoch-NNN.pt (None: only the
    # latest, checkpoint.pt), for studies of the net along training. Changes no result; may change on resume.
    save_every: int | None = None

    def validate(self) -> "TrainConfig":
        self._split_model_name()

        def positive(name: str) -> None:
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):  # rejects nan and inf too
                what = "positive" if math.isfinite(value) else "a finite positive number"
                raise ResxError(f"{name.replace('_', '-')} must be {what}, got {value}")

        for name in ("epochs", "iterations", "batch_size", "lr", "eval_batch_size", "lr_decay", "threads",
                     "curve_window", "curve_every"):
            positive(name)
        if self.save_every is not None and (isinstance(self.save_every, bool) or not isinstance(self.save_every, int)
                                            or self.save_every < 1):
            raise ResxError(f"save-every is a number of epochs, at least 1, got {self.save_every!r}")
        if self.epochs is not None and self.iterations is not None:
            raise ResxError("give either epochs or iterations, not both")
        if not 0 <= self.momentum < 1:
            raise ResxError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ResxError(f"weight-decay must be >= 0, got {self.weight_decay}")
        if any(not 0 < m < 1 for m in self.lr_milestones):
            raise ResxError(f"lr_milestones are fractions of training in (0, 1), got {self.lr_milestones}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ResxError(f"unknown device {self.device!r}; allowed: auto, cpu, cuda")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ResxError(f"unknown precision {self.precision!r}; allowed: auto, fp32, bf16")
        if self.shortcut is not None:
            parse_shortcut(self.shortcut)
        if self.block is not None:
            parse_block(self.block)
        if self.stochastic_depth is not None and not 0 < self.stochastic_depth <= 1:
            raise ResxError(f"stochastic-depth is the last block's survival probability in (0, 1], got {self.stochastic_depth}")
        if self.warmup_lr is not None and not (self.warmup_lr > 0 and math.isfinite(self.warmup_lr)):
            raise ResxError(f"warmup-lr must be positive, got {self.warmup_lr}")
        kind, _, where = self.data.partition(":")
        if kind == "imagefolder" and where:  # absolute, so that a run's data is found from any folder (lesion, paths)
            self.data = f"imagefolder:{os.path.abspath(os.path.expanduser(where))}"
        return self

    def _split_model_name(self) -> None:
        """`resnet20:block=full-preact` -> model resnet20, block full-preact: a name's options become the config's own
        keys (so config.yaml records each as every key is); one that contradicts a key given otherwise is refused."""
        base, options = split_model_name(self.model)
        if not options:
            return
        hints = get_type_hints(TrainConfig)
        for key, value in options.items():
            if key not in NAME_OPTION_KEYS:
                raise ResxError(f"model {self.model!r}: option {key!r} cannot be given in a model name for training; "
                                f"allowed: {', '.join(NAME_OPTION_KEYS)}")
            value = _coerce(key, value, hints[key], f"model {self.model!r}")
            given = getattr(self, key)
            if given is not None and given != value:
                raise ResxError(f"model {self.model!r} sets {key}={value} but {key}={given} is also given; "
                                "give it once (in the name or as an option)")
            setattr(self, key, value)
        self.model = base

    def model_options(self) -> dict[str, Any]:
        opts = dict(shortcut=self.shortcut, block=self.block, stochastic_depth=self.stochastic_depth, depth=self.depth, width=self.width,
                    zero_init_residual=self.zero_init_residual or None)
        return {k: v for k, v in opts.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CONFIG_KEYS = tuple(f.name for f in fields(TrainConfig))
# The model options a model name may carry in a training config (resnet20:block=full-preact,shortcut=scale-0.5)
NAME_OPTION_KEYS = ("shortcut", "block", "stochastic_depth", "depth", "width", "zero_init_residual")


def milestone_iterations(milestones: list[float], total: int) -> list[int]:
    """Where the lr schedule's milestones (fractions of training) fall, as iteration numbers: the first iteration
    trained at the decayed lr. Never before iteration 1, so that at least the first step is taken at `lr`: with
    one iteration, round(0.5 * 1) = 0 would decay the lr before any step (a run with fewer iterations than
    milestones need then keeps `lr` throughout, rather than starting decayed)."""
    return [max(1, round(m * total)) for m in milestones]


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _exponent_float(value: Any) -> Any:
    """PyYAML (YAML 1.1) reads `1e-3` and `5e-4`, exponent floats without a dot, as strings: take them as the
    numbers they are."""
    if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)
    return value


def _coerce(name: str, value: Any, hint: Any, source: str) -> Any:
    """Check a YAML value against the dataclass field's type; ints are accepted where floats are."""
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise ResxError(f"{source}: {name} must not be empty")
    if "list" in text:
        if isinstance(value, list):
            value = [_exponent_float(v) for v in value]
        if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ResxError(f"{source}: {name} must be a list of numbers, got {value!r}")
        return [float(v) for v in value]
    if "float" in text:
        value = _exponent_float(value)
    if "bool" in text:
        if not isinstance(value, bool):
            raise ResxError(f"{source}: {name} must be true or false, got {value!r}")
        return value
    if "int" in text and "float" not in text:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ResxError(f"{source}: {name} must be an integer, got {value!r}")
        return value
    if "float" in text:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ResxError(f"{source}: {name} must be a number, got {value!r}")
        return float(value)
    if "str" in text:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ResxError(f"{source}: {name} must be a string, got {value!r}")
        return str(value)
    return value


def packaged_experiments() -> Path:
    """The experiment files and reproduce profiles that ship inside the package (resx/experiments/*.yaml; the
    repository's experiments/ is a link to them), wherever resx is installed."""
    from importlib.resources import files

    return Path(str(files("resx") / "experiments"))


def find_experiment(path: str | Path) -> Path:
    """`path` when it is a file; else the packaged experiment of that name ('degradation-paper',
    'degradation-paper.yaml' or 'experiments/degradation-paper.yaml'), so that the README's commands work from any
    folder and from an installed wheel; else a one-line error naming the packaged ones (and, for a folder, that
    a file is needed and the YAML files it holds)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.parent in (Path("."), Path("experiments")):
        name = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
        packaged = packaged_experiments() / name
        if packaged.is_file():
            return packaged
    known = sorted(p.stem for p in packaged_experiments().glob("*.yaml"))
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        hint = f"YAML files in it: {', '.join(inside)}" if inside else f"packaged experiment files: {', '.join(known)}"
        raise ResxError(f"config file {path} is a folder, not a file; give a YAML experiment file ({hint})")
    if path.exists():
        raise ResxError(f"config file {path} is not a regular file; give a YAML experiment file")
    raise ResxError(f"config file {path} not found; packaged experiment files: {', '.join(known)}")


_YAML_LOADER: type | None = None


def yaml_loader() -> type:
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one silently: `lr`
    twice would train with the second and never say so). The error is a YAML error marked at the second key, with
    the line of the first; merge keys (`<<: *defaults`) may still be overridden, as YAML intends."""
    global _YAML_LOADER
    if _YAML_LOADER is not None:
        return _YAML_LOADER
    import yaml
    from yaml.constructor import ConstructorError

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
            if isinstance(node, yaml.MappingNode):
                seen: dict = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.get(key)
                    except TypeError:  # an unhashable key: the constructor reports it
                        continue
                    if first is not None:
                        raise ConstructorError(None, None, f"key {key!r} given twice (first at line {first.line + 1}); "
                                                           f"give each key once", key_node.start_mark)
                    seen[key] = key_node.start_mark
            return super().construct_mapping(node, deep=deep)

    _YAML_LOADER = UniqueKeyLoader
    return UniqueKeyLoader


def load_yaml_text(text: str) -> Any:
    """yaml.safe_load, with keys given twice refused (`yaml_loader`); raises yaml.YAMLError."""
    import yaml

    return yaml.load(text, Loader=yaml_loader())  # noqa: S506 (a SafeLoader subclass)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; one-line errors for a missing file, a folder, bad syntax (with the line), a key given
    twice (with both lines) or a non-mapping."""
    import yaml

    path = find_experiment(path)
    try:
        data = load_yaml_text(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        # where the broken construct began (e.g. an unclosed '[' lines before the error is detected)
        context, start = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and start and (not mark or start.line != mark.line):
            problem += f" ({context} started at line {start.line + 1})"
        raise ResxError(f"config file {path} is not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ResxError(f"config file {path} is not a text file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ResxError(f"config file {path} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def check_keys(data: dict[str, Any], allowed: tuple[str, ...], source: str) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise ResxError(f"{source}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")


# Sections of an experiment file (experiments/*.yaml), besides one per registered study that has settings (lesion,
# paths, landscape, ...: each study's declare.py). A file may also be a bare mapping of TrainConfig keys.
SECTIONS = ("train", "compare_plain", "reproduce")


def experiment_sections() -> tuple[str, ...]:
    from resx.studies.registry import registered

    return SECTIONS + tuple(s.name for s in registered() if s.settings is not None)


def read_experiment(path: str | Path) -> dict[str, dict[str, Any]]:
    """An experiment file split into sections: {'train': {...}, 'compare_plain': {...}, ...}.
    A file with no section names is the 'train' section alone."""
    data = read_yaml(path)
    sections = experiment_sections()
    if not any(k in sections for k in data):  # a bare training config (its keys are checked by TrainConfig)
        return {"train": data}
    check_keys(data, sections, str(path))
    for name, section in data.items():
        if section is None:
            data[name] = {}
        elif not isinstance(section, dict):
            raise ResxError(f"{path}: section {name!r} must be a mapping of keys to values")
    return data


def train_config_from(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Validate the TrainConfig part of a mapping (from YAML); returns the typed values."""
    check_keys(data, CONFIG_KEYS, source)
    hints = get_type_hints(TrainConfig)
    return {k: _coerce(k, v, hints[k], source) for k, v in data.items()}


def resolve_config(
    yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None, *, base: TrainConfig | None = None
) -> TrainConfig:
    """defaults < YAML < overrides (None values in `overrides` mean 'not given')."""
    values = asdict(base) if base else asdict(TrainConfig())
    if yaml_path is not None:
        values.update(train_config_from(read_experiment(yaml_path).get("train", {}), str(yaml_path)))
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    check_keys(given, CONFIG_KEYS, "options")
    # --epochs on the command line replaces iterations from the YAML, and vice versa.
    if "epochs" in given:
        values["iterations"] = None
    if "iterations" in given:
        values["epochs"] = None
    values.update(given)
    return TrainConfig(**values).validate()


def replace(config: TrainConfig, **changes: Any) -> TrainConfig:
    return dataclasses.replace(config, **changes).validate()
