"""The signal study (He et al. 2016, "Identity mappings in deep residual networks", §3; deep linear nets, Saxe et al.
2014), registered: activation and gradient RMS per layer, block Jacobian spectra, deep linear nets against a^l.
Layers: declare.py (files, columns, settings) < draw.py (figures, readers, summary) < layers.py, jacobians.py,
linear_nets.py, nets.py, compute.py (torch) < report.py, command.py < this module.
"""

from resx.studies.registry import StageContext, Study, lazy, register
from resx.studies.signal.declare import OUTPUTS, TITLE, SignalSettings


# --- the reproduce stage -------------------------------------------------------------------------------------------
def signal_stage(ctx: StageContext) -> None:
    """The grid's trained twins (reproduce.twin_models, those trained) with their twins at initialisation, into
    out/signal; the deep linear nets into out/signal/linear. Trains nothing."""
    from resx.studies.signal.compute import run_signal

    settings: SignalSettings = ctx.settings or SignalSettings()
    common = dict(samples=settings.samples, batch_size=settings.batch_size,
                  jacobian_examples=settings.jacobian_examples, lanczos_steps=settings.lanczos_steps,
                  probes=settings.probes, device=ctx.device, seed=ctx.train.seed, overwrite=True, say=ctx.say)
    runs = [run for run in (ctx.grid_run(m) for m in dict.fromkeys(ctx.reproduce.twin_models)) if run.exists()]
    out = ctx.study_out("signal")
    if runs:
        run_signal(runs, data=ctx.train.data, data_dir=ctx.train.data_dir, out=out, **common)
    elif ctx.reproduce.twin_models:
        ctx.say(f"signal: no trained run of {', '.join(ctx.reproduce.twin_models)}; their models at initialisation")
        run_signal(model=ctx.reproduce.twin_models[0], data=ctx.train.data, data_dir=ctx.train.data_dir, out=out,
                   **common)
    if settings.linear:
        run_signal(model="linear_plain", depths=[settings.linear_depth], scale=settings.linear_scales,
                   out=out / "linear", **common)


STUDY = register(Study(
    name="signal",
    title=TITLE,
    outputs=OUTPUTS,
    plot=lazy("resx.studies.signal.draw", "plot_signal"),
    report=lazy("resx.studies.signal.report", "signal_section"),
    command=lazy("resx.studies.signal.command", "signal_command"),
    command_name="signal",
    settings=SignalSettings,
    stage=signal_stage,
    stage_order=60,
))
