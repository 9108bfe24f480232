"""The training-speed benchmark (`resx bench`), registered: the common recipe (DataLoader + per-sample PIL
transforms, eager fp32) against resx's engine on this machine, with achieved GFLOP/s beside a measured peak. It is no
paper's study and has no reproduce stage. Layers: declare.py (files, columns, methods, settings) < draw.py (figure)
< timing.py, common_recipe.py, resx_methods.py, flops.py, compute.py (torch) < report.py, command.py < this module.
"""

from resx.studies.bench.declare import OUTPUTS
from resx.studies.registry import Study, lazy, register

STUDY = register(Study(
    name="bench",
    title="Training speed",
    outputs=OUTPUTS,
    plot=lazy("resx.studies.bench.draw", "plot_bench"),
    report=lazy("resx.studies.bench.report", "bench_section"),
    command=lazy("resx.studies.bench.command", "bench_command"),
))
