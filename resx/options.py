"""The numeric command-line options of every command, checked in one place.

An option has the same name and meaning in every command that takes it (`--batch-size`, `--seed`, `--seconds`,
...), so one table (RULES) says what each may be; `check_numbers` applies it to a command's parameters before
anything is computed. NaN and infinity are refused wherever a number is expected. The library validates again
where it takes the same values (TrainConfig.validate), with the same messages.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from resx.errors import ResxError

# name: (lowest, lowest allowed itself?, highest or None, highest allowed itself?)
POSITIVE = (0, False, None, False)
AT_LEAST_1 = (1, True, None, False)
NON_NEGATIVE = (0, True, None, False)
RULES: dict[str, tuple[float, bool, float | None, bool]] = {
    # training
    "epochs": POSITIVE, "iterations": POSITIVE, "batch_size": POSITIVE, "lr": POSITIVE, "warmup_lr": POSITIVE,
    "momentum": (0, True, 1, False), "weight_decay": NON_NEGATIVE, "stochastic_depth": (0, False, 1, True),
    "depth": POSITIVE, "width": POSITIVE, "seed": NON_NEGATIVE, "threads": POSITIVE,
    "curve_every": AT_LEAST_1, "curve_window": AT_LEAST_1,
    # studies
    "seeds": AT_LEAST_1, "concurrency": AT_LEAST_1, "max_k": AT_LEAST_1, "draws": AT_LEAST_1,
    "cache_mb": NON_NEGATIVE, "samples": AT_LEAST_1,
    # bench
    "seconds": POSITIVE, "rounds": AT_LEAST_1, "workers": NON_NEGATIVE,
}


def _describe(rule: tuple[float, bool, float | None, bool]) -> str:
    low, low_ok, high, high_ok = rule
    if high is None:
        return "positive" if (low, low_ok) == (0, False) else f"{'at least' if low_ok else 'more than'} {low:g}"
    return f"in {'[' if low_ok else '('}{low:g}, {high:g}{']' if high_ok else ')'}"


def check_number(name: str, value: Any) -> None:
    """Refuse `value` for option `name` (a RULES key) in one line: what was given and what is allowed."""
    if value is None or isinstance(value, bool) or name not in RULES:
        return
    rule = RULES[name]
    option = "--" + name.replace("_", "-")
    if isinstance(value, (list, tuple)):
        for v in value:
            check_number(name, v)
        return
    if isinstance(value, float) and not math.isfinite(value):
        what = "a finite positive number" if rule == POSITIVE else f"a finite number {_describe(rule)}"
        raise ResxError(f"{option} must be {what}, got {value}")
    low, low_ok, high, high_ok = rule
    fine = (value >= low if low_ok else value > low) and (high is None or (value <= high if high_ok else value < high))
    if not fine:
        raise ResxError(f"{option} must be {_describe(rule)}, got {value}")


def check_numbers(values: Mapping[str, Any]) -> None:
    """Check every parameter of a command that RULES knows (call with the command's `locals()`)."""
    for name, value in values.items():
        check_number(name, value)


def float_list(text: str | None, option: str) -> list[float] | None:
    """'0.5,0.75' -> [0.5, 0.75] (None stays None); NaN and infinity refused."""
    if text is None:
        return None
    try:
        values = [float(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise ResxError(f"{option} takes numbers separated by commas (e.g. 0.5,0.75), got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ResxError(f"{option} takes finite numbers separated by commas (e.g. 0.5,0.75), got {text!r}")
    return values
