"""`--shard I/N` (and `--shard auto`): which slice of a study's work this process does, one parser for every study
that shards (compare-plain's grid, landscape's points).

`auto` reads a SLURM job array's variables: the task's index SLURM_ARRAY_TASK_ID counted from SLURM_ARRAY_TASK_MIN
(default 0 when the array starts there, so `--array=0-7` and `--array=1-8` both give shards 1/8 .. 8/8) and their
number SLURM_ARRAY_TASK_COUNT. Outside an array job, `auto` is the whole job (1/1), said by `describe_shard`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from resx.errors import ResxError

SLURM_VARS = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN")


def slurm_shard(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """(I, N) of this SLURM array task, or None outside an array job; one line for variables that make no sense."""
    env = os.environ if environ is None else environ
    if "SLURM_ARRAY_TASK_ID" not in env:
        return None
    try:
        task = int(env["SLURM_ARRAY_TASK_ID"])
        count = int(env.get("SLURM_ARRAY_TASK_COUNT", ""))
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
    except ValueError:
        shown = ", ".join(f"{k}={env.get(k)!r}" for k in SLURM_VARS)
        raise ResxError(f"--shard auto: the SLURM array variables are not integers ({shown})") from None
    index = task - first + 1
    if count < 1 or not 1 <= index <= count:
        raise ResxError(f"--shard auto: SLURM_ARRAY_TASK_ID={task} with SLURM_ARRAY_TASK_MIN={first} and "
                        f"SLURM_ARRAY_TASK_COUNT={count} is not one of {count} consecutive tasks; use --array=1-N "
                        "(or 0-(N-1)) without steps, or give --shard I/N")
    return index, count


def parse_shard(shard: str | Sequence[int] | None, environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """'I/N', 'auto' or (I, N) -> (I, N) with 1 <= I <= N; None stays None (the whole job). 'auto' is the SLURM
    array task's slice, or None outside an array job."""
    if shard is None:
        return None
    if isinstance(shard, str):
        if shard.strip().lower() == "auto":
            return slurm_shard(environ)
        try:
            index, count = (int(p) for p in shard.split("/"))
        except ValueError:
            raise ResxError(f"--shard {shard}: expected I/N (e.g. 1/4) or auto (a SLURM array task's)") from None
    else:
        try:
            index, count = (int(v) for v in shard)
        except (TypeError, ValueError):
            raise ResxError(f"--shard {shard!r}: expected (I, N), e.g. (1, 4)") from None
    if count < 1 or not 1 <= index <= count:
        raise ResxError(f"--shard {index}/{count}: I must be between 1 and N (N >= 1)")
    return index, count
