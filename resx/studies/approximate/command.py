"""`resx approximate`: the study's command line. typer and rich are imported when the CLI builds the command, the
computation (torch) when the command runs."""

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

from resx.studies.approximate.declare import (DEFAULT_DEPTHS, DEFAULT_GRID, DEFAULT_LR, DEFAULT_MODELS, DEFAULT_POINTS,
                                              DEFAULT_STEPS, RADII, TASKS)

if TYPE_CHECKING:  # pandas comes with the computation
    import pandas as pd


def approximate_command() -> Callable[..., Any]:
    """`resx approximate`, built when the CLI asks for it."""
    import typer

    from resx.cli_common import CountingProgress, DeviceOpt, SeedOpt, console, user_errors
    from resx.options import check_numbers

    tasks = "; ".join(f"{name}:{':'.join(f'{k}={v:g}' for k, v in options.items())}" for name, options in TASKS.items())

    @user_errors
    def command(
        task: Annotated[str, typer.Option("--task", help=f"The 2-D task, with options as name:key=value (defaults: {tasks}).")] = "ball",
        models: Annotated[str, typer.Option("--models", help="Comma list of model specs name[:key=value...]: onenet_res, mlp_plain, mlp_res (width=N), linear_plain, linear_res.")] = DEFAULT_MODELS,
        depths: Annotated[str, typer.Option("--depths", help="Depths in blocks (onenet_res: one-neuron blocks; mlp_*: blocks of two layers), e.g. 1,2,5,10 or 1..8.")] = DEFAULT_DEPTHS,
        seeds: Annotated[int, typer.Option("--seeds", help="Seeds per model and depth (--seed, --seed + 1, ...): each its own points and initialisation.")] = 5,
        steps: Annotated[int, typer.Option("--steps", help="Adam updates per net (lr / 10 at 50% and 75%).")] = DEFAULT_STEPS,
        lr: Annotated[float, typer.Option("--lr", help="Adam's learning rate.")] = DEFAULT_LR,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Minibatch Adam with this many points per step (default: full batch).")] = None,
        train_points: Annotated[int, typer.Option("--train-points", help="Training points per seed (half per class).")] = DEFAULT_POINTS,
        test_points: Annotated[int, typer.Option("--test-points", help="Test points per seed.")] = DEFAULT_POINTS,
        grid: Annotated[int, typer.Option("--grid", help="Decision-region grid points per side (first seed).")] = DEFAULT_GRID,
        device: DeviceOpt = "auto",
        seed: SeedOpt = None,
        out: Annotated[Path, typer.Option("--out", help="Folder for the CSVs, approximation_info.json and the figures.")] = Path("results/approximate"),
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier approximate study in --out (by default it is resumed when its settings match).")] = False,
    ) -> None:
        """Narrow ReLU nets against one-neuron ResNets on 2-D tasks: accuracy, and whether class 1 stays bounded (Lin & Jegelka 2018)."""
        from resx.atomic import check_output_folder
        from resx.studies.approximate.compute import run_approximate
        from resx.studies.approximate.draw import plot_approximate

        check_numbers(locals())
        check_output_folder(out)
        with CountingProgress(transient=True) as progress:
            result = run_approximate(task, models, depths, seeds, seed=seed, steps=steps, lr=lr, batch_size=batch_size,
                                     train_points=train_points, test_points=test_points, grid=grid, device=device,
                                     out=out, overwrite=overwrite, progress=progress,
                                     say=lambda line: console.print(line, highlight=False))
        plot_approximate(result.out, formats=("png", "pdf"))
        console.print(_table(result.summary(), result.info))
        console.print(f"[dim]mean (lowest-highest) over seeds; far: the share of the circle of radius "
                      f"{RADII[-1]:g} put in class 1; reach: nets whose class 1 reaches that circle (largest margin "
                      "on it > 0); const: nets that put every training point in one class.[/]", highlight=False)
        console.print(f"{result.info['seconds']:.1f} s on {result.info['provenance']['device_name']}; results in "
                      f"[bold]{result.out}[/]", highlight=False)

    return command


def _mean_range(row: "pd.Series", column: str) -> str:
    mean, low, high = (row.get(f"{column}_{k}") for k in ("mean", "min", "max"))
    if mean is None or mean != mean:
        return "-"
    return f"{100 * mean:.1f} ({100 * low:.0f}-{100 * high:.0f})" if row["seeds"] > 1 else f"{100 * mean:.1f}"


def _table(summary: "pd.DataFrame", info: dict):
    from rich import box

    from resx.cli_common import Column, console, fitted_table

    wide = console.width >= 120  # below: light borders and the task's short name, to fit 80 columns
    tag = f"r{RADII[-1]:g}"
    # narrow terminals keep each net (model, depth) with its test accuracy and far share; the rest goes
    columns = [Column("model", justify="left"), Column("depth"), Column("params", drop=5), Column("train %", drop=2),
               Column("test %"), Column("far %"), Column("reach", drop=3), Column("const", drop=4)]
    rows = [[r["label"], r["depth"], r["params"], _mean_range(r, "train_accuracy"), _mean_range(r, "test_accuracy"),
             _mean_range(r, "far_class1_share"), f"{r.get(f'reached_{tag}', '-')}/{r['seeds']}",
             f"{r.get('constant', '-')}/{r['seeds']}"] for _, r in summary.iterrows()]
    return fitted_table(f"approximate: {info.get('task' if wide else 'task_name', '')} ({info['recipe']['steps']} "
                        f"Adam steps, {info['recipe']['batch'].split(' (')[0]})", columns, rows,
                        box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD, show_edge=wide,
                        padding=(0, 1) if wide else (0, 0))
