"""The loss-landscape study (Li, Xu, Taylor, Studer, Goldstein 2018, "Visualizing the Loss Landscape of Neural Nets",
Fig. 1 and Fig. 5), registered: loss surfaces around trained nets along filter-normalised random directions, twins
with and without shortcuts side by side. Layers: declare.py (files, columns, settings) < draw.py (figures, readers)
< metrics.py (convex share, roughness; torch-free), options.py, directions.py, surface.py, targets.py, store.py,
compute.py (torch) < report.py, command.py < this module.
"""

from resx.studies.landscape.declare import OUTPUTS, TITLE, LandscapeSettings
from resx.studies.registry import StageContext, Study, lazy, register


# --- the reproduce stage -------------------------------------------------------------------------------------------
def landscape_stage(ctx: StageContext) -> None:
    """Li et al. 2018 Fig. 5 on the grid's trained plain/residual twins (those that were trained), resumable."""
    from resx.studies.guards import run_status
    from resx.studies.landscape.compute import run_landscape
    from resx.studies.landscape.report import metric_lines

    settings: LandscapeSettings = ctx.settings or LandscapeSettings()
    wanted = list(dict.fromkeys(ctx.grid_run(m) for m in ctx.reproduce.twin_models))
    found = [run for run in wanted if (run / "checkpoint.pt").exists() and run_status(run) in (None, "finished")]
    for run in wanted:
        if run not in found and (run / "checkpoint.pt").exists():
            ctx.say(f"landscape: {run} is not finished (run_info.json says {run_status(run)!r}); left out")
    if not found:
        ctx.say(f"landscape: none of {', '.join(map(str, wanted))} was trained; nothing to measure")
        return
    result = run_landscape(found, dims=settings.dims, span=settings.span, points=settings.points,
                           samples=settings.samples, norm=settings.norm, bn_recalibrate=settings.bn_recalibrate,
                           batch_size=settings.batch_size, precision=settings.precision, data=ctx.train.data, data_dir=ctx.train.data_dir,
                           device=ctx.device, seed=ctx.train.seed, out=ctx.study_out("landscape"), say=ctx.say)
    for line in metric_lines(result.metrics):
        ctx.say(line)


STUDY = register(Study(
    name="landscape",
    title=TITLE,
    outputs=OUTPUTS,
    plot=lazy("resx.studies.landscape.draw", "plot_landscape"),
    report=lazy("resx.studies.landscape.report", "landscape_section"),
    command=lazy("resx.studies.landscape.command", "landscape_command"),
    command_name="landscape",
    settings=LandscapeSettings,
    stage=landscape_stage,
    stage_order=50,
))
