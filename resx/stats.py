"""Mean ± standard deviation over repeats (seeds, draws, samples), the one way every study and figure computes it.

The standard deviation is the sample one (ddof = 1), over the values present (missing ones are left out); for a
group of one value it is undefined: NaN, or `one_value_std` where a table shows 0 instead (summary.csv).
No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

STATS_COLUMNS = ("mean", "std", "count")


def mean_std(frame: pd.DataFrame, by: str | Sequence[str], column: str, *, sort: bool = True,
             one_value_std: float | None = None) -> pd.DataFrame:
    """Per group of `by`: the mean, the sample standard deviation and the number of values of `column`, as
    columns mean, std, count of a frame indexed by the groups (in sorted order, or first-seen with sort=False)."""
    keys = by if isinstance(by, str) else list(by)
    stats = frame.groupby(keys, sort=sort)[column].agg(["mean", "std", "count"])
    if one_value_std is not None:
        stats.loc[stats["count"] == 1, "std"] = one_value_std
    return stats
