"""Shortcut and block variants of He, Zhang, Ren, Sun 2016, "Identity Mappings in Deep Residual Networks" (ECCV), and
the zoo's `name:key=value` grammar: the one place where their names are parsed and checked. No torch here, so that
configuration checks (resx/config.py) stay fast; resx/models/shortcuts.py and blocks.py build what is parsed here.

Shortcuts (the paper's Table 1, Fig. 2; ResNet-110 on CIFAR-10): the paper's eq. (3) with h(x) = x is the identity; its
eqs. (4)-(6) show that any other multiplicative h(x_l) = lambda_l x_l makes the signal between two distant blocks a
product of lambdas, which vanishes or explodes with depth. The variants below are the ones it trained to show this.
Blocks (Table 2, Fig. 4): where BN and ReLU sit relative to the addition; only full pre-activation (e) leaves both
the forward and the backward path from one block to any other a clean identity.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from resx.errors import ResxError

MAX_GATE_BIAS = 10  # the -bN forms take N = 0..10 (the paper tried b_g from 0 to -7)

# (form, what it is): `resx models` prints these, and the one-line errors name the forms.
SHORTCUT_FORMS: tuple[tuple[str, str], ...] = (
    ("A", "identity; subsample + zero-pad where the shape changes (He et al. 2015, option A; CIFAR default)"),
    ("B", "identity; 1x1 conv + BN projection where the shape changes (He et al. 2015, option B)"),
    ("identity", "= A: the paper's original shortcut h(x) = x (He et al. 2016, Table 1: 6.61%)"),
    ("scale-L", "shortcut times a constant L >= 0, e.g. scale-0.5 (fails), scale-0 (a plain net)"),
    ("frozen-gate-L", "shortcut times 1-L, branch times L, 0 <= L <= 1; frozen-gate-0.5: 12.35%"),
    ("exclusive-gate[-bN]", "g(x)F(x) + (1-g(x))x, g = sigmoid(1x1 conv + b), b starts at -N (default -6: 8.70%)"),
    ("shortcut-gate[-bN]", "F(x) + (1-g(x))x, g as above, b starts at -N (default 0: 12.86%; -b6: 6.91%)"),
    ("conv1x1", "a 1x1 conv + BN projection on every block (12.22%)"),
    ("dropout-P", "dropout with probability P on the shortcut in training, identity at test, e.g. dropout-0.5"),
)
BLOCK_FORMS: tuple[tuple[str, str], ...] = (
    ("original", "(a) conv-BN-ReLU-conv-BN, add, ReLU (He et al. 2015; 2016 Table 2: 6.61%)"),
    ("bn-after-add", "(b) conv-BN-ReLU-conv, add, BN, ReLU (8.17%)"),
    ("relu-before-add", "(c) conv-BN-ReLU-conv-BN-ReLU, add (7.84%)"),
    ("relu-only-preact", "(d) ReLU-conv-BN-ReLU-conv-BN, add (6.71%)"),
    ("full-preact", "(e) BN-ReLU-conv-BN-ReLU-conv, add (6.37%); = preresnetN"),
)
BLOCK_NAMES = tuple(name for name, _ in BLOCK_FORMS)
SHORTCUT_ALLOWED = ("A, B, identity, scale-L (L >= 0), frozen-gate-L (0 <= L <= 1), exclusive-gate, exclusive-gate-bN, "
                    f"shortcut-gate, shortcut-gate-bN (N = 0..{MAX_GATE_BIAS}), conv1x1, dropout-P (0 <= P < 1)")

# Exclusive gating fails at b_g = 0..-5 and is best at -6 (8.70%); shortcut-only gating is the paper's first row at 0
# (12.86%) and best at -6 (6.91%): the bare names are each gate's row of Table 1 that is listed first.
_DEFAULT_BIAS = {"exclusive-gate": -6.0, "shortcut-gate": 0.0}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"


@dataclass(frozen=True)
class ShortcutVariant:
    """One parsed `shortcut` value. kind: A | B | scale | frozen-gate | exclusive-gate | shortcut-gate | conv1x1 |
    dropout. value: L (scale, frozen-gate), P (dropout) or the gate's initial bias (gates); None otherwise."""

    name: str
    kind: str
    value: float | None = None

    @property
    def base(self) -> str:
        """What maps x where the shape changes: 'B' projects, every other variant acts on option A's map
        (subsample + zero-pad), so its parameters are the option-A net's plus its gates (He et al. 2016 §3)."""
        return "B" if self.kind == "B" else "A"


def parse_shortcut(name: str) -> ShortcutVariant:
    """A `shortcut` value -> its variant; a one-line ResxError naming the allowed forms otherwise."""
    text = str(name).strip()
    if text in ("A", "identity"):
        return ShortcutVariant(text, "A")
    if text in ("B", "conv1x1"):
        return ShortcutVariant(text, text)
    if text in _DEFAULT_BIAS:
        return ShortcutVariant(text, text, _DEFAULT_BIAS[text])
    m = re.fullmatch(r"(exclusive-gate|shortcut-gate)-b(\d+)", text)
    if m and int(m.group(2)) <= MAX_GATE_BIAS:
        return ShortcutVariant(text, m.group(1), -float(int(m.group(2))))
    m = re.fullmatch(rf"(scale|frozen-gate|dropout)-{_NUMBER}", text)
    if m:
        kind, value = m.group(1), float(m.group(2))
        ok = {"scale": math.isfinite(value), "frozen-gate": value <= 1, "dropout": value < 1}[kind]
        if ok:
            return ShortcutVariant(text, kind, value)
    raise ResxError(f"unknown shortcut {text!r}; allowed: {SHORTCUT_ALLOWED}")


def parse_block(name: str) -> str:
    """A `block` value, checked; a one-line ResxError naming the allowed ones otherwise."""
    text = str(name).strip()
    if text not in BLOCK_NAMES:
        raise ResxError(f"unknown block {text!r}; allowed: {', '.join(BLOCK_NAMES)}")
    return text


# --- the zoo's name grammar -----------------------------------------------------------------------------------------

STRING_OPTIONS = ("shortcut", "block", "init")  # values kept as text even where they look like numbers


def _value(key: str, text: str) -> object:
    if key in STRING_OPTIONS:
        return text
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def split_model_name(name: str) -> tuple[str, dict[str, object]]:
    """'resnet20:shortcut=scale-0.5,block=full-preact' -> ('resnet20', {'shortcut': 'scale-0.5', 'block': ...}).
    Options follow the first ':' and are separated by ',' or ':'; '-' in a key reads as '_' (stochastic-depth).
    Values: text for shortcut, block and init; else integers, numbers and true/false as such."""
    base, sep, rest = str(name).partition(":")
    if not sep:
        return name, {}
    if not base:
        raise ResxError(f"model {name!r} has options but no name; write NAME:key=value[,key=value], "
                        "e.g. resnet20:block=full-preact")
    options: dict[str, object] = {}
    for part in re.split(r"[,:]", rest):
        key, eq, text = (s.strip() for s in part.partition("="))
        key = key.replace("-", "_")
        if not eq or not key or not text:
            raise ResxError(f"model {name!r}: option {part.strip()!r} is not key=value; write "
                            "NAME:key=value[,key=value], e.g. resnet20:shortcut=scale-0.5,block=full-preact")
        if key in options:
            raise ResxError(f"model {name!r} gives option {key!r} twice; give each once")
        options[key] = _value(key, text)
    return base, options


def merge_name_options(name: str, options: dict[str, object], given: dict[str, object]) -> dict[str, object]:
    """`given` (options set explicitly, None meaning 'not given') with the name's `options` added; a name option that
    contradicts an explicit one is refused in one line."""
    merged = {k: v for k, v in given.items() if v is not None}
    for key, value in options.items():
        if key in merged and merged[key] != value:
            raise ResxError(f"model {name!r} sets {key}={value} but {key}={merged[key]} is also given; "
                            "give it once (in the name or as an option)")
        merged[key] = value
    return merged
