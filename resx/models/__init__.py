"""Model zoo: every net is a `BlockNet` (stem -> residual blocks -> head) built by name."""

from resx.models.blocks import PadShortcut, ResidualBlock
from resx.models.net import BlockInfo, BlockNet
from resx.models.registry import ModelSpec, create_model, get_model_spec, list_models, register_model, twin_name

__all__ = [
    "BlockInfo",
    "BlockNet",
    "ModelSpec",
    "PadShortcut",
    "ResidualBlock",
    "create_model",
    "get_model_spec",
    "list_models",
    "register_model",
    "twin_name",
]
