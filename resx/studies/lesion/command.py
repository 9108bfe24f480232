"""`resx lesion`: the study's command line. typer and rich are imported when the CLI builds the command."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional


def lesion_command() -> Callable[..., Any]:
    """`resx lesion`, built when the CLI asks for it: typer and rich are imported by the command line only."""
    import typer

    from resx.atomic import check_output_folder
    from resx.cli_common import (Column, CountingProgress, DataDirOpt, DataOpt, DeviceOpt, ForceOpt, SeedOpt, console,
                                  fitted_table, user_errors)
    from resx.options import check_numbers

    @user_errors
    def command(
        runs: Annotated[list[Path], typer.Argument(help="Run folders or checkpoint.pt files, lesioned side by side.")],
        data: DataOpt = None,
        studies: Annotated[Optional[str], typer.Option(help="Comma list of single, delete-k, swap (default: all; swap skipped for plain nets).")] = None,
        blocks: Annotated[Optional[str], typer.Option(help="Restrict `single` to these 0-based blocks: 3, 0..8 or 0,5,18.")] = None,
        max_k: Annotated[Optional[int], typer.Option("--max-k", help="delete-k for k = 1..K (default 20, or every deletable block).")] = None,
        draws: Annotated[int, typer.Option(help="Random draws per k and per swap count.")] = 50,
        swaps: Annotated[str, typer.Option(help="Swap counts: a range 1..10, a number 5, or a list 1,2,5 (counts above the most swaps a net's orders need are left out).")] = "1..10",
        seed: SeedOpt = None,
        device: DeviceOpt = "auto",
        data_dir: DataDirOpt = None,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Eval batch (default: 1000 on CPU, as large as fits on CUDA).")] = None,
        cache_mb: Annotated[Optional[int], typer.Option("--cache-mb", help="Memory for cached activations (default: automatic; 0: off).")] = None,
        out: Annotated[Path, typer.Option(help="Folder for lesion_*.csv and lesion_info.json.")] = Path("results/lesion"),
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier lesion study in --out (by default an unfinished one of the same settings is continued).")] = False,
        force: ForceOpt = False,
    ) -> None:
        """Delete and reorder blocks of trained nets at test time (Veit et al. 2016, §4, Figs. 3 and 5)."""
        from resx.studies.lesion.compute import run_lesion

        check_numbers(locals())
        check_output_folder(out)

        with CountingProgress() as bars:
            result = run_lesion(runs, data=data, data_dir=data_dir, studies=studies, blocks=blocks, max_k=max_k, draws=draws,
                                swaps=swaps, seed=seed if seed is not None else 0, device=device, batch_size=batch_size,
                                cache_bytes=None if cache_mb is None else cache_mb * 2**20, out=out, progress=lambda run, study, done, total: bars(f"{run} {study}", done, total),
                                overwrite=overwrite, force=force, resume=not overwrite,
                                say=lambda line: bars.bar.console.print(line, highlight=False))
        rows = result.summary()
        ks = sorted({k for r in rows for k in r.get("delete_k", {})})
        counts = sorted({c for r in rows for c in r.get("swap", {})})
        p1 = lambda v: f"{100 * v:.1f}" if v is not None else "-"  # noqa: E731
        # narrow terminals keep the run and its single deletions (Fig. 3); the rest goes from the right
        columns = [Column("run", justify="left"), Column("base", drop=2), Column("single"), Column("down", drop=4),
                   *[Column(f"del {k}", drop=5) for k in ks], *[Column(f"swap {c}", drop=6) for c in counts]]
        cells = []
        for r in rows:
            single = "/".join(p1(r.get(f"single_{s}")) for s in ("min", "median", "max")) if "single_min" in r else "-"
            down = " ".join(p1(e) for e in r.get("downsampling", {}).values()) or "-"
            cells.append([r["run"], p1(r["baseline"]), single, down, *[p1(r.get("delete_k", {}).get(k)) for k in ks],
                          *[p1(r.get("swap", {}).get(c)) for c in counts]])
        console.print(fitted_table(f"test error % after lesions (Veit et al. 2016 §4), {result.info['device_name']}",
                                   columns, cells))
        for run in result.info["runs"]:
            for study, why in run["skipped"].items():
                console.print(f"{run['run']}: {study} skipped: {why}")
            for note in run.get("notes", []):
                console.print(f"{run['run']}: {note}")
        for r in rows:
            console.print(f"{r['run']} ({r['model']}): seconds " + ", ".join(f"{k} {v:.2f}" for k, v in r["seconds"].items()))
        console.print("single: min/median/max over the non-downsampling blocks deleted one at a time; down: each "
                      "downsampling block deleted; del k: mean over draws with k blocks deleted; swap n: mean with n pairs "
                      f"swapped. Results in [bold]{result.out}[/]")

    return command


