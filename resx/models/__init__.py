"""Model zoo: every net is a `BlockNet` (stem -> residual blocks -> head) built by name.

The names below are imported on first use (PEP 562), so that the torch-free parts of the package
(resx.models.variants: the names of shortcut and block variants, checked by resx.config) load without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BlockInfo": "resx.models.net",
    "BlockNet": "resx.models.net",
    "ModelSpec": "resx.models.registry",
    "PadShortcut": "resx.models.blocks",
    "ResidualBlock": "resx.models.blocks",
    "create_model": "resx.models.registry",
    "get_model_spec": "resx.models.registry",
    "list_models": "resx.models.registry",
    "register_model": "resx.models.registry",
    "twin_name": "resx.models.registry",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from resx.models.blocks import PadShortcut, ResidualBlock
    from resx.models.net import BlockInfo, BlockNet
    from resx.models.registry import ModelSpec, create_model, get_model_spec, list_models, register_model, twin_name


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'resx.models' has no attribute {name!r}")
