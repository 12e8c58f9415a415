"""Autocast rules for the cnnops operators, the ones native PyTorch applies to its twins.

CUDA (``torch.autocast('cuda')``): conv2d, conv2d_bias_relu and depthwise_separable_conv2d
are on autocast's lower-precision list, as ``aten::conv2d`` is: their floating-point
operands (float64 excepted) are cast to the autocast dtype (float16 by default, or bfloat16)
and the kernel runs in it. The pooling operators, like native ``max_pool2d`` and
``avg_pool2d``, are on no list: they run in the dtype of their input.

CPU (``torch.autocast('cpu')``): native conv2d computes in bfloat16 there, but the cnnops CPU
kernels have float32 and float64 only. So on the CPU every cnnops forward operator is on
autocast's *float32* list instead: float16 and bfloat16 operands are cast up to float32 and
the result is float32 (float32 operands run unchanged). A model whose cnnops layers follow a
native layer that autocast ran in bfloat16 therefore keeps working, in float32.

Each rule is a kernel on the operator's Autocast<device> dispatch key (and the same function
on the Python dispatcher, which torch.compile traces through), as
``torch.library.register_autocast`` registers one; that helper cannot be used itself because
it casts to one dtype fixed at registration, not to the dtype of the enclosing autocast.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# The operators autocast casts, per device. The backward operators are not here: autograd
# gives them operands that already have the forward's dtype.
_CONV_OPS = ("conv2d", "conv2d_bias_relu", "depthwise_separable_conv2d")
_POOL_OPS = ("max_pool2d_with_indices", "max_pool2d", "adaptive_max_pool2d", "avg_pool2d",
             "adaptive_avg_pool2d")

_LOWER_PRECISION = (torch.float16, torch.bfloat16)


def _autocast_dtype(device_type: str) -> torch.dtype:
    # torch.get_autocast_dtype(device) came with torch 2.4's generic autocast API; the guard
    # costs nothing and keeps an older torch working.
    if hasattr(torch, "get_autocast_dtype"):
        return torch.get_autocast_dtype(device_type)
    return torch.get_autocast_gpu_dtype()


def _cast_args(args, device_type: str, cast: Callable[[torch.dtype], torch.dtype | None]):
    """args with every floating tensor on `device_type` cast to cast(its dtype), if not None."""
    out = []
    for arg in args:
        if isinstance(arg, torch.Tensor) and arg.is_floating_point() \
                and arg.device.type == device_type:
            dtype = cast(arg.dtype)
            if dtype is not None and dtype != arg.dtype:
                arg = arg.to(dtype)
        out.append(arg)
    return out


def cuda_cast(dtype: torch.dtype) -> torch.dtype | None:
    """The lower-precision rule: float64 stays, everything else goes to the autocast dtype."""
    return None if dtype == torch.float64 else _autocast_dtype("cuda")


def cpu_cast(dtype: torch.dtype) -> torch.dtype | None:
    """The float32 rule: float16 and bfloat16, which the CPU kernels lack, go to float32."""
    return torch.float32 if dtype in _LOWER_PRECISION else None


def _register(lib: torch.library.Library, name: str, device_type: str,
              cast: Callable[[torch.dtype], torch.dtype | None]) -> None:
    op = getattr(torch.ops.cnnops, name).default
    key_name = "Autocast" + device_type.upper()
    dispatch_key = getattr(torch._C.DispatchKey, key_name)

    def rule(*args, **kwargs):
        # Below the Autocast key, so that the call reaches the backend kernel (and, with it
        # excluded, any operator the kernel calls runs without autocast, as native ones do).
        with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(dispatch_key)):
            cast_kwargs = dict(zip(kwargs, _cast_args(kwargs.values(), device_type, cast)))
            return op(*_cast_args(args, device_type, cast), **cast_kwargs)

    if op.has_kernel_for_dispatch_key(dispatch_key):  # a reload of this module
        op.py_kernels.pop(dispatch_key, None)
    op.py_impl(dispatch_key)(rule)
    lib.impl(name, lambda _keyset, *args, **kwargs: rule(*args, **kwargs), key_name, with_keyset=True)


_LIB = torch.library.Library("cnnops", "IMPL")  # kept alive: the registrations live with it

for _name in _CONV_OPS:
    _register(_LIB, _name, "cuda", cuda_cast)
for _name in _CONV_OPS + _POOL_OPS:
    _register(_LIB, _name, "cpu", cpu_cast)
