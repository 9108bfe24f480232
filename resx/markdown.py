"""Markdown for REPORT.md: tables, percentages, durations, figure links and section headings.

Torch-free, so that every study's report section (resx/studies/<name>/report.py) can use it without importing a model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

DASH = "—"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured markdown table (no tabulate needed). `align`: one of l/r/c per column (default: l)."""
    def cell(value: Any) -> str:
        text = DASH if value is None or (isinstance(value, float) and value != value) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    rows = [[cell(v) for v in row] for row in rows]
    align = align or "l" * len(headers)
    rule = {"l": "---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "| " + " | ".join(rule[a] for a in align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def pct(value: Any, digits: int = 2) -> str:
    """A fraction as percent ('6.97'); a dash when missing."""
    if is_missing(value):
        return DASH
    return f"{100 * float(value):.{digits}f}"


def pct_pm(mean: Any, std: Any) -> str:
    """mean ± std of fractions, as percent."""
    if is_missing(mean):
        return DASH
    if is_missing(std):
        return pct(mean)
    return f"{pct(mean)} ± {pct(std)}"


def duration(seconds: Any) -> str:
    """Seconds as '12.3 s', '4:05' or '1:02:03'."""
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        return str(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    h, rest = divmod(int(round(seconds)), 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def link(path: Path, report_dir: Path) -> str:
    """`path` relative to the report's folder, with forward slashes (markdown links)."""
    return Path(os.path.relpath(path, report_dir)).as_posix()


def figures(folder: Path, stems: Sequence[str], report_dir: Path, captions: dict[str, str]) -> list[str]:
    """Markdown image lines for each figure `folder/<stem>.png` already drawn (with its pdf linked when there)."""
    lines = []
    for stem in stems:
        png = folder / f"{stem}.png"
        if png.is_file():
            lines += [f"![{captions.get(stem, stem)}]({link(png, report_dir)})", ""]
            pdf = folder / f"{stem}.pdf"
            if pdf.is_file():
                lines[-2] += f"  \n*{captions.get(stem, stem)}* ([pdf]({link(pdf, report_dir)}))"
    return lines


def heading(folder: Path, results_dir: Path, title: str, several: bool) -> str:
    """A study's section heading; with `several` folders of the same study, the folder is named too."""
    if several:
        return f"## {title}: `{link(folder, results_dir) or '.'}`"
    return f"## {title}"


def is_number(value: Any) -> bool:
    """Whether `value` reads as a number (a CSV cell or a YAML value)."""
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def is_missing(value: Any) -> bool:
    """None, NaN, or pandas' NA / NaT (without importing pandas: the CLI's help must start fast)."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def read_info(path: Path) -> dict[str, Any]:
    """A study's info file (JSON), or {} when it is absent or unreadable (a report needs only the CSVs)."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def computed_with(info: dict[str, Any]) -> str:
    """One line for a study's report section: the precision it computed in, on which device, with which resx and
    torch, from the provenance block of its info file ('' when the file has none)."""
    block = info.get("provenance") if isinstance(info.get("provenance"), dict) else None
    if block is None:
        precision = info.get("precision")
        return f"Computed in {precision} (this info file has no provenance block)." if precision else ""
    parts = [f"Computed in **{block.get('precision', 'an unrecorded precision')}**"]
    if block.get("device_name") or block.get("device"):
        parts.append(f"on {block.get('device_name') or block.get('device')}")
    if block.get("threads"):
        parts.append(f"with {block['threads']} CPU thread{'s' if block['threads'] != 1 else ''}")
    commit = block.get("git_commit")
    version = f"resx {block.get('resx_version', '?')}" + (f" at commit {str(commit)[:12]}" if commit else "")
    return " ".join(parts) + f"; {version}, torch {block.get('torch', '?')}."
