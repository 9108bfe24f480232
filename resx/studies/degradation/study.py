"""The degradation study (He, Zhang, Ren, Sun 2015, "Deep Residual Learning for Image Recognition", Fig. 6 and
Table 6), registered: plain and residual nets of the same depths trained alike; deeper plain nets train WORSE,
deeper residual nets better. Layers: declare.py (files, columns, families) < draw.py (figures) < grid.py,
tables.py, verdict.py, compare.py (the grid, its tables, the verdicts, `compare_plain`) < report.py, command.py
(`resx compare-plain`) < this module.
"""

from resx.studies.degradation.declare import OUTPUTS
from resx.studies.registry import StageContext, Study, lazy, register


# --- the reproduce stage -------------------------------------------------------------------------------------------
def degradation_stage(ctx: StageContext) -> None:
    """The profile's compare-plain grid (its `compare_plain:` section) into OUT/degradation."""
    from resx.studies.degradation.compare import CompareOptions, compare_plain

    options = CompareOptions.resolve(ctx.profile, {"out": str(ctx.study_out("degradation"))}, ctx.overrides)
    result = compare_plain(options, progress=ctx.progress, on_status=ctx.say)
    for line in result.verdict:
        ctx.say(line)


STUDY = register(Study(
    name="degradation",
    title="Degradation: plain vs residual (He et al. 2015)",
    outputs=OUTPUTS,
    plot=lazy("resx.studies.degradation.draw", "plot_degradation"),
    report=lazy("resx.studies.degradation.report", "degradation_section"),
    command=lazy("resx.studies.degradation.command", "degradation_command"),
    command_name="compare-plain",
    stage=degradation_stage,
    stage_order=10,
))
