"""Swap the torch.nn layers of an existing model for their cnnops twins, and back."""

from __future__ import annotations

import copy
import warnings

from torch import nn

from . import nn as cnn

__all__ = ["convert"]

# torch.nn layer -> its cnnops twin. Each twin subclasses the torch layer and adds no state,
# so a layer converts by changing its class: parameters, buffers, hooks, training mode,
# device and dtype all stay as they are.
TWINS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv2d: cnn.Conv2d,
    nn.MaxPool2d: cnn.MaxPool2d,
    nn.AvgPool2d: cnn.AvgPool2d,
    nn.AdaptiveAvgPool2d: cnn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d: cnn.AdaptiveMaxPool2d,
}


def convert(model: nn.Module, inplace: bool = False, to: str = "cnnops") -> nn.Module:
    """Replaces every ``torch.nn`` Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d and
    AdaptiveMaxPool2d in ``model`` with its ``cnnops.nn`` twin (``to="cnnops"``), or every
    cnnops layer with its torch twin (``to="torch"``), keeping weights, buffers, training
    mode, device and dtype.

    Only layers of exactly those classes convert; subclasses (which may have a forward of
    their own) are left alone and listed in a warning. Returns the converted model: a deep
    copy, unless ``inplace``.
    """
    if to == "cnnops":
        table = TWINS
    elif to == "torch":
        table = {twin: layer for layer, twin in TWINS.items()}
    else:
        raise ValueError(f"convert: argument 'to' must be 'cnnops' or 'torch', got {to!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert: argument 'model' must be an nn.Module, got "
                        f"{type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    targets = tuple(table)
    skipped = []
    for name, module in model.named_modules():
        if type(module) in table:
            module.__class__ = table[type(module)]
        elif isinstance(module, targets) and type(module) not in table.values():
            skipped.append(f"{name or '(model)'} ({type(module).__name__})")
    if skipped:
        warnings.warn(f"convert: left these layers as they are, since they subclass a layer "
                      f"it converts: {', '.join(skipped)}", stacklevel=2)
    return model
