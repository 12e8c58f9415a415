"""Argument checks shared by the Python layers (modules, models, filters, analysis): plain
ints that are not bools, and allocations refused before they are tried when no machine could
hold them (the operators apply the same rule in csrc/common/result_size.cpp)."""

from __future__ import annotations

import math
import os

import torch

INT64_MAX = 2**63 - 1


def is_int(value) -> bool:
    """An int (or SymInt), and not a bool."""
    return isinstance(value, (int, torch.SymInt)) and not isinstance(value, bool)


def check_int(op: str, name: str, value, minimum: int | None = None) -> int:
    """``value`` as an int >= ``minimum`` that fits int64; anything else is refused."""
    if not is_int(value):
        raise TypeError(f"{op}: argument '{name}' must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{op}: argument '{name}' must be >= {minimum}, got {value}")
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise ValueError(f"{op}: argument '{name}' must fit in int64, got {value}")
    return value


def check_bool(op: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{op}: argument '{name}' must be a bool, got {value!r}")
    return value


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_allocation(op: str, source: str, shape, dtype: torch.dtype | None = None,
                     device=None) -> None:
    """Refuses a tensor of ``shape`` whose size in bytes does not fit int64 or, on the CPU,
    is larger than the machine's memory; ``source`` names the arguments it comes from."""
    dtype = dtype or torch.get_default_dtype()
    nbytes = math.prod(int(s) for s in shape) * torch.empty((), dtype=dtype).element_size()
    if nbytes > INT64_MAX:
        raise ValueError(f"{op}: {source} would make a tensor of shape {tuple(shape)}, more "
                         f"elements than int64 can count")
    device = torch.device(device) if device is not None else torch.device("cpu")
    memory = _physical_memory()
    if device.type == "cpu" and memory is not None and nbytes > memory:
        raise ValueError(f"{op}: {source} would make a tensor of shape {tuple(shape)} "
                         f"({nbytes} bytes), more than this machine's memory ({memory} bytes)")
