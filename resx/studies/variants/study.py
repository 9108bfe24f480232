"""The variants study (He, Zhang, Ren, Sun 2016, "Identity Mappings in Deep Residual Networks", Tables 1 and 2),
registered: the base net with each shortcut variant and each placement of BN and ReLU, trained alike, beside the
paper's numbers, and the signal's gain over depth at initialisation. Layers: declare.py (files, columns, defaults,
settings) < draw.py (figures, readers) < plan.py, tables.py, gains.py, compute.py < report.py, command.py < this
module.
"""

from resx.studies.registry import StageContext, Study, lazy, register
from resx.studies.variants.declare import OUTPUTS, TITLE, VariantsSettings


def variants_stage(ctx: StageContext) -> None:
    """The profile's `variants:` grid into OUT/variants, then each grid of its `also:` list into
    OUT/variants-<name>; resumable."""
    from resx.studies.variants.compute import options_from_profile, run_variants

    s: VariantsSettings = ctx.settings or VariantsSettings()
    for out, options in options_from_profile(s, ctx.train, ctx.overrides, ctx.out, str(ctx.profile)):
        ctx.say(f"variants: {options.describe()}")
        result = run_variants(options, progress=ctx.progress, on_status=ctx.say)
        ctx.say(f"variants: {len(result.summary)} variant(s) summarised in {result.out}")


STUDY = register(Study(
    name="variants",
    title=TITLE,
    outputs=OUTPUTS,
    plot=lazy("resx.studies.variants.draw", "plot_variants"),
    report=lazy("resx.studies.variants.report", "variants_section"),
    command=lazy("resx.studies.variants.command", "variants_command"),
    command_name="variants",
    settings=VariantsSettings,
    stage=variants_stage,
    stage_order=60,
    in_every_profile=False,  # trains its own grid of nets: only in a profile that names it or has its section
))
