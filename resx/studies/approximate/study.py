"""The approximation study (Lin & Jegelka 2018, "ResNet with one-neuron hidden layers is a Universal Approximator"),
registered: narrow fully connected ReLU nets and one-neuron ResNets trained on 2-D tasks, their accuracy against depth
and the boundedness of their class-1 regions measured far outside the data. Layers: declare.py (files, columns, tasks,
settings) < draw.py (figures, readers, summary) < tasks.py, specs.py, train.py, farfield.py, store.py, compute.py
(torch) < report.py, command.py < this module.
"""

from resx.studies.approximate.declare import OUTPUTS, TITLE, ApproximateSettings
from resx.studies.registry import StageContext, Study, lazy, register


# --- the reproduce stage -------------------------------------------------------------------------------------------
def approximate_stage(ctx: StageContext) -> None:
    """Trains its own small nets (nothing from the other stages), into out/approximate; resumable."""
    from resx.studies.approximate.compute import run_approximate

    s: ApproximateSettings = ctx.settings or ApproximateSettings()
    run_approximate(s.task, s.models, s.depths, s.seeds, seed=ctx.train.seed, steps=s.steps, lr=s.lr,
                    batch_size=s.batch_size, train_points=s.train_points, test_points=s.test_points, grid=s.grid,
                    device=ctx.device, out=ctx.study_out("approximate"), say=ctx.say)


STUDY = register(Study(
    name="approximate",
    title=TITLE,
    outputs=OUTPUTS,
    plot=lazy("resx.studies.approximate.draw", "plot_approximate"),
    report=lazy("resx.studies.approximate.report", "approximate_section"),
    command=lazy("resx.studies.approximate.command", "approximate_command"),
    command_name="approximate",
    settings=ApproximateSettings,
    stage=approximate_stage,
    stage_order=70,
    uses_dataset=False,  # its own generated data: a profile of it records no dataset
    in_every_profile=False,  # trains its own small nets: only in a profile that names it or has its section
))
