"""The lesion study (Veit, Wilber, Belongie 2016, "Residual Networks Behave Like Ensembles of Relatively Shallow
Networks", §4): delete one block (Fig. 3), k random blocks (Fig. 5a), or swap blocks (Fig. 5b) of a trained net at
test time. The computation is resx.studies.lesion; the figures resx.plots.lesion; this module declares the study.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

from resx import reference
from resx.markdown import DASH, figures, heading, markdown_table, pct, pct_pm
from resx.plugins import OutputFile, StageContext, Study, figure_files, lazy, register

if TYPE_CHECKING:  # pandas is imported inside the functions that need it
    import pandas as pd

SINGLE_COLUMNS = ("run", "block", "stage", "downsampling", "test_error", "baseline_error", "test_loss", "model", "residual")
DELETE_K_COLUMNS = ("run", "k", "draw", "test_error", "baseline_error", "test_loss", "deleted", "model", "residual")
SWAP_COLUMNS = ("run", "swaps", "draw", "kendall_tau", "test_error", "baseline_error", "test_loss", "order", "model",
                "residual")


# --- the command ---------------------------------------------------------------------------------------------------
def lesion_command() -> Callable[..., Any]:
    """`resx lesion`, built when the CLI asks for it: typer and rich are imported by the command line only."""
    import typer
    from rich.table import Table

    from resx.atomic import check_output_folder
    from resx.cli_common import CountingProgress, DataDirOpt, DataOpt, DeviceOpt, ForceOpt, SeedOpt, console, user_errors
    from resx.options import check_numbers

    @user_errors
    def command(
        runs: Annotated[list[Path], typer.Argument(help="Run folders or checkpoint.pt files, lesioned side by side.")],
        data: DataOpt = None,
        studies: Annotated[Optional[str], typer.Option(help="Comma list of single, delete-k, swap (default: all; swap skipped for plain nets).")] = None,
        blocks: Annotated[Optional[str], typer.Option(help="Restrict `single` to these 0-based blocks: 3, 0..8 or 0,5,18.")] = None,
        max_k: Annotated[Optional[int], typer.Option("--max-k", help="delete-k for k = 1..K (default 20, or every deletable block).")] = None,
        draws: Annotated[int, typer.Option(help="Random draws per k and per swap count.")] = 50,
        swaps: Annotated[str, typer.Option(help="Swap counts: a range 1..10, a number 5, or a list 1,2,5.")] = "1..10",
        seed: SeedOpt = None,
        device: DeviceOpt = "auto",
        data_dir: DataDirOpt = None,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Eval batch (default: 1000 on CPU, as large as fits on CUDA).")] = None,
        cache_mb: Annotated[Optional[int], typer.Option("--cache-mb", help="Memory for cached activations (default: automatic; 0: off).")] = None,
        out: Annotated[Path, typer.Option(help="Folder for lesion_*.csv and lesion_info.json.")] = Path("results/lesion"),
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier lesion study in --out.")] = False,
        force: ForceOpt = False,
    ) -> None:
        """Delete and reorder blocks of trained nets at test time (Veit et al. 2016, §4, Figs. 3 and 5)."""
        from resx.studies.lesion import run_lesion

        check_numbers(locals())
        check_output_folder(out)

        with CountingProgress() as bars:
            result = run_lesion(runs, data=data, data_dir=data_dir, studies=studies, blocks=blocks, max_k=max_k, draws=draws,
                                swaps=swaps, seed=seed if seed is not None else 0, device=device, batch_size=batch_size,
                                cache_bytes=None if cache_mb is None else cache_mb * 2**20, out=out, progress=lambda run, study, done, total: bars(f"{run} {study}", done, total),
                                overwrite=overwrite, force=force)
        rows = result.summary()
        ks = sorted({k for r in rows for k in r.get("delete_k", {})})
        counts = sorted({c for r in rows for c in r.get("swap", {})})
        p1 = lambda v: f"{100 * v:.1f}" if v is not None else "-"  # noqa: E731
        table = Table(title=f"test error % after lesions (Veit et al. 2016 §4), {result.info['device_name']}")
        columns = ["run", "base", "single", "down"]
        columns += [f"del {k}" for k in ks] + [f"swap {c}" for c in counts]
        for col in columns:
            table.add_column(col, justify="left" if col == "run" else "right", no_wrap=col in ("run", "single", "down"))
        for r in rows:
            single = "/".join(p1(r.get(f"single_{s}")) for s in ("min", "median", "max")) if "single_min" in r else "-"
            down = " ".join(p1(e) for e in r.get("downsampling", {}).values()) or "-"
            table.add_row(r["run"], p1(r["baseline"]), single, down, *[p1(r.get("delete_k", {}).get(k)) for k in ks],
                          *[p1(r.get("swap", {}).get(c)) for c in counts])
        console.print(table)
        for run in result.info["runs"]:
            for study, why in run["skipped"].items():
                console.print(f"{run['run']}: {study} skipped: {why}")
        for r in rows:
            console.print(f"{r['run']} ({r['model']}): seconds " + ", ".join(f"{k} {v:.2f}" for k, v in r["seconds"].items()))
        console.print("single: min/median/max over the non-downsampling blocks deleted one at a time; down: each "
                      "downsampling block deleted; del k: mean over draws with k blocks deleted; swap n: mean with n pairs "
                      f"swapped. Results in [bold]{result.out}[/]")

    return command


# --- REPORT.md -----------------------------------------------------------------------------------------------------
def lesion_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    from resx.plots import lesion as lesion_plots

    single = lesion_plots.read_single(folder)
    delete_k = lesion_plots.read_delete_k(folder)
    swap = lesion_plots.read_swap(folder)
    if single is None and delete_k is None and swap is None:
        return []
    lines = [heading(folder, results_dir, "Lesion study (Veit et al. 2016)", several), ""]
    if single is not None:
        rows = []
        for run, part in single.groupby("run", sort=False):
            top = part.loc[part["test_error"].idxmax()]
            down = part[part["downsampling"]].sort_values("block")
            rows.append([
                run, pct(part["baseline_error"].mean()),
                f"{pct(part['test_error'].min())} to {pct(part['test_error'].max())}",
                f"{int(top['block'])} ({pct(top['test_error'])})",
                ", ".join(f"{int(b)}: {pct(e)}" for b, e in zip(down["block"], down["test_error"])) or DASH,
                f"{pct(part.loc[~part['downsampling'], 'test_error'].median())}",
            ])
        # Veit et al. number blocks from 1; resx from 0: their block b is resx's b - 1.
        lo, hi = reference.VEIT_SINGLE_TYPICAL_RANGE
        rows.append([
            "Veit et al. (pre-ResNet-110)", pct(reference.VEIT_BASELINE_ERROR),
            f"mostly {pct(lo, 1)} to {pct(hi, 1)}", f"0 ({pct(reference.VEIT_SINGLE_LARGEST[1], 0)})",
            ", ".join(f"{b - 1}: {pct(reference.VEIT_SINGLE_LARGEST[b], 1)}" for b in reference.VEIT_DOWNSAMPLING_BLOCKS),
            DASH,
        ])
        sd_lo, sd_hi = reference.VEIT_STOCHASTIC_DEPTH_SINGLE_RANGE
        rows.append(["Veit et al., with stochastic depth", pct(reference.VEIT_STOCHASTIC_DEPTH_BASELINE_ERROR),
                     f"{pct(sd_lo, 1)} to {pct(sd_hi, 1)}", DASH, DASH, DASH])
        lines += ["**Deleting one block** (Fig. 3), test error %:", "",
                  markdown_table(["run", "no deletion", "single deletions", "worst block",
                                  "downsampling blocks", "median, other blocks"], rows), "",
                  "Blocks are numbered from 0 (Veit et al. number them from 1: their blocks 1, 19 and 37 are 0, 18 "
                  "and 36 here). A plain (VGG-style) net drops to chance "
                  f"(about {pct(reference.VEIT_PLAIN_SINGLE_DELETION_ERROR, 0)}% error) when any one layer is removed; "
                  "for a plain net, resx deletes one block at a time, i.e. two conv layers (the block's branch "
                  "becomes the identity).", ""]
        lines += single_deletion_verdicts(single) + [""]
    if delete_k is not None:
        means = lesion_plots.delete_k_means(delete_k)
        runs = list(dict.fromkeys(means["run"]))
        rows = []
        for k, veit in reference.VEIT_DELETE_K_ERROR.items():
            row = [k]
            for run in runs:
                hit = means[(means["run"] == run) & (means["k"] == k)]
                row.append(pct_pm(hit["mean"].iloc[0], hit["std"].iloc[0]) if len(hit) else DASH)
            rows.append(row + [pct(veit, 1)])
        lines += ["**Deleting k random blocks** (Fig. 5a), mean ± std test error % over draws:", "",
                  markdown_table(["k", *runs, "Veit et al."], rows, align="r" * (len(runs) + 2)), ""]
        if len(means):
            kmax = int(means["k"].max())
            lines += [f"resx deleted up to k = {kmax} blocks.", ""]
            lines += delete_k_verdicts(means) + [""]
    if swap is not None:
        means = lesion_plots.swap_means(swap)
        if means is not None:
            runs = list(dict.fromkeys(means["run"]))
            rows = []
            for swaps, veit in reference.VEIT_SWAP_ERROR.items():
                row = [swaps]
                for run in runs:
                    hit = means[(means["run"] == run) & (means["swaps"] == swaps)]
                    row.append(f"{pct_pm(hit['mean'].iloc[0], hit['std'].iloc[0])} (τ {hit['kendall_tau'].iloc[0]:.2f})"
                               if len(hit) else DASH)
                rows.append(row + [pct(veit, 1)])
            lines += ["**Reordering blocks** (Fig. 5b), mean test error % after random swaps (mean Kendall τ):", "",
                      markdown_table(["swaps", *runs, "Veit et al."], rows, align="r" * (len(runs) + 2)), ""]
        else:
            lines += ["lesion_swap.csv has no `swaps` column: see the figure for error against Kendall's tau.", ""]
    lines += figures(folder, ["lesion_single", "lesion_delete_k", "lesion_swap"], report_dir, {
        "lesion_single": "Test error when one block is deleted; cf. Veit et al. 2016 Fig. 3",
        "lesion_delete_k": "Test error against the number of deleted blocks; cf. Veit et al. 2016 Fig. 5a",
        "lesion_swap": "Test error against Kendall's tau after swapping blocks; cf. Veit et al. 2016 Fig. 5b",
    })
    return lines


SMALL_CHANGE = 0.02  # "no noticeable change" when deleting one block: within 2 points of the net's own error


def single_deletion_verdicts(single: "pd.DataFrame") -> list[str]:
    """Veit et al. 2016 Fig. 3, checked per run: a residual net survives the deletion of almost any one block
    (within SMALL_CHANGE of its error), a plain net does not (any deletion sends it towards chance)."""
    lines = []
    for run, part in single.groupby("run", sort=False):
        baseline = float(part["baseline_error"].mean())
        within = float(((part["test_error"] - baseline) <= SMALL_CHANGE).mean())
        residual = bool(part["residual"].iloc[0]) if "residual" in part.columns else True
        if residual:
            lines.append(f"- {run} (residual): {100 * within:.0f}% of its {len(part)} single deletions stay within "
                         f"{100 * SMALL_CHANGE:.0f} points of its {pct(baseline)}% error "
                         f"({'as' if within >= 0.5 else 'NOT as'} Veit et al. Fig. 3: most deletions change little).")
        else:
            lowest, highest = float(part["test_error"].min()), float(part["test_error"].max())
            lines.append(f"- {run} (plain): its single deletions give {pct(lowest)} to {pct(highest)}% error against "
                         f"{pct(baseline)}% ({'as' if within == 0 else 'NOT as'} Veit et al.: a plain net without "
                         "any one of its layers falls towards chance).")
    return lines


def delete_k_verdicts(means: "pd.DataFrame") -> list[str]:
    """Veit et al. 2016 Fig. 5a: the mean error grows smoothly with the number of deleted blocks k."""
    lines = []
    for run, part in means.groupby("run", sort=False):
        part = part.sort_values("k")
        values = part["mean"].to_numpy()
        rises = sum(b >= a for a, b in zip(values, values[1:]))
        lines.append(f"- {run}: mean error {pct(values[0])}% at k = {int(part['k'].iloc[0])}, {pct(values[-1])}% at "
                     f"k = {int(part['k'].iloc[-1])}; it rises at {rises} of {len(values) - 1} steps of k.")
    return lines


# --- the reproduce stage -------------------------------------------------------------------------------------------
@dataclass
class LesionSettings:
    max_k: int | None = 20
    draws: int = 50
    swaps: str = "1..10"


def lesion_stage(ctx: StageContext) -> None:
    """Lesion the deep nets and the grid's plain net (Veit et al. 2016 compare a residual net with a plain one)."""
    from resx.studies.lesion import run_lesion

    settings: LesionSettings = ctx.settings
    targets = list(dict.fromkeys([*ctx.deep_runs.values(), ctx.grid_run(ctx.reproduce.plain_model)]))
    run_lesion(targets, data=ctx.train.data, data_dir=ctx.train.data_dir, max_k=settings.max_k, draws=settings.draws,
               swaps=settings.swaps, seed=ctx.train.seed, device=ctx.device, out=ctx.study_out("lesion"))


STUDY = register(Study(
    name="lesion",
    title="Lesion study (Veit et al. 2016)",
    outputs=(
        OutputFile("lesion_single.csv", SINGLE_COLUMNS, "test error with one block deleted (Fig. 3)"),
        OutputFile("lesion_delete_k.csv", DELETE_K_COLUMNS, "test error with k random blocks deleted (Fig. 5a)"),
        OutputFile("lesion_swap.csv", SWAP_COLUMNS, "test error after random swaps of blocks (Fig. 5b)"),
        OutputFile("lesion_info.json", about="settings, timings, skipped studies"),
        *figure_files("lesion_*"),
    ),
    plot=lazy("resx.plots.lesion", "plot_lesion"),
    report=lesion_section,
    command=lesion_command,
    settings=LesionSettings,
    stage=lesion_stage,
    stage_order=30,
))
