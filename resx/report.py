"""REPORT.md: what resx measured, beside what the papers published, with the figures.

`write_report(results_dir)` reads only files on disk (the studies' CSVs, run_info.json / provenance.json /
config.yaml / stages.json) and the papers' numbers in `resx.reference`, so it runs anywhere without torch and can
be rerun after any study finishes. Sections for studies that have not run are left out.

Each study's section is written by the study (resx/studies/<name>/report.py), beside the papers' numbers it compares
with: He et al. 2015 Table 6 and Fig. 6 (degradation), Li et al. 2018 (nets without shortcuts, loss landscapes),
Veit et al. 2016 Figs. 3, 5 and 6 (lesions, paths).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import resx
from resx.atomic import write_text_atomic
from resx.markdown import DASH, duration, is_number, link, markdown_table
from resx.studies.registry import looked_for, registered
from resx.plots.discover import check_results_folder, find_studies

__all__ = ["write_report"]

PROVENANCE_FILES = ("run_info.json", "provenance.json", "config.yaml")
# shown first, in this order; everything else found goes into a collapsed list
PROVENANCE_KEYS = (
    "machine", "host", "gpu", "device_name", "device", "dataset", "profile", "seeds", "seed", "model", "precision",
    "cuda_graph", "batch_size", "epochs", "iterations", "total_iterations", "resx_version", "git_commit", "python",
    "torch", "cuda", "cudnn",
)


# --- provenance ---------------------------------------------------------------------------------------------------
def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; short lists of scalars become "x, y"."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(obj, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in obj):
            return {prefix: ", ".join(map(str, obj))}
        return {prefix: json.dumps(obj, default=str)[:120]}
    return {prefix: obj}


def _read_provenance_file(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception:  # OSError, JSON or YAML errors: lenient, a broken file is listed, not fatal
        return None
    return data if isinstance(data, dict) else None


def collect_provenance(results_dir: Path) -> tuple[dict[str, list[str]], list[Path], list[Path]]:
    """{key: distinct values} over every provenance file under results_dir, the files read and the unreadable."""
    values: dict[str, list[str]] = {}
    read, broken = [], []
    for root, dirs, files in os.walk(results_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name not in PROVENANCE_FILES:
                continue
            path = Path(root) / name
            data = _read_provenance_file(path)
            if data is None:
                broken.append(path)
                continue
            read.append(path)
            for key, value in _flatten(data).items():
                if not key:
                    continue
                text = str(value)
                seen = values.setdefault(key, [])
                if text not in seen:
                    seen.append(text)
    return values, read, broken


def _summarise_values(values: list[str], limit: int = 6) -> str:
    try:
        values = sorted(values, key=float)
    except ValueError:
        pass
    if len(values) <= limit:
        return ", ".join(values)
    return f"{len(values)} values: {', '.join(values[:limit])}, …"


def provenance_section(results_dir: Path, meta: dict[str, Any] | None) -> tuple[list[str], bool]:
    """The provenance section, and whether the dataset looks like the JPEG ImageFolder copy of CIFAR-10."""
    lines = ["## Provenance", ""]
    meta = dict(meta or {})
    run_file = results_dir / "reproduce.json"  # written by `resx reproduce`: profile, data, machine, commit
    recorded = _read_provenance_file(run_file) if run_file.is_file() else None
    for key, value in (recorded or {}).items():
        meta.setdefault("dataset" if key == "data" else key, value)
    meta.setdefault("resx_version", resx.__version__)
    found, read, broken = collect_provenance(results_dir)
    history = meta.get("history")
    if isinstance(history, list) and history:
        meta["invocations"] = f"{len(history)} (reproduce.json's history)"
    # the provenance block and the history are summarised below (commits, distinct values), not dumped as dicts
    rows = [(key, ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v))
            for key, v in meta.items()
            if v is not None and key not in ("stages", "notes", "provenance", "history") and not isinstance(v, dict)]
    lines += [markdown_table(["what", "value"], rows), ""]

    stages = dict(meta.get("stages") or {})
    stages_file = results_dir / "stages.json"
    if stages_file.is_file():
        data = _read_provenance_file(stages_file)
        if data is None:
            lines += ["`stages.json` could not be read.", ""]
        else:
            stages.update(data)
    # Stages are the entries with a wall time: `seconds` when finished, `earlier_seconds` (the attempts so far) when
    # stopped or still running (stages.json may also hold other entries).
    # (the report stage that is writing this report is still running: it is no unfinished stage of the results)
    stages = {k: v for k, v in stages.items() if isinstance(v, dict)
              and (is_number(v.get("seconds")) or is_number(v.get("earlier_seconds")))
              and not (k == "report" and v.get("status") == "running")}
    if stages:
        def spent(info: dict) -> float:
            return float(info["seconds"]) if is_number(info.get("seconds")) else float(info["earlier_seconds"])

        extra_keys = sorted({k for info in stages.values() for k in info} - {"seconds", "earlier_seconds"})
        def shown(key: str, value: Any) -> Any:
            if key in ("git_commit", "commits") and value not in (None, DASH):
                return ", ".join(str(c)[:12] for c in (value if isinstance(value, list) else [value]))
            return value

        stage_rows = [[name, duration(spent(info)), *[shown(k, info.get(k, DASH)) for k in extra_keys]]
                      for name, info in stages.items()]
        total = sum(spent(info) for info in stages.values())
        lines += ["Wall time per stage:", "", markdown_table(["stage", "wall time", *extra_keys], stage_rows), ""]
        killed = sum(int(i["killed_attempts"]) for i in stages.values() if is_number(i.get("killed_attempts")))
        unfinished = [name for name, info in stages.items() if info.get("status", "finished") != "finished"]
        why = ([f"{killed} attempt(s) of a stage were killed before they could record their time"] if killed else []) \
            + ([f"not finished: {', '.join(unfinished)}"] if unfinished else [])
        if total and why:
            lines += [f"Total: at least {duration(total)} ({'; '.join(why)}).", ""]
        elif total:
            lines += [f"Total: {duration(total)}.", ""]

    lines += commit_lines(results_dir)
    if read:
        priority = [k for k in PROVENANCE_KEYS if k in found]
        rest = [k for k in found if k not in priority]
        lines += [f"From {len(read)} provenance file(s) ({', '.join(sorted({p.name for p in read}))}) under the "
                  f"results folder; distinct values over all runs:", ""]
        if priority:
            lines += [markdown_table(["key", "value(s)"], [(k, _summarise_values(found[k])) for k in priority]), ""]
        if rest:
            lines += ["<details><summary>all other keys</summary>", "",
                      markdown_table(["key", "value(s)"], [(k, _summarise_values(found[k], 4)) for k in rest]),
                      "", "</details>", ""]
    else:
        lines += ["No run_info.json, provenance.json or config.yaml found under the results folder.", ""]
    if broken:
        lines += ["Unreadable: " + ", ".join(f"`{link(p, results_dir)}`" for p in broken), ""]

    texts = [str(v) for vs in found.values() for v in vs] + [str(v) for v in meta.values()]
    jpeg = any("imagefolder" in t.lower() or "jpeg" in t.lower() for t in texts)
    if jpeg:
        lines += ["> **Dataset note.** The provenance mentions an ImageFolder / JPEG dataset: most likely the JPEG "
                  "(quality 75) copy of CIFAR-10. JPEG loss makes every error a few points higher "
                  "than the papers' numbers on the original images; the orderings (plain-56 worse than plain-20, "
                  "ResNet-56 better than ResNet-20) should still show.", ""]
    notes = meta.get("notes")
    if notes:
        lines += ["Choices of this profile: " + " ".join(str(notes).split()), ""]
    if any(key in found for key in ("lr", "batch_size", "momentum")):  # only where trained runs left their config
        lines += [recipe_line(found), ""]
    return lines, jpeg


def recipe_line(found: dict[str, list[str]]) -> str:
    """What the runs under the results folder trained with, read from their config.yaml files (distinct values
    joined with ' / '), beside He et al. 2015 §4.2's recipe."""
    def values(key: str, default: str = "?") -> str:
        seen = [v for v in found.get(key, []) if v not in ("None", "")]
        return " / ".join(seen) if seen else default

    augment = found.get("augment", [])
    crops = ("pad-4 crop and flip" if set(augment) <= {"None", "True"} else
             "no augmentation" if set(augment) == {"False"} else "pad-4 crop and flip for some runs, none for others")
    warmups = [v for v in found.get("warmup_lr", []) if v != "None"]
    milestones = values("lr_milestones")
    parts = [f"SGD, momentum {values('momentum')}, weight decay {values('weight_decay')}, batch {values('batch_size')}",
             f"lr {values('lr')} x {values('lr_decay', '0.1')} at {milestones} of training" if milestones != "?"
             else f"lr {values('lr')}", crops]
    if warmups:
        parts.append(f"warm-up at lr {' / '.join(warmups)} for the runs whose config names it, until an epoch's "
                     "training error is below 80%")
    if "True" in found.get("zero_init_residual", []):
        parts.append("residual branches zero-initialised (Goyal et al. 2017) for the residual nets")
    precision = " / ".join(v for v in found.get("precision", []) if v not in ("auto", "None"))  # what it resolved to
    if precision:
        parts.append(f"arithmetic: {precision} (weights, BN statistics and the optimizer in fp32)")
    return ("Recipe of these runs: " + "; ".join(parts) + ". He et al. 2015 §4.2: SGD, momentum 0.9, weight decay "
            "1e-4, batch 128, lr 0.1 /10 at 32k and 48k of 64k iterations, pad-4 crop and flip, warm-up at 0.01 for "
            "ResNet-110 only. resx standardises inputs per channel where the paper subtracts the per-pixel mean "
            "(crops are padded with the mean colour, as in the paper). One iteration is one training batch.")


# every file resx writes that names the commit it ran at
RECORD_FILES = ("run_info.json", "reproduce.json", "stages.json", "grid_info.json")
RECORD_SUFFIX = "_info.json"
NOTES_FILE = "NOTES.md"  # what a person adds to a results folder; quoted as notes, never mixed with what resx wrote


def _commits_in(data: Any) -> set[str]:
    """Every `git_commit` value in a record, at any depth (top level, provenance blocks, history entries)."""
    found: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "git_commit" and value and value != "unknown":  # older resx wrote 'unknown' for none
                found.add(str(value))
            elif key == "commits" and isinstance(value, list):
                found |= {str(v) for v in value if v and v != "unknown"}
            else:
                found |= _commits_in(value)
    elif isinstance(data, list):
        for value in data:
            found |= _commits_in(value)
    return found


def record_commits(results_dir: Path) -> dict[str, list[Path]]:
    """{commit: [records naming it]} over every record resx wrote under results_dir (run_info.json, the studies'
    *_info.json, reproduce.json, stages.json)."""
    commits: dict[str, list[Path]] = {}
    for root, dirs, files in os.walk(results_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name in RECORD_FILES or name.endswith(RECORD_SUFFIX) or name.startswith("grid_info-shard"):
                path = Path(root) / name
                for commit in sorted(_commits_in(_read_provenance_file(path) or {})):
                    commits.setdefault(commit, []).append(path)
    return commits


def commit_lines(results_dir: Path) -> list[str]:
    """Whether every record under the folder names one resx commit (a result made at one commit), or which."""
    commits = record_commits(results_dir)
    if not commits:
        return ["No record under this folder names a resx commit (resx ran from an installed release).", ""]
    if len(commits) == 1:
        (commit, paths), = commits.items()
        return [f"Every one of the {len(paths)} records that name a commit names one resx commit: `{commit}`.", ""]
    rows = [[f"`{c[:12]}`", len(paths), ", ".join(f"`{link(p, results_dir)}`" for p in paths[:3])
             + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")] for c, paths in commits.items()]
    return [f"The records under this folder name {len(commits)} resx commits:", "",
            markdown_table(["commit", "records", "e.g."], rows), ""]


def notes_section(results_dir: Path) -> list[str]:
    """NOTES.md of the results folder, quoted: what a person wrote beside the generated files."""
    path = results_dir / NOTES_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return []
    if not text:
        return []
    return ["## Notes (written by hand, not generated by resx)", "",
            f"Quoted from `{NOTES_FILE}` in this folder; everything else in this report is generated from the files "
            "resx wrote.", "", *[f"> {line}".rstrip() for line in text.splitlines()], ""]


def _at_commit() -> str:
    from resx.provenance import git_commit

    commit = git_commit()
    return f" (commit {commit})" if commit else ""


# --- the report ---------------------------------------------------------------------------------------------------
def write_report(results_dir: str | Path, out: str | Path | None = None, meta: dict[str, Any] | None = None) -> Path:
    """Write REPORT.md (default `results_dir/REPORT.md`) and return its path.

    Sections: provenance (from `meta`, stages.json and every run_info.json / provenance.json / config.yaml found),
    then, for each registered study (resx.studies.registry) in its order, its own section for every folder under
    `results_dir` that holds its CSVs: e.g. degradation (the summary beside He et al. Table 6 and Li et al. 2018,
    and whether the degradation shows), lesion and paths (beside Veit et al.), bench. Figures already drawn (see
    `resx.plots.plot_results`) are linked with paths relative to the report.

    `meta` may hold machine, gpu, dataset, profile, seeds, git_commit, wall time ('stages': {name: {'seconds': s}})
    or anything else worth a line."""
    results_dir = Path(results_dir)
    check_results_folder(results_dir)
    out = Path(out) if out is not None else results_dir / "REPORT.md"
    if out.is_dir():
        out = out / "REPORT.md"
    report_dir = out.parent
    studies = find_studies(results_dir)

    lines = ["# resx: residual networks, reproduced", "",
             f"Generated {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by resx "
             f"{resx.__version__}{_at_commit()} from the CSVs under `{results_dir}`. Errors are test error in % on the dataset "
             "named under Provenance; the papers' numbers (CIFAR-10 unless said otherwise) are in "
             "`resx/reference.py`.", ""]
    provenance, _ = provenance_section(results_dir, meta)
    lines += provenance
    body: list[str] = []
    for study in registered():
        folders = studies.get(study.name, [])
        for folder in folders if study.report is not None else ():
            body += study.report(folder, results_dir, report_dir, several=len(folders) > 1)
    if not body:
        body = [f"No study results found under `{results_dir}` (looked for {looked_for()}).", ""]
    lines += body + notes_section(results_dir)
    return write_text_atomic(out, "\n".join(lines).rstrip() + "\n")
