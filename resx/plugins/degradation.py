"""The degradation study (He, Zhang, Ren, Sun 2015, "Deep Residual Learning for Image Recognition", Fig. 6 and
Table 6): plain and residual nets of the same depths trained alike; deeper plain nets train WORSE, deeper residual
nets better. The grid is resx.studies.compare (training: resx.engine); the figures resx.plots.degradation; this
module declares the study (`resx compare-plain`).
"""

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

from resx import reference
from resx.markdown import DASH, figures, is_number, heading, markdown_table, pct, pct_pm
from resx.studies.registry import OutputFile, StageContext, Study, figure_files, lazy, register

if TYPE_CHECKING:  # pandas is imported inside the functions that need it
    import pandas as pd

# The grid's files and their columns (users' scripts rely on them; extra columns may follow, never fewer).
CURVE_COLUMNS = [
    "model", "family", "residual", "depth", "seed", "epoch", "iteration", "train_error", "test_error",
    "train_loss", "test_loss", "lr", "batch_size", "seconds", "images_per_second",
]
ITERATION_CURVES = "iteration_curves.csv"  # every run's iterations.csv (engine/run.py), with the grid's columns
SUMMARY_COLUMNS = [
    "model", "family", "residual", "depth", "params", "seeds", "final_train_error_mean", "final_train_error_std",
    "final_test_error_mean", "final_test_error_std", "best_test_error_mean", "best_test_error_std", "iterations",
]


# --- the command ---------------------------------------------------------------------------------------------------
def degradation_command() -> Callable[..., Any]:
    """`resx compare-plain`, built when the CLI asks for it: typer and rich are imported by the command line only."""
    import typer

    from resx.atomic import check_output_folder
    from resx.cli_common import ConfigOpt, DataDirOpt, DataOpt, DeviceOpt, RunProgress, SeedOpt, console, int_list, user_errors
    from resx.options import check_numbers

    @user_errors
    def command(
        depths: Annotated[Optional[str], typer.Option(help="Depths of the plain/residual pairs (default 20,32,44,56).")] = None,
        residual_depths: Annotated[Optional[str], typer.Option("--residual-depths", help="Residual-only depths, e.g. 110 (He Fig. 6 shows ResNet-110 without its plain twin). Residual nets of depth 110 and more get He's warm-up: lr 0.01 until training error < 80%.")] = None,
        seeds: Annotated[Optional[int], typer.Option(help="Seeds per model (default 3).")] = None,
        data: DataOpt = None,
        config: ConfigOpt = None,
        epochs: Annotated[Optional[int], typer.Option(help="Train each net for N epochs.")] = None,
        iterations: Annotated[Optional[int], typer.Option(help="Train each net for N iterations (batches).")] = None,
        shortcut: Annotated[Optional[str], typer.Option(help="Residual shortcut: A (identity + zero-pad, same params as plain) or B.")] = None,
        family: Annotated[Optional[str], typer.Option(help="cifar | preact | mlp")] = None,
        out: Annotated[Optional[Path], typer.Option(help="Output folder (default results/degradation).")] = None,
        shard: Annotated[Optional[str], typer.Option(help="Run only slice I of N (I/N, e.g. a SLURM array index).")] = None,
        concurrency: Annotated[Optional[int], typer.Option(help="Runs trained at once: on CUDA streams of one GPU (default 4), on a CPU worker processes (default one per core).")] = None,
        threads: Annotated[Optional[int], typer.Option(help="CPU threads of each run (default: the cores shared out evenly).")] = None,
        lr: Annotated[Optional[float], typer.Option(help="Learning rate (default 0.1).")] = None,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Batch size (default 128).")] = None,
        seed: SeedOpt = None,
        device: DeviceOpt = "auto",
        data_dir: DataDirOpt = None,
    ) -> None:
        """Plain vs residual nets across depths: the degradation problem (He et al. 2015, Fig. 6)."""
        from resx.studies.compare import CompareOptions, compare_plain

        check_numbers(locals())
        options = CompareOptions.resolve(config, dict(
            depths=int_list(depths, "--depths"), residual_depths=int_list(residual_depths, "--residual-depths"),
            seeds=seeds, family=family, out=str(out) if out else None, shard=shard, concurrency=concurrency,
        ), dict(
            data=data, epochs=epochs, iterations=iterations, shortcut=shortcut, lr=lr, batch_size=batch_size, seed=seed,
            device=device if device != "auto" else None, data_dir=str(data_dir) if data_dir else None, threads=threads,
        ))
        check_output_folder(options.out)
        console.print(f"compare-plain: {options.describe()}")
        with RunProgress() as progress:
            result = compare_plain(options, progress=progress, on_status=lambda msg: progress.progress.console.print(msg))
        show_degradation(result)

    return command


def show_degradation(result: Any) -> None:
    """The grid's summary table and verdicts on the console (`resx compare-plain`, `resx demo`)."""
    from rich.table import Table

    from resx.cli_common import console

    summary = result.summary
    table = Table(title="Degradation: final error, mean±std over seeds (plain nets first)")
    for col in ("model", "depth", "params", "seeds", "train err %", "test err %", "best test %"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for row in summary.itertuples():
        table.add_row(row.model, str(row.depth), f"{row.params / 1e6:.2f}M", str(row.seeds),
                      f"{100 * row.final_train_error_mean:.2f}±{100 * row.final_train_error_std:.2f}",
                      f"{100 * row.final_test_error_mean:.2f}±{100 * row.final_test_error_std:.2f}",
                      f"{100 * row.best_test_error_mean:.2f}")
    console.print(table)
    for line in result.verdict:
        console.print(line)
    info = result.info
    if info.get("trained"):
        console.print(f"trained {info['trained']} run(s), skipped {info['skipped']} finished, in {info['wall_seconds']:.1f} s "
                      f"({info['images_per_second']:,.0f} images/s in all, {info.get('concurrency', 1)} at a time)")
    console.print(f"one iteration = one batch of {result.batch_size}; results in [bold]{result.out}[/]: "
                  + ", ".join(p.name for p in result.files))


# --- the verdicts (the terminal's, resx.studies.degradation.verdict, and REPORT.md's) -------------------------------
def compare(part: "pd.DataFrame", which: str) -> "tuple[pd.Series, pd.Series, float, float]":
    """The shallowest and deepest net of `part` (plain or residual rows of summary.csv), the difference of their
    final `which` (train/test) error, deep minus shallow, and the seeds' spread of that difference (the two stds
    added in quadrature; 0 with one seed). He et al. 2015 Fig. 6: deeper plain nets train worse (difference > 0),
    deeper residual nets test better (difference < 0)."""
    import math

    part = part.sort_values("depth")
    shallow, deep = part.iloc[0], part.iloc[-1]
    diff = float(deep[f"final_{which}_error_mean"] - shallow[f"final_{which}_error_mean"])
    stds = [float(row.get(f"final_{which}_error_std", float("nan"))) for row in (shallow, deep)]  # none: one seed
    spread = math.sqrt(sum(0.0 if math.isnan(v) else v * v for v in stds))
    return shallow, deep, diff, spread


def single_runs(part: "pd.DataFrame") -> bool:
    """Whether the shallowest or the deepest net of `part` is a single run (no spread over seeds to judge by)."""
    part = part.sort_values("depth")
    ends = part.iloc[[0, -1]]
    if "seeds" in ends.columns and ends["seeds"].notna().all():
        return bool((ends["seeds"] <= 1).any())
    return compare(part, "test")[3] == 0


def two_run_noise() -> float:
    """How far apart two runs of one recipe land: runs spread about ±reference.RUN_TO_RUN_SPREAD each, so the
    difference of two independent runs about sqrt(2) times that."""
    import math

    return math.sqrt(2) * reference.RUN_TO_RUN_SPREAD


def depth_effect(part: "pd.DataFrame", which: str) -> str:
    """What depth does to the final `which` (train/test) error of `part`'s nets (rows of summary.csv), deep against
    shallow: "lower", "higher", or "level" when the difference says nothing: single runs closer than two runs of
    one recipe land apart (two_run_noise), or seeds whose spread covers it."""
    _, _, diff, spread = compare(part, which)
    margin = two_run_noise() if single_runs(part) else spread
    if abs(diff) <= margin:
        return "level"
    return "lower" if diff < 0 else "higher"


def depth_helps(residual: "pd.DataFrame") -> str:
    """He et al. 2015 Fig. 6 right, for the residual rows of summary.csv: "improve" when the deepest net tests
    better than the shallowest, "worse" when it tests worse, "level" when the difference says nothing
    (depth_effect)."""
    return {"lower": "improve", "higher": "worse", "level": "level"}[depth_effect(residual, "test")]


def residual_claim(residual: "pd.DataFrame") -> str:
    """The headline of He et al. Fig. 6 right, the same words on the terminal and in REPORT.md."""
    outcome = depth_helps(residual)
    if outcome != "level":
        return {"improve": "improve with depth", "worse": "do not improve with depth"}[outcome]
    trains = {"lower": "; the deeper trains better", "higher": "; the deeper trains worse",
              "level": " and train level too"}[depth_effect(residual, "train")]
    return f"test level at both depths{trains}"


def any_level(part: "pd.DataFrame") -> bool:
    """Whether the test or the training error of `part`'s shallowest and deepest net is called level."""
    return any(depth_effect(part, which) == "level" for which in ("test", "train"))


def level_reason(part: "pd.DataFrame") -> str:
    """The sentence that says why a difference between `part`'s shallowest and deepest net is called level."""
    if single_runs(part):
        return (f"One run each: two runs of one recipe differ by about {100 * two_run_noise():.1f} points (runs of "
                f"ResNet-56 spread ±{100 * reference.RUN_TO_RUN_SPREAD:.1f} in the public reproduction), so a smaller "
                "difference says nothing about which net is better.")
    return "The seeds' spread covers the difference called level."


# --- REPORT.md -----------------------------------------------------------------------------------------------------
def degradation_verdicts(summary: "pd.DataFrame") -> list[str]:
    """Does the degradation show (He et al. 2015 Fig. 6 left), and does depth help the residual nets (right)?"""
    lines = []

    def within(diff: float, spread: float) -> str:
        if spread > 0 and abs(diff) <= spread:
            return f" — but the difference ({100 * abs(diff):.2f} points) is within the seeds' spread ({100 * spread:.2f})"
        return ""

    plain = summary[~summary["residual"]]
    if plain["depth"].nunique() >= 2:
        shallow, deep, diff, spread = compare(plain, "train")
        shows = diff > 0
        lines.append(
            f"- **Degradation (He et al. Fig. 6, left): {'shows' if shows else 'does not show'}.** The deepest plain net "
            f"({deep['model']}, depth {deep['depth']}) ends at {pct(deep['final_train_error_mean'])}% training error, "
            f"the shallowest ({shallow['model']}, depth {shallow['depth']}) at {pct(shallow['final_train_error_mean'])}%"
            + (within(diff, spread) if shows else "") + ".")
    else:
        lines.append("- Degradation: needs plain nets of at least two depths.")
    residual = summary[summary["residual"]]
    if residual["depth"].nunique() >= 2:
        shallow, deep, diff, spread = compare(residual, "test")
        _, _, train_diff, _ = compare(residual, "train")
        level = any_level(residual)
        lines.append(
            f"- **Residual nets {residual_claim(residual)} (He et al. Fig. 6, right; Table 6).** {deep['model']} ends "
            f"at {pct(deep['final_test_error_mean'])}% test error, {shallow['model']} at "
            f"{pct(shallow['final_test_error_mean'])}% ({100 * abs(diff):.2f} points apart); training error "
            f"{'falls' if train_diff < 0 else 'rises'} with depth ({pct(shallow['final_train_error_mean'])}% → "
            f"{pct(deep['final_train_error_mean'])}%)." + (f" {level_reason(residual)}" if level else ""))
    else:
        lines.append("- Residual vs depth: needs residual nets of at least two depths.")
    seeds = summary["seeds"] if "seeds" in summary.columns else None
    if seeds is not None and (seeds.fillna(1) <= 1).any():
        lines.append("- Some models have a single seed: no spread over seeds to judge a difference against "
                     "(the public reproduction saw ±0.5 points between runs of ResNet-56).")
    return lines


def degradation_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    import pandas as pd
    from resx.plots import degradation as degradation_plots

    curves = degradation_plots.read_curves(folder)
    summary = degradation_plots.read_summary(folder)
    if summary is None and curves is not None:
        summary = degradation_plots.summarize_curves(curves)
    if summary is None:
        return []
    summary = summary.sort_values(["residual", "depth"]).reset_index(drop=True)
    lines = [heading(folder, results_dir, "Degradation: plain vs residual (He et al. 2015)", several), ""]
    if curves is not None:
        runs = curves.groupby(["model", "seed"]).ngroups
        epochs = int(curves["epoch"].max())
        its = int(curves["iteration"].max())
        unfinished = ""
        if "finished" in curves.columns:
            done = curves[curves["finished"]].groupby(["model", "seed"]).ngroups
            unfinished = f" ({runs - done} not finished: left out of the table)" if done < runs else ""
        lines += [f"{runs} runs{unfinished}, up to {epochs} epochs ({its:,} iterations; the paper trains 64,000). "
                  "Errors in %, mean ± std over seeds; final = at the end of training (training error over the "
                  "last epoch's worth of batches).", ""]
    rows = []
    for _, r in summary.iterrows():
        depth = int(r["depth"])
        he = reference.HE_TABLE6_TEST_ERROR.get(depth) if r["residual"] else None
        he_text = pct(he)
        if r["residual"] and depth == 110:  # Table 6's 6.43 is the best of 5 runs; beside a mean, give their mean
            mean, std = reference.HE_RESNET110_MEAN_STD
            he_text = f"{pct_pm(mean, std)} (best {pct(he)})"
        li = reference.LI_TEST_ERROR.get(depth, {}).get("residual" if r["residual"] else "plain")
        params = r.get("params")
        rows.append([
            r["model"], "residual" if r["residual"] else "plain", depth,
            f"{float(params) / 1e6:.2f}M" if params is not None and is_number(params) and not pd.isna(params) else DASH,
            int(r["seeds"]) if "seeds" in r and not pd.isna(r["seeds"]) else DASH,
            pct_pm(r["final_train_error_mean"], r["final_train_error_std"]),
            pct_pm(r["final_test_error_mean"], r["final_test_error_std"]),
            pct(r.get("best_test_error_mean")),
            he_text, pct(li),
        ])
    lines += [markdown_table(
        ["model", "shortcut", "depth", "params", "seeds", "final train error", "final test error", "best test error",
         "He et al. Table 6", "Li et al. 2018"], rows, align="llrrrrrrrr"), ""]
    lines += ["He et al. Table 6 lists ResNets only (option A shortcuts, 64k iterations); Li et al. 2018 trained the "
              "same nets with and without shortcuts. ResNet parameters in the paper: "
              + ", ".join(f"{d}: {p}M" for d, p in reference.HE_PARAMS_MILLIONS.items()) + ".", ""]
    lines += degradation_verdicts(summary) + [""]
    lines += figures(folder, ["degradation_curves", "error_vs_depth"], report_dir, {
        "degradation_curves": "Training (dashed) and test (bold) error against iterations; cf. He et al. 2015 Fig. 6",
        "error_vs_depth": "Final error against depth, mean ± std over seeds",
    })
    return lines


# --- the reproduce stage -------------------------------------------------------------------------------------------
def degradation_stage(ctx: StageContext) -> None:
    """The profile's compare-plain grid (its `compare_plain:` section) into OUT/degradation."""
    from resx.studies.compare import CompareOptions, compare_plain

    options = CompareOptions.resolve(ctx.profile, {"out": str(ctx.study_out("degradation"))}, ctx.overrides)
    result = compare_plain(options, progress=ctx.progress, on_status=ctx.say)
    for line in result.verdict:
        ctx.say(line)


STUDY = register(Study(
    name="degradation",
    title="Degradation: plain vs residual (He et al. 2015)",
    outputs=(
        OutputFile("curves.csv", tuple(CURVE_COLUMNS), "one row per run and epoch"),
        OutputFile("summary.csv", tuple(SUMMARY_COLUMNS), "final and best error per model, mean and std over seeds",
                   marks_study=False),
        OutputFile(ITERATION_CURVES, about="every run's iterations.csv: training error over the last batches",
                   marks_study=False),
        OutputFile("grid_info.json", about="the grid's settings and timings"),
        OutputFile("grid_info-shard*.json", about="one per shard of a sharded grid"),
        *figure_files("degradation_curves", "error_vs_depth"),
    ),
    plot=lazy("resx.plots.degradation", "plot_degradation"),
    report=degradation_section,
    command=degradation_command,
    command_name="compare-plain",
    stage=degradation_stage,
    stage_order=10,
))
