"""The lesion study (Veit, Wilber, Belongie 2016, "Residual Networks Behave Like Ensembles of Relatively Shallow
Networks", §4), registered: delete one block (Fig. 3), k random blocks (Fig. 5a), or swap blocks (Fig. 5b) of a
trained net at test time. Layers: declare.py (files, columns, settings) < plans.py, evaluator.py, compute.py
(torch) and draw.py (figures) < report.py, command.py < this module.
"""

from resx.studies.lesion.declare import OUTPUTS, LesionSettings
from resx.studies.registry import StageContext, Study, lazy, register


# --- the reproduce stage -------------------------------------------------------------------------------------------
def lesion_stage(ctx: StageContext) -> None:
    """Lesion the deep nets and the grid's plain net (Veit et al. 2016 compare a residual net with a plain one)."""
    from resx.studies.lesion.compute import run_lesion

    settings: LesionSettings = ctx.settings
    targets = list(dict.fromkeys([*ctx.deep_runs.values(), ctx.grid_run(ctx.reproduce.plain_model)]))
    run_lesion(targets, data=ctx.train.data, data_dir=ctx.train.data_dir, max_k=settings.max_k, draws=settings.draws,
               swaps=settings.swaps, seed=ctx.train.seed, device=ctx.device, out=ctx.study_out("lesion"))


STUDY = register(Study(
    name="lesion",
    title="Lesion study (Veit et al. 2016)",
    outputs=OUTPUTS,
    plot=lazy("resx.studies.lesion.draw", "plot_lesion"),
    report=lazy("resx.studies.lesion.report", "lesion_section"),
    command=lazy("resx.studies.lesion.command", "lesion_command"),
    settings=LesionSettings,
    stage=lesion_stage,
    stage_order=30,
))
