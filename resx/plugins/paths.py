"""The path study (Veit, Wilber, Belongie 2016, §5, Fig. 6): how much gradient the paths of each length carry in
a residual net, and the gradient norm reaching each block of plain and residual twins. The computation is
resx.studies.paths; the figures resx.plots.paths; this module declares the study.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

from resx import reference
from resx.markdown import DASH, figures, heading, markdown_table
from resx.studies.registry import OutputFile, StageContext, Study, figure_files, lazy, register

if TYPE_CHECKING:  # pandas is imported inside the functions that need it
    import pandas as pd

DISTRIBUTION_COLUMNS = ("k", "paths", "fraction")
GRADIENT_COLUMNS = ("k", "samples", "grad_norm_mean", "grad_norm_std")
TOTAL_COLUMNS = ("k", "total", "fraction")
BLOCK_COLUMNS = ("run", "residual", "trained", "block", "grad_norm")


# --- the command ---------------------------------------------------------------------------------------------------
def paths_command() -> Callable[..., Any]:
    """`resx paths`, built when the CLI asks for it: typer and rich are imported by the command line only."""
    import typer
    from rich.table import Table

    from resx.atomic import check_output_folder
    from resx.cli_common import CountingProgress, DataDirOpt, DataOpt, DeviceOpt, ForceOpt, SeedOpt, console, pct, user_errors
    from resx.options import check_numbers

    @user_errors
    def command(
        checkpoints: Annotated[Optional[list[Path]], typer.Argument(
            help="Run folders or checkpoint.pt files; the first residual one is analysed, all get block gradients "
                 "(e.g. runs/resnet56 runs/plain56).", show_default=False)] = None,
        model: Annotated[Optional[str], typer.Option("--model", help="Analyse a freshly initialised net of this name instead.")] = None,
        init: Annotated[bool, typer.Option("--init", help="Analyse the checkpoint's model freshly initialised (seeded).")] = False,
        data: DataOpt = None,
        samples: Annotated[int, typer.Option("--samples", help="Measurements per path length k = 0..n.")] = 1000,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Images per batch: bounds memory (default 500 on CUDA, 128 on CPU).")] = None,
        out: Annotated[Path, typer.Option("--out", help="Folder for the CSVs and paths_info.json.")] = Path("results/paths"),
        no_tf32: Annotated[bool, typer.Option("--no-tf32", help="Strict fp32 on CUDA (default allows TF32).")] = False,
        data_dir: DataDirOpt = None,
        device: DeviceOpt = "auto",
        seed: SeedOpt = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier paths study in --out.")] = False,
        force: ForceOpt = False,
    ) -> None:
        """Gradient per path length and per block: which paths of a residual net carry the gradient."""
        from resx.studies.paths import run_paths

        check_numbers(locals())
        check_output_folder(out)

        with CountingProgress(transient=True) as progress:
            result = run_paths(checkpoints or (), model, init=init, data=data, data_dir=data_dir, samples=samples,
                               batch_size=batch_size, seed=seed, device=device, tf32=not no_tf32, out=out, progress=progress,
                               overwrite=overwrite, force=force)
        info = result.info
        lo, hi = info["window"]
        table = Table(title=f"paths of {info['model']} ({'trained' if info['trained'] else 'at initialisation'}, {info['data']})")
        for col in ("blocks n", "centre", f"{100 * info['window_fraction']:.0f}% gradient window", "paths in window",
                    "gradient peak k", "seconds"):
            table.add_column(col, justify="right")
        table.add_row(str(info["blocks"]), f"{info['centre']:g}", f"{lo} to {hi}", pct(info["window_paths_fraction"]),
                      str(info["gradient_peak_k"]), f"{info['seconds_path_gradients']:.1f} ({info['device_name']})")
        console.print(table)
        ratios = Table(title="block gradient norm, first block / last block")
        for col in ("run", "residual", "trained", "first / last"):
            ratios.add_column(col, justify="left" if col == "run" else "right")
        for entry in info["nets"]:
            ratios.add_row(entry["run"], "yes" if entry["residual"] else "no", "yes" if entry["trained"] else "no",
                           f"{info['first_last_block_gradient_ratio'][entry['run']]:.3g}")
        console.print(ratios)
        console.print(f"[dim]{info['note']}[/]", highlight=False)
        console.print(f"{info['samples']} samples per k, batch {info['batch_size']}; results in [bold]{out}[/]")

    return command


# --- REPORT.md -----------------------------------------------------------------------------------------------------
def block_gradient_ratios(blocks: "pd.DataFrame") -> "pd.DataFrame":
    """Per run and state (init/trained): gradient norm at the first and last block and their ratio."""
    import pandas as pd

    rows = []
    for (run, residual, trained), part in blocks.groupby(["run", "residual", "trained"], sort=False):
        part = part.sort_values("block")
        first, last = float(part["grad_norm"].iloc[0]), float(part["grad_norm"].iloc[-1])
        rows.append({"run": run, "residual": bool(residual), "trained": bool(trained), "blocks": len(part),
                     "first": first, "last": last, "ratio": first / last if last else float("nan")})
    return pd.DataFrame(rows).sort_values(["trained", "residual", "run"]).reset_index(drop=True)


def paths_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    from resx.plots import paths as paths_plots
    from resx.studies.path_window import distribution_centre, effective_window

    distribution = paths_plots.read_distribution(folder)
    total = paths_plots.read_total(folder)
    gradients = paths_plots.read_gradients(folder)
    blocks = paths_plots.read_block_gradients(folder)
    if all(frame is None for frame in (distribution, total, gradients, blocks)):
        return []
    lines = [heading(folder, results_dir, "Paths and gradients (Veit et al. 2016)", several), ""]
    veit_lo, veit_hi = reference.VEIT_EFFECTIVE_WINDOW
    n_veit = reference.VEIT_BLOCKS
    rows = []
    n = None
    if distribution is not None:
        n = int(distribution["k"].max())
        centre = distribution_centre(distribution["k"], distribution["fraction"])
        rows.append(["blocks n", n, n_veit])
        rows.append(["centre of the path-length distribution", f"{centre:.1f}", reference.VEIT_PATH_LENGTH_CENTRE])
    if total is not None:
        lo, hi, captured = effective_window(total["k"], total["total"])
        n = n if n is not None else int(total["k"].max())
        rows.append(["effective window: shortest k range holding 90% of the total gradient",
                     f"{lo} to {hi} ({100 * captured:.1f}% of the gradient)", f"{veit_lo} to {veit_hi}"])
        rows.append(["the window as a share of n", f"{lo / n:.2f} to {hi / n:.2f}" if n else DASH,
                     f"{veit_lo / n_veit:.2f} to {veit_hi / n_veit:.2f}"])
        # Veit et al. name no threshold for "almost all": on an exponential curve, 5..17 of 54 holds about 96%.
        lo95, hi95, captured95 = effective_window(total["k"], total["total"], 0.95)
        rows.append(["shortest k range holding 95%", f"{lo95} to {hi95} ({100 * captured95:.1f}%)", DASH])
        if n:
            a, b = round(veit_lo * n / n_veit), round(veit_hi * n / n_veit)
            share = total[(total["k"] >= a) & (total["k"] <= b)]["total"].sum() / total["total"].sum()
            rows.append([f"share of the total gradient in Veit's range, scaled to n ({a} to {b})",
                         f"{100 * share:.1f}%", "almost all"])
        peak = int(total.loc[total["total"].idxmax(), "k"])
        rows.append(["path length with the most total gradient", peak, DASH])
        if distribution is not None:
            inside = distribution[(distribution["k"] >= lo) & (distribution["k"] <= hi)]["fraction"].sum()
            rows.append(["share of all paths inside the window", f"{100 * inside:.2f}%",
                         f"{100 * reference.VEIT_WINDOW_PATH_FRACTION:.2f}%"])
            below = hi < centre
            rows.append(["the window lies below the distribution's centre (short paths carry the gradient)",
                         "yes" if below else f"NO: it reaches k = {hi}, the centre is {centre:.1f}", "yes"])
    if gradients is not None and len(gradients) >= 2:
        g = gradients.sort_values("k")
        g = g[g["grad_norm_mean"] > 0]
        if len(g) >= 2:
            import numpy as np

            slope = np.polyfit(g["k"].astype(float), np.log(g["grad_norm_mean"].astype(float)), 1)[0]
            rows.append(["gradient per path: factor per extra block (log-linear fit)", f"{np.exp(slope):.3f}",
                         "falls exponentially"])
    if rows:
        lines += [markdown_table(["", "resx", f"Veit et al. (n = {n_veit})"], rows), ""]
    if blocks is not None:
        ratios = block_gradient_ratios(blocks)
        table = [[r["run"], "residual" if r["residual"] else "plain", "trained" if r["trained"] else "init",
                  f"{r['first']:.3g}", f"{r['last']:.3g}", f"{r['ratio']:.3g}"] for _, r in ratios.iterrows()]
        lines += ["**Gradient norm per block**, first block (input side) against last:", "",
                  markdown_table(["run", "shortcut", "state", "first block", "last block", "first / last"], table,
                                 align="lllrrr"), ""]
        init = ratios[~ratios["trained"]]
        for blocks_count, same_depth in init.groupby("blocks"):  # compare twins of one depth, never across depths
            plain, res = same_depth[~same_depth["residual"]], same_depth[same_depth["residual"]]
            if len(plain) and len(res):
                p_ratio, r_ratio = plain["ratio"].iloc[0], res["ratio"].iloc[0]
                lines += [f"At initialisation, {blocks_count} blocks ({plain['run'].iloc[0]} vs {res['run'].iloc[0]}): the "
                          f"first/last ratio is {p_ratio:.3g} without shortcuts and {r_ratio:.3g} with them: "
                          + ("the plain net's gradient shrinks towards the input, the residual net's much less."
                             if p_ratio < r_ratio
                             else "here the plain net does NOT lose more gradient towards the input (with BatchNorm, "
                                  "gradients of deep plain nets grow towards the input at initialisation)."), ""]
    lines += figures(folder, ["paths", "block_gradients"], report_dir, {
        "paths": "Path lengths, gradient per path length and total gradient per length; cf. Veit et al. 2016 Fig. 6",
        "block_gradients": "Gradient norm reaching each block: plain vs residual, at init (dashed) and trained",
    })
    return lines


# --- the reproduce stage -------------------------------------------------------------------------------------------
@dataclass
class PathsSettings:
    samples: int = 1000
    batch_size: int | None = None


def paths_stage(ctx: StageContext) -> None:
    """Paths on the trained deep net, with the block gradients of the grid's plain/residual twins, trained and at
    initialisation."""
    from resx.studies.paths import run_paths

    settings: PathsSettings = ctx.settings
    deep = ctx.deep_runs[ctx.reproduce.deep_model]
    targets = list(dict.fromkeys([deep, *(ctx.grid_run(m) for m in ctx.reproduce.twin_models)]))
    run_paths([t for t in targets if t.exists()], data=ctx.train.data, data_dir=ctx.train.data_dir,
              samples=settings.samples, batch_size=settings.batch_size, seed=ctx.train.seed, device=ctx.device,
              out=ctx.study_out("paths"))


STUDY = register(Study(
    name="paths",
    title="Paths and gradients (Veit et al. 2016)",
    outputs=(
        OutputFile("path_distribution.csv", DISTRIBUTION_COLUMNS, "number of paths of each length k (binomial)"),
        OutputFile("path_gradients.csv", GRADIENT_COLUMNS, "gradient norm of a path of length k (Fig. 6b)"),
        OutputFile("path_total_gradient.csv", TOTAL_COLUMNS, "total gradient of all paths of length k (Fig. 6c)"),
        OutputFile("block_gradients.csv", BLOCK_COLUMNS, "gradient norm reaching each block"),
        OutputFile("paths_info.json", about="settings, the effective window, timings"),
        *figure_files("paths", "block_gradients"),
    ),
    plot=lazy("resx.plots.paths", "plot_paths"),
    report=paths_section,
    command=paths_command,
    settings=PathsSettings,
    stage=paths_stage,
    stage_order=40,
))
