"""The path study (Veit, Wilber, Belongie 2016, "Residual Networks Behave Like Ensembles of Relatively Shallow
Networks", §5, Fig. 6), registered: how much gradient the paths of each length carry in a residual net, and the
gradient norm reaching each block of plain and residual twins. Layers: declare.py (files, columns, settings, the
effective window) < draw.py (figures) < gates.py, path_gradients.py, block_gradients.py, nets.py, compute.py
(torch) < report.py, command.py < this module.
"""

from resx.studies.paths.declare import OUTPUTS, PathsSettings
from resx.studies.registry import StageContext, Study, lazy, register


# --- the reproduce stage -------------------------------------------------------------------------------------------
def paths_stage(ctx: StageContext) -> None:
    """Paths on the trained deep net, with the block gradients of the grid's plain/residual twins, trained and at
    initialisation."""
    from resx.studies.paths.compute import run_paths

    settings: PathsSettings = ctx.settings
    deep = ctx.deep_runs[ctx.reproduce.deep_model]
    targets = list(dict.fromkeys([deep, *(ctx.grid_run(m) for m in ctx.reproduce.twin_models)]))
    run_paths([t for t in targets if t.exists()], data=ctx.train.data, data_dir=ctx.train.data_dir,
              samples=settings.samples, batch_size=settings.batch_size, seed=ctx.train.seed, device=ctx.device,
              out=ctx.study_out("paths"))


STUDY = register(Study(
    name="paths",
    title="Paths and gradients (Veit et al. 2016)",
    outputs=OUTPUTS,
    plot=lazy("resx.studies.paths.draw", "plot_paths"),
    report=lazy("resx.studies.paths.report", "paths_section"),
    command=lazy("resx.studies.paths.command", "paths_command"),
    settings=PathsSettings,
    stage=paths_stage,
    stage_order=40,
))
