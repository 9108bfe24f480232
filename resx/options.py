"""The numeric command-line options of every command, checked in one place.

An option has the same name and meaning in every command that takes it (`--batch-size`, `--seed`, `--seconds`,
...), so one table (RULES) says what each may be; `check_numbers` applies it to a command's parameters before
anything is computed. NaN and infinity are refused wherever a number is expected. The library validates again
where it takes the same values (TrainConfig.validate), with the same messages. Lists of numbers are parsed here
too: `float_list`, and `int_list` (numbers, ranges such as 1..10, comma lists) for every option that takes integers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
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
    "curve_every": AT_LEAST_1, "curve_window": AT_LEAST_1, "save_every": AT_LEAST_1,
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


INT_LIST_FORMS = "integers: a number (5), a range (1..10, both ends included), a comma list (1,2,5) or a mix (1..3,8)"


def int_list(text: str | int | Iterable[int], option: str, *, minimum: int | None = None, allow_empty: bool = True,
             forms: str = INT_LIST_FORMS) -> list[int]:
    """The integers of an option's value, in the order given (duplicates kept): '5', '1..10', '1,2,5' or mixes
    such as '1..3,8'; spaces are ignored. An int or a sequence of ints (library callers) is taken as it is.
    Refused in one line naming `option`: other syntax, a range whose end is below its start, a value below
    `minimum`, and (unless `allow_empty`) no value at all. `forms` says, in the syntax error, what is accepted."""
    if isinstance(text, bool):
        raise ResxError(f"bad {option} {text!r}; give {forms}")
    if isinstance(text, int):
        values = [text]
    elif not isinstance(text, str):
        values = [int(v) for v in text]
    else:
        values = []
        for part in text.replace(" ", "").split(","):
            if not part:
                continue  # '8,' and '' have no value there
            m = re.fullmatch(r"(\d+)(?:\.\.(\d+))?", part)
            if not m:
                raise ResxError(f"bad {option} {text!r}; give {forms}")
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if hi < lo:
                raise ResxError(f"bad {option} range {part!r}: the end is below the start")
            values += range(lo, hi + 1)
    if not values and not allow_empty:
        raise ResxError(f"bad {option} {text!r}: give at least one value; {forms}")
    if minimum is not None and any(v < minimum for v in values):
        raise ResxError(f"bad {option} {text!r}: {option} takes integers >= {minimum}")
    return values
