"""`--task` and `--models`: names with options, `name:key=value[:key=value...]`.

--models is a comma list of such specs (onenet_res,mlp_plain:width=2,mlp_plain:width=3); inside it a `key=value`
without a name of its own continues the spec before it (mlp_res:width=3,stochastic_depth=0.8). --task is one spec
whose options may also be separated by commas (ball:radius=1,ring_inner=2). An unknown name or key is refused in one
line naming the allowed ones. A model's depth comes from --depths: `depth` is the number of blocks for every model
(onenet_res: one-neuron blocks; mlp_*: blocks of two layers, the registry's depth = 2 * blocks + 2; linear_*: one
matrix per block), and its input size from the task (input_dim = 2).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any

from resx.errors import ResxError
from resx.studies.approximate.declare import POINT_MODELS
from resx.studies.approximate.tasks import Task, make_task

INPUT_DIM = 2  # every task is points in the plane
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SET_BY_STUDY = ("depth", "input_dim")  # a model's options the study sets itself (from --depths and the task)


def _value(text: str) -> Any:
    """'2' -> 2, '0.5' -> 0.5, 'he' -> 'he', 'true' -> True."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_spec(text: str, what: str) -> tuple[str, dict[str, Any]]:
    """'mlp_plain:width=2' -> ('mlp_plain', {'width': 2}); `what` ('model', 'task') names it in errors."""
    name, _, rest = text.strip().partition(":")
    if not name:
        raise ResxError(f"bad {what} {text!r}: give a name, then options as name:key=value")
    options: dict[str, Any] = {}
    for part in filter(None, re.split(r"[:,]", rest)):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not _KEY.match(key) or not value.strip():
            raise ResxError(f"bad {what} {text!r}: options are key=value, e.g. {name}:key=value")
        options[key] = _value(value)
    return name.strip(), options


def split_specs(text: str, what: str) -> list[str]:
    """'a,b:x=1,y=2,c' -> ['a', 'b:x=1:y=2', 'c']: a `key=value` part continues the spec before it."""
    specs: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "=" in part and ":" not in part.split("=")[0]:
            if not specs:
                raise ResxError(f"bad {what}s {text!r}: {part!r} has no {what} before it (give name:key=value)")
            specs[-1] += f":{part}"
        else:
            specs.append(part)
    if not specs:
        raise ResxError(f"no {what} in {text!r}; give at least one")
    return specs


def resolve_task(text: str | Task) -> Task:
    if isinstance(text, Task):
        return text
    name, options = parse_spec(text, "task")
    return make_task(name, options)


@dataclass(frozen=True)
class ModelChoice:
    """One model spec of --models, resolved against the registry."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return ":".join([self.name, *(f"{k}={v}" for k, v in sorted(self.options.items()))])

    @property
    def spec(self):
        from resx.models import get_model_spec

        return get_model_spec(self.name)

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def residual(self) -> bool:
        return self.spec.residual

    @property
    def width(self) -> int:
        """The hidden layers' width: a one-neuron block's 1, else the `width` option or the builder's default."""
        if self.family == "onenet":
            return 1
        if "width" in self.options:
            return int(self.options["width"])
        return int(inspect.signature(self.spec.builder).parameters["width"].default)

    def registry_depth(self, blocks: int) -> int:
        return 2 * blocks + 2 if self.family == "mlp" else blocks

    def hidden_layers(self, blocks: int) -> int:
        """ReLU layers between the input and the read-out: the MLP's input layer and two per block; one per
        one-neuron block; none in a deep linear net."""
        return {"mlp": 2 * blocks + 1, "onenet": blocks}.get(self.family, 0)

    def build(self, blocks: int, num_classes: int = 2):
        from resx.models import create_model

        return create_model(self.name, depth=self.registry_depth(blocks), input_dim=INPUT_DIM,
                            num_classes=num_classes, **self.options)


def resolve_models(text: str | list[str]) -> list[ModelChoice]:
    """The specs of --models, each checked (a known point model, known keys, and a net the registry can build,
    tried on the meta device); a spec given twice is kept once."""
    import torch

    specs = split_specs(text, "model") if isinstance(text, str) else list(text)
    choices: list[ModelChoice] = []
    for text_spec in specs:
        name, options = parse_spec(text_spec, "model")
        if name not in POINT_MODELS:
            raise ResxError(f"unknown model {name!r} for approximate (it takes 2-D points); allowed: "
                            f"{', '.join(POINT_MODELS)}")
        from resx.models import get_model_spec

        allowed = [o for o in get_model_spec(name).options if o not in SET_BY_STUDY]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            why = " (its depth comes from --depths)" if unknown[0] == "depth" else ""
            raise ResxError(f"model {name!r} has no option {unknown[0]!r}{why}; allowed: "
                            f"{', '.join(allowed) or 'none'}")
        if "width" in options and (isinstance(options["width"], bool) or not isinstance(options["width"], int)):
            raise ResxError(f"model {name!r}: width must be a whole number, got {options['width']!r}")
        choice = ModelChoice(name, options)
        try:
            with torch.device("meta"):
                choice.build(1)  # a bad value (width=0, init=foo) is refused now, in the registry's words
        except TypeError as e:
            raise ResxError(f"model {choice.label!r}: {str(e).splitlines()[0]}") from None
        if choice.label not in {c.label for c in choices}:
            choices.append(choice)
    return choices
