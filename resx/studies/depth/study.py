"""The depth study (Telgarsky 2015, 2016: the sawtooth m^k, 2^k pieces from 2 units x k layers; parity of n bits,
Håstad 1986, Bengio 2009), registered. Layers: declare.py (files, columns, thresholds, settings) < draw.py
(figures, readers) < shapes.py, pieces.py, nets.py, tasks.py, train.py, store.py, compute.py (torch) and summary.py
(tables, pandas) < report.py, command.py < this module.
"""

from resx.studies.depth.declare import OUTPUTS, TITLE, DepthSettings
from resx.studies.registry import StageContext, Study, lazy, register


# --- the reproduce stage -------------------------------------------------------------------------------------------
def depth_stage(ctx: StageContext) -> None:
    """Each of the profile's targets (sawtooth, parity) into out/depth, with the profile's seed and device; trains
    its own small nets (no dataset). Resumable: a stopped stage continues where it was."""
    from resx.studies.depth.compute import run_depth
    from resx.studies.depth.declare import TARGETS

    settings: DepthSettings = ctx.settings or DepthSettings()
    unknown = [t for t in settings.targets if t not in TARGETS]
    if unknown:
        from resx.errors import ResxError

        raise ResxError(f"{ctx.profile} (depth): targets: unknown target {unknown[0]!r}; allowed: {', '.join(TARGETS)}")
    for target in settings.targets:
        run_depth(target, k=settings.sawtooth_k if target == "sawtooth" else settings.parity_n,
                  params=settings.params, seeds=settings.seeds, depths=settings.depths, steps=settings.steps,
                  lr=settings.lr, train_fraction=settings.train_fraction, seed=ctx.train.seed, device=ctx.device,
                  out=ctx.study_out("depth"), say=ctx.say)


STUDY = register(Study(
    name="depth",
    title=TITLE,
    outputs=OUTPUTS,
    plot=lazy("resx.studies.depth.draw", "plot_depth"),
    report=lazy("resx.studies.depth.report", "depth_section"),
    command=lazy("resx.studies.depth.command", "depth_command"),
    command_name="depth",
    settings=DepthSettings,
    stage=depth_stage,
    stage_order=75,
    uses_dataset=False,  # its own generated data: a profile of it records no dataset
    in_every_profile=False,  # trains its own small nets: only in a profile that names it or has its section
))
