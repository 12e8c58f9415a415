"""The classic CNN arithmetic: output sizes, receptive fields, parameter and FLOP counts.

``summary(model, input_size)`` runs one forward pass on zeros with hooks and reports, per
leaf layer, its output shape, parameters, FLOPs and receptive field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ._checks import check_allocation, check_bool, check_int, is_int

__all__ = ["conv_output_size", "pool_output_size", "summary", "Summary"]

IntOrPair = int | Sequence[int]


def _pairs(op: str, **values: IntOrPair) -> tuple[bool, list[tuple[int, int]]]:
    """Whether any value was a pair, and every value as a pair of ints >= its minimum (0 for
    padding, 1 for the others); bools, floats and strings are refused, naming the argument."""
    as_pairs, any_pair = [], False
    for name, value in values.items():
        minimum = 0 if name == "padding" else 1
        if isinstance(value, (tuple, list)):
            if len(value) != 2:
                raise ValueError(f"{op}: argument '{name}' must be an int or a pair of ints, "
                                 f"got {value!r}")
            any_pair = True
            as_pairs.append(tuple(check_int(op, name, v, minimum) for v in value))
        elif is_int(value):
            as_pairs.append((check_int(op, name, value, minimum),) * 2)
        else:
            raise TypeError(f"{op}: argument '{name}' must be an int or a pair of ints, got "
                            f"{value!r}")
    return any_pair, as_pairs


def _window_output(size: int, kernel: int, stride: int, padding: int, dilation: int,
                   ceil_mode: bool) -> int:
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        raise ValueError(f"the window (kernel {kernel}, dilation {dilation}) is larger than "
                         f"the padded input ({size} + 2*{padding})")
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    # torch's rule: the last window must start inside the input or its left padding.
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def conv_output_size(size: IntOrPair, kernel: IntOrPair, stride: IntOrPair = 1,
                     padding: IntOrPair = 0, dilation: IntOrPair = 1,
                     ceil_mode: bool = False) -> int | tuple[int, int]:
    """Output extent of a convolution: ``floor((size + 2p - d(k-1) - 1) / s) + 1``.

    Every argument is an int or an (h, w) pair; the result is a pair when any argument is.
    ``ceil_mode`` rounds up, with torch's rule that the last window must start inside the
    input or its left padding.
    """
    check_bool("conv_output_size", "ceil_mode", ceil_mode)
    any_pair, pairs = _pairs("conv_output_size", size=size, kernel=kernel, stride=stride,
                             padding=padding, dilation=dilation)
    out = tuple(_window_output(*(p[dim] for p in pairs), ceil_mode) for dim in range(2))
    return out if any_pair else out[0]


def pool_output_size(size: IntOrPair, kernel: IntOrPair, stride: IntOrPair | None = None,
                     padding: IntOrPair = 0, dilation: IntOrPair = 1,
                     ceil_mode: bool = False) -> int | tuple[int, int]:
    """Output extent of max or average pooling; ``stride`` None means ``kernel``. The padding
    may be at most half the kernel, as torch requires of pooling."""
    stride = kernel if stride is None else stride
    _, (kernels, paddings) = _pairs("pool_output_size", kernel=kernel, padding=padding)
    if any(p > k // 2 for p, k in zip(paddings, kernels)):
        raise ValueError(f"pool_output_size: argument 'padding' must be at most half the "
                         f"kernel size, got padding {padding!r} with kernel {kernel!r}")
    return conv_output_size(size, kernel, kernel if stride is None else stride, padding,
                            dilation, ceil_mode)


def _as_pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _window_of(module: nn.Module, in_hw: tuple[int, int], out_hw: tuple[int, int]):
    """(kernel, stride, dilation) pairs of a layer that slides a window, else None."""
    if isinstance(module, nn.Conv2d):
        return _as_pair(module.kernel_size), _as_pair(module.stride), _as_pair(module.dilation)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        kernel = _as_pair(module.kernel_size)
        stride = _as_pair(module.stride if module.stride is not None else module.kernel_size)
        dilation = _as_pair(getattr(module, "dilation", 1))
        return kernel, stride, dilation
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        # Windows of ceil(in / out) at a stride of floor(in / out): exact when out divides in.
        kernel = tuple(math.ceil(i / o) for i, o in zip(in_hw, out_hw))
        stride = tuple(max(i // o, 1) for i, o in zip(in_hw, out_hw))
        return kernel, stride, (1, 1)
    return None


def _flops(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates counted as 2 FLOPs; pooling as one per window element."""
    if isinstance(module, nn.Conv2d):
        kh, kw = _as_pair(module.kernel_size)
        per_output = 2 * (module.in_channels // module.groups) * kh * kw
        return output.numel() * per_output
    if isinstance(module, nn.Linear):
        return 2 * output.numel() * module.in_features
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        kh, kw = _as_pair(module.kernel_size)
        return output.numel() * kh * kw
    return 0


@dataclass
class Summary:
    """What ``summary()`` found: ``rows`` (one dict per leaf layer), totals, and a table.

    Each row has the keys name, type, output_shape, params, flops, receptive_field (the
    (height, width) of the input region one output element sees) and jump (the distance in
    input pixels between adjacent outputs). FLOPs count a multiply-accumulate as 2.
    """

    rows: list[dict] = field(default_factory=list)
    input_size: tuple[int, ...] = ()

    @property
    def total_params(self) -> int:
        return sum(row["params"] for row in self.rows)

    @property
    def total_flops(self) -> int:
        return sum(row["flops"] for row in self.rows)

    def __str__(self) -> str:
        header = ("layer", "type", "output shape", "params", "FLOPs", "RF", "jump")
        lines = [header]
        for row in self.rows:
            lines.append((row["name"], row["type"], str(tuple(row["output_shape"])),
                          f"{row['params']:,}", f"{row['flops']:,}",
                          "x".join(map(str, row["receptive_field"])),
                          "x".join(map(str, row["jump"]))))
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w)
                          for i, (cell, w) in enumerate(zip(line, widths))) for line in lines]
        text.insert(1, "-" * len(text[0]))
        text.append("-" * len(text[0]))
        text.append(f"input {tuple(self.input_size)}: {self.total_params:,} parameters, "
                    f"{self.total_flops:,} FLOPs ({self.total_flops / 2e9:.2f} G multiply-accumulates)")
        return "\n".join(text)

    __repr__ = __str__


def summary(model: nn.Module, input_size: Sequence[int], device: str | torch.device | None = None,
            dtype: torch.dtype = torch.float32) -> Summary:
    """Runs ``model`` once on zeros of ``input_size`` ((C, H, W) or (N, C, H, W)) and reports
    each leaf layer's output shape, parameters, FLOPs and receptive field.

    The receptive field follows the recursion r += (k_eff - 1) * jump, jump *= stride, with
    k_eff = dilation * (k - 1) + 1, per spatial dimension, in execution order.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"summary: argument 'model' must be an nn.Module, got "
                        f"{type(model).__name__}")
    if not isinstance(input_size, Sequence) or not all(is_int(s) for s in input_size):
        raise TypeError(f"summary: argument 'input_size' must be a sequence of ints (C, H, W) "
                        f"or (N, C, H, W), got {input_size!r}")
    input_size = tuple(input_size)
    if len(input_size) == 3:
        input_size = (1, *input_size)
    if len(input_size) != 4 or min(input_size) < 1:
        raise ValueError(f"summary: argument 'input_size' must be (C, H, W) or (N, C, H, W) "
                         f"with positive entries, got {input_size}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"summary: argument 'dtype' must be a floating point torch.dtype, got "
                        f"{dtype!r}")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"summary: argument 'device' is not a device: {device!r}") from error
    check_allocation("summary", "argument 'input_size'", input_size, dtype, device)

    result = Summary(input_size=input_size)
    state = {"rf": (1, 1), "jump": (1, 1), "hw": input_size[2:], "current": None}
    names = {module: name for name, module in model.named_modules()}

    def pre_hook(module, inputs):
        state["current"] = (module, tuple(inputs[0].shape) if inputs else ())

    def hook(module, inputs, output):
        if not isinstance(output, torch.Tensor):
            output = output[0]  # (values, indices) of pooling with return_indices
        in_hw = tuple(inputs[0].shape[-2:]) if inputs and inputs[0].dim() >= 3 else state["hw"]
        window = _window_of(module, in_hw, tuple(output.shape[-2:]))
        if window is not None:
            kernel, stride, dilation = window
            state["rf"] = tuple(r + (d * (k - 1)) * j for r, k, d, j in
                                zip(state["rf"], kernel, dilation, state["jump"]))
            state["jump"] = tuple(j * s for j, s in zip(state["jump"], stride))
        if output.dim() >= 3:
            state["hw"] = tuple(output.shape[-2:])
        result.rows.append({
            "name": names.get(module, type(module).__name__),
            "type": type(module).__name__,
            "output_shape": tuple(output.shape),
            "params": sum(p.numel() for p in module.parameters(recurse=False)),
            "flops": _flops(module, output),
            "receptive_field": state["rf"],
            "jump": state["jump"],
        })

    handles = []
    for module in model.modules():
        if next(module.children(), None) is None:  # leaf layers
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_size, device=device, dtype=dtype))
    except Exception as error:
        if state["current"] is None:
            raise
        module, shape = state["current"]
        raise RuntimeError(f"summary: layer '{names.get(module, '?')}' "
                           f"({type(module).__name__}) failed on an input of shape {shape}: "
                           f"{error}") from error
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return result
