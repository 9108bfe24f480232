"""resx: reproduce the classic experiments on why residual networks work.

The library works without the CLI: `resx.models.create_model`, `resx.data.load_dataset`,
`resx.engine.train` and the studies in `resx.studies` are plain functions a notebook can call.
"""

__version__ = "0.1.0"
