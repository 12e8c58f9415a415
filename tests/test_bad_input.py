"""Bad input, everywhere: every public function, module constructor and raw operator of
cnnops, fed the inputs it must refuse. Each case must raise RuntimeError, ValueError or
TypeError with a message that names the offending argument, and nothing else: no crash, no
hang, no answer.

The table runs in child processes (one per chunk of cases, a Python with torch costs ~2 s to
start), so that a segfault or an abort fails its case instead of the pytest run. A child
reports, one JSON line per case, the exception's classes and message, the time it took and
how much its peak RSS grew; when a child dies, the case it was running fails with the exit
signal and the child's stderr, and a fresh child carries on after it. Huge sizes (2**40
elements, or arithmetic that would pass 2**63) must be refused before anything is
allocated: their cases must leave the child's peak RSS where it was. The child also caps
its address space a few GiB above what it holds after import, so that a case that does try
to allocate a huge tensor fails (without naming the argument) rather than eat the machine.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable

import pytest

ERRORS = ("RuntimeError", "ValueError", "TypeError")
CHILD_TIMEOUT_S = 120  # a whole chunk; a hang in one case shows up as that case timing out
RSS_GROWTH_LIMIT_KB = 64 * 1024  # a refused huge case may not raise the peak RSS by more
HUGE = 2**40


@dataclass(frozen=True)
class Case:
    chunk: str
    id: str
    match: str  # a regex the message must match (case-insensitive): the argument's name
    call: Callable[[], object]
    huge: bool = False  # also check that peak RSS did not grow


CASES: list[Case] = []


# Which child runs the cases of each group (fewer children: less time starting Pythons).
CHILD_OF = {"functional_conv2d": "functional", "functional_conv2d_bias_relu": "functional",
            "functional_pool": "functional", "functional_depthwise_separable_conv2d": "functional",
            "nn": "python", "python": "python", "ops": "ops", "huge": "ops"}


def case(group: str, id: str, match: str, call: Callable[[], object], huge: bool = False) -> None:
    CASES.append(Case(CHILD_OF[group], f"{group}-{id}", match, call, huge))


# ---------------------------------------------------------------------------------------
# The table: every operand is small (a huge size comes from an expanded one-element tensor),
# so that building it costs the parent, which needs only the ids, next to nothing.


def build_table() -> None:  # noqa: C901 (a table, long on purpose)
    import torch
    from torch import nn

    import cnnops
    from cnnops import analysis, filters, models
    from cnnops import nn as cnn

    F = cnnops.functional
    ops = torch.ops.cnnops
    nan, inf = float("nan"), float("inf")

    X = torch.randn(1, 4, 6, 6)
    W = torch.randn(2, 4, 3, 3)
    B = torch.randn(2)
    XP = torch.randn(1, 2, 6, 6)  # pooling input
    DW = torch.randn(4, 1, 3, 3)  # depthwise_weight of X
    PW = torch.randn(5, 4, 1, 1)
    DB, PB = torch.randn(4), torch.randn(5)
    meta = lambda t: t.to("meta")  # noqa: E731  the one second device of a CPU machine
    # A tensor of any size that holds one element: lets a case ask for a huge result
    # without the case itself allocating anything.
    big = lambda *shape: torch.zeros(1).expand(*shape)  # noqa: E731

    NO_PAD, ONES = [0, 0, 0, 0], [1, 1]

    # --- conv2d and conv2d_bias_relu ------------------------------------------------
    for name in ("conv2d", "conv2d_bias_relu"):
        fn = getattr(F, name)
        c = f"functional_{name}"

        def conv(*args, fn=fn, **kw):
            return lambda: fn(*args, **kw)

        case(c, "input_not_tensor", "input", conv([[1.0]], W))
        case(c, "weight_not_tensor", "weight", conv(X, [[1.0]]))
        case(c, "bias_not_tensor", "bias", conv(X, W, [1.0, 2.0]))
        case(c, "input_0d", "input", conv(torch.tensor(1.0), W))
        case(c, "input_1d", "input", conv(torch.randn(6), W))
        case(c, "input_2d", "input", conv(torch.randn(6, 6), W))
        case(c, "input_5d", "input", conv(X[None], W))
        case(c, "weight_2d", "weight", conv(X, torch.randn(2, 4)))
        case(c, "weight_3d", "weight", conv(X, W[0]))
        case(c, "weight_5d", "weight", conv(X, W[None]))
        case(c, "weight_3d_padding_same", "weight", conv(X, W[0], padding="same"))
        case(c, "weight_empty_kernel", "weight", conv(X, torch.randn(2, 4, 0, 3)))
        case(c, "input_empty_height", "input", conv(torch.randn(1, 4, 0, 6), W))
        case(c, "input_empty_width_unbatched", "input", conv(torch.randn(4, 6, 0), W))
        case(c, "channels_do_not_chain", "channels", conv(X, torch.randn(2, 3, 3, 3)))
        case(c, "channels_do_not_chain_groups", "channels", conv(X, W, groups=2))
        case(c, "groups_0", "groups", conv(X, W, groups=0))
        case(c, "groups_negative", "groups", conv(X, W, groups=-1))
        case(c, "groups_not_dividing_in", "groups", conv(X, torch.randn(3, 1, 3, 3), groups=3))
        case(c, "groups_not_dividing_out", "groups", conv(X, torch.randn(3, 2, 3, 3), groups=2))
        case(c, "groups_float", "groups", conv(X, W, groups=1.0))
        case(c, "groups_bool", "groups", conv(X, W, groups=True))
        case(c, "groups_nan", "groups", conv(X, W, groups=nan))
        case(c, "groups_str", "groups", conv(X, W, groups="1"))
        case(c, "groups_huge", "groups", conv(X, W, groups=HUGE))
        case(c, "groups_over_int64", "groups", conv(X, W, groups=2**64))
        for arg in ("stride", "dilation"):
            case(c, f"{arg}_0", arg, conv(X, W, **{arg: 0}))
            case(c, f"{arg}_negative", arg, conv(X, W, **{arg: -1}))
            case(c, f"{arg}_pair_with_0", arg, conv(X, W, **{arg: (1, 0)}))
            case(c, f"{arg}_3_values", arg, conv(X, W, **{arg: (1, 1, 1)}))
            case(c, f"{arg}_empty", arg, conv(X, W, **{arg: ()}))
            case(c, f"{arg}_float", arg, conv(X, W, **{arg: 1.5}))
            case(c, f"{arg}_bool", arg, conv(X, W, **{arg: True}))
            case(c, f"{arg}_nan", arg, conv(X, W, **{arg: nan}))
            case(c, f"{arg}_inf", arg, conv(X, W, **{arg: inf}))
            case(c, f"{arg}_str", arg, conv(X, W, **{arg: "1"}))
            case(c, f"{arg}_none", arg, conv(X, W, **{arg: None}))
            case(c, f"{arg}_over_int64", arg, conv(X, W, **{arg: 2**64}))
            # pairs that functional._pair's fast path must hand to the general checks
            case(c, f"{arg}_pair_over_int64", arg, conv(X, W, **{arg: (1, 2**64)}))
            case(c, f"{arg}_bool_pair", arg, conv(X, W, **{arg: (True, 1)}))
            case(c, f"{arg}_tensor_pair_float", arg, conv(X, W, **{arg: (1.0, 1.0)}))
        case(c, "padding_negative", "padding", conv(X, W, padding=-1))
        case(c, "padding_pair_with_negative", "padding", conv(X, W, padding=(0, -2)))
        case(c, "padding_3_values", "padding", conv(X, W, padding=(1, 1, 1)))
        case(c, "padding_4_values", "padding", conv(X, W, padding=(1, 1, 1, 1)))
        case(c, "padding_float", "padding", conv(X, W, padding=1.5))
        case(c, "padding_bool", "padding", conv(X, W, padding=False))
        case(c, "padding_nan", "padding", conv(X, W, padding=nan))
        case(c, "padding_unknown_string", "padding", conv(X, W, padding="foo"))
        case(c, "padding_upper_case_same", "padding", conv(X, W, padding="SAME"))
        case(c, "padding_none", "padding", conv(X, W, padding=None))
        case(c, "padding_over_int64", "padding", conv(X, W, padding=2**64))
        case(c, "padding_same_strided", "padding", conv(X, W, padding="same", stride=2))
        case(c, "kernel_taller_than_input", "kernel", conv(X, torch.randn(2, 4, 7, 3)))
        case(c, "dilated_kernel_too_large", "kernel", conv(X, W, dilation=3))
        case(c, "bias_wrong_length", "bias", conv(X, W, torch.randn(3)))
        case(c, "bias_2d", "bias", conv(X, W, torch.randn(2, 1)))
        case(c, "bias_0d", "bias", conv(X, W, torch.tensor(1.0)))
        case(c, "bias_int", "bias", conv(X, W, torch.zeros(2, dtype=torch.int64)))
        case(c, "bias_double", "bias", conv(X, W, B.double()))
        for dtype in (torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64,
                      torch.float16, torch.bfloat16):
            t = str(dtype).split(".")[1]
            case(c, f"all_{t}", "input", conv(X.to(dtype), W.to(dtype)))
        case(c, "input_double_weight_float", "weight", conv(X.double(), W))
        case(c, "input_float_weight_double", "weight", conv(X, W.double()))
        case(c, "input_meta_weight_cpu", "weight", conv(meta(X), W))
        case(c, "input_cpu_weight_meta", "weight", conv(X, meta(W)))
        case(c, "bias_meta", "bias", conv(X, W, meta(B)))
        case(c, "input_meta_bias_cpu", "bias|weight", conv(meta(X), meta(W), B))

    # --- pooling -------------------------------------------------------------------
    c = "functional_pool"
    pools = {"max": F.max_pool2d, "avg": F.avg_pool2d}

    def call(fn, *args, **kw):
        return lambda: fn(*args, **kw)

    for p, fn in pools.items():
        case(c, f"{p}_input_not_tensor", "input", call(fn, [[1.0]], 2))
        case(c, f"{p}_input_0d", "input", call(fn, torch.tensor(1.0), 1))
        case(c, f"{p}_input_2d", "input", call(fn, torch.randn(6, 6), 2))
        case(c, f"{p}_input_5d", "input", call(fn, XP[None], 2))
        case(c, f"{p}_input_zero_channels", "input", call(fn, torch.randn(1, 0, 6, 6), 2))
        case(c, f"{p}_input_zero_width", "input", call(fn, torch.randn(1, 2, 6, 0), 1))
        for dtype in (torch.int64, torch.uint8, torch.bool, torch.complex64, torch.float16,
                      torch.bfloat16):
            t = str(dtype).split(".")[1]
            case(c, f"{p}_input_{t}", "input", call(fn, XP.to(dtype), 2))
        for arg in ("kernel_size", "stride", "padding"):
            base = {"kernel_size": 2}
            for bad_name, value in (("3_values", (1, 1, 1)), ("float", 1.5), ("bool", True),
                                    ("nan", nan), ("inf", inf), ("str", "2"),
                                    ("float_pair", (1.0, 1.0)), ("over_int64", 2**64)):
                case(c, f"{p}_{arg}_{bad_name}", arg, call(fn, XP, **{**base, arg: value}))
            case(c, f"{p}_{arg}_negative", arg, call(fn, XP, **{**base, arg: -1}))
        case(c, f"{p}_kernel_size_0", "kernel_size", call(fn, XP, 0))
        case(c, f"{p}_kernel_size_empty", "kernel_size", call(fn, XP, ()))
        case(c, f"{p}_kernel_size_none", "kernel_size", call(fn, XP, None))
        case(c, f"{p}_stride_0", "stride", call(fn, XP, 2, 0))
        case(c, f"{p}_stride_pair_with_0", "stride", call(fn, XP, 2, (2, 0)))
        case(c, f"{p}_padding_over_half", "padding", call(fn, XP, 3, padding=2))
        case(c, f"{p}_padding_over_half_w", "padding", call(fn, XP, (4, 2), padding=(2, 2)))
        case(c, f"{p}_window_too_large", "kernel_size", call(fn, XP, 7))
        case(c, f"{p}_window_too_large_padded", "kernel_size", call(fn, XP, (2, 9), padding=1))
        case(c, f"{p}_ceil_mode_str", "ceil_mode", call(fn, XP, 2, ceil_mode="no"))
    case(c, "max_dilation_0", "dilation", call(F.max_pool2d, XP, 2, dilation=0))
    case(c, "max_dilation_negative", "dilation", call(F.max_pool2d, XP, 2, dilation=(1, -1)))
    case(c, "max_dilation_3_values", "dilation", call(F.max_pool2d, XP, 2, dilation=(1, 1, 1)))
    case(c, "max_dilation_float", "dilation", call(F.max_pool2d, XP, 2, dilation=2.0))
    case(c, "max_dilated_window_too_large", "kernel_size",
         call(F.max_pool2d, XP, 3, dilation=3))
    case(c, "max_padding_over_half_dilated", "padding",
         call(F.max_pool2d, XP, 2, padding=2, dilation=3))
    case(c, "max_return_indices_str", "return_indices",
         call(F.max_pool2d, XP, 2, return_indices="yes"))
    case(c, "avg_divisor_override_0", "divisor_override",
         call(F.avg_pool2d, XP, 2, divisor_override=0))
    case(c, "avg_divisor_override_float", "divisor_override",
         call(F.avg_pool2d, XP, 2, divisor_override=1.5))
    case(c, "avg_divisor_override_bool", "divisor_override",
         call(F.avg_pool2d, XP, 2, divisor_override=True))
    case(c, "avg_divisor_override_over_int64", "divisor_override",
         call(F.avg_pool2d, XP, 2, divisor_override=2**64))
    case(c, "avg_count_include_pad_str", "count_include_pad",
         call(F.avg_pool2d, XP, 2, count_include_pad="no"))
    adaptive = {"adaptive_avg": F.adaptive_avg_pool2d, "adaptive_max": F.adaptive_max_pool2d}
    for p, fn in adaptive.items():
        case(c, f"{p}_input_not_tensor", "input", call(fn, [[1.0]], 2))
        case(c, f"{p}_input_2d", "input", call(fn, torch.randn(6, 6), 2))
        case(c, f"{p}_input_5d", "input", call(fn, XP[None], 2))
        case(c, f"{p}_input_zero_height", "input", call(fn, torch.randn(1, 2, 0, 6), 1))
        case(c, f"{p}_input_int64", "input", call(fn, XP.long(), 2))
        case(c, f"{p}_input_bool", "input", call(fn, XP.bool(), 2))
        case(c, f"{p}_input_complex", "input", call(fn, XP.to(torch.complex64), 2))
        case(c, f"{p}_input_float16", "input", call(fn, XP.half(), 2))
        for bad_name, value in (("negative", -1), ("pair_with_negative", (2, -1)),
                                ("3_values", (1, 2, 3)), ("empty", ()), ("float", 2.5),
                                ("float_pair", (2.5, 2)), ("nan", nan), ("inf", inf),
                                ("str", "2"), ("bool", True), ("bool_pair", (True, 2)),
                                ("over_int64", 2**64), ("tensor", torch.tensor([2, 2]))):
            case(c, f"{p}_output_size_{bad_name}", "output_size", call(fn, XP, value))
    case(c, "adaptive_max_return_indices_str", "return_indices",
         call(F.adaptive_max_pool2d, XP, 2, return_indices="yes"))

    # --- depthwise_separable_conv2d ---------------------------------------------------
    c = "functional_depthwise_separable_conv2d"
    sep = F.depthwise_separable_conv2d

    def s(*args, **kw):
        return lambda: sep(*args, **kw)

    case(c, "input_not_tensor", "input", s([[1.0]], DW, PW))
    case(c, "depthwise_weight_not_tensor", "depthwise_weight", s(X, [[1.0]], PW))
    case(c, "pointwise_weight_not_tensor", "pointwise_weight", s(X, DW, [[1.0]]))
    case(c, "depthwise_bias_not_tensor", "depthwise_bias", s(X, DW, PW, [1.0] * 4))
    case(c, "pointwise_bias_not_tensor", "pointwise_bias", s(X, DW, PW, None, [1.0] * 5))
    case(c, "input_0d", "input", s(torch.tensor(1.0), DW, PW))
    case(c, "input_2d", "input", s(torch.randn(6, 6), DW, PW))
    case(c, "input_5d", "input", s(X[None], DW, PW))
    case(c, "input_zero_channels", "input|depthwise_weight", s(torch.randn(1, 0, 6, 6), DW, PW))
    case(c, "input_empty_height", "input|kernel", s(torch.randn(1, 4, 0, 6), DW, PW))
    case(c, "depthwise_weight_3d", "depthwise_weight", s(X, DW[0], PW))
    case(c, "depthwise_weight_3d_same", "depthwise_weight", s(X, DW[0], PW, padding="same"))
    case(c, "depthwise_weight_two_per_group", "depthwise_weight",
         s(X, torch.randn(4, 2, 3, 3), PW))
    case(c, "depthwise_weight_not_multiple", "depthwise_weight",
         s(X, torch.randn(6, 1, 3, 3), torch.randn(5, 6, 1, 1)))
    case(c, "depthwise_weight_empty_kernel", "depthwise_weight",
         s(X, torch.randn(4, 1, 0, 3), PW))
    case(c, "pointwise_weight_3d", "pointwise_weight", s(X, DW, PW[0]))
    case(c, "pointwise_weight_not_1x1", "pointwise_weight", s(X, DW, torch.randn(5, 4, 3, 3)))
    case(c, "channels_do_not_chain", "pointwise_weight", s(X, DW, torch.randn(5, 3, 1, 1)))
    case(c, "depthwise_bias_wrong_length", "depthwise_bias", s(X, DW, PW, torch.randn(3)))
    case(c, "pointwise_bias_wrong_length", "pointwise_bias", s(X, DW, PW, None, torch.randn(4)))
    case(c, "pointwise_bias_2d", "pointwise_bias", s(X, DW, PW, None, PB[None]))
    case(c, "all_int64", "input", s(X.long(), DW.long(), PW.long()))
    case(c, "all_bool", "input", s(X.bool(), DW.bool(), PW.bool()))
    case(c, "all_complex", "input", s(X.to(torch.complex64), DW.to(torch.complex64),
                                      PW.to(torch.complex64)))
    case(c, "all_float16", "input", s(X.half(), DW.half(), PW.half()))
    case(c, "depthwise_weight_double", "depthwise_weight", s(X, DW.double(), PW))
    case(c, "pointwise_weight_double", "pointwise_weight", s(X, DW, PW.double()))
    case(c, "depthwise_bias_double", "depthwise_bias", s(X, DW, PW, DB.double()))
    case(c, "pointwise_bias_int", "pointwise_bias", s(X, DW, PW, None, PB.long()))
    case(c, "depthwise_weight_meta", "depthwise_weight", s(X, meta(DW), PW))
    case(c, "pointwise_weight_meta", "pointwise_weight", s(X, DW, meta(PW)))
    case(c, "depthwise_bias_meta", "depthwise_bias", s(X, DW, PW, meta(DB)))
    case(c, "pointwise_bias_meta", "pointwise_bias", s(X, DW, PW, None, meta(PB)))
    case(c, "input_meta", "depthwise_weight", s(meta(X), DW, PW))
    for arg in ("stride", "dilation"):
        case(c, f"{arg}_0", arg, s(X, DW, PW, **{arg: 0}))
        case(c, f"{arg}_negative", arg, s(X, DW, PW, **{arg: (1, -1)}))
        case(c, f"{arg}_3_values", arg, s(X, DW, PW, **{arg: (1, 1, 1)}))
        case(c, f"{arg}_float", arg, s(X, DW, PW, **{arg: 1.5}))
        case(c, f"{arg}_nan", arg, s(X, DW, PW, **{arg: nan}))
        case(c, f"{arg}_bool", arg, s(X, DW, PW, **{arg: True}))
    case(c, "padding_negative", "padding", s(X, DW, PW, padding=-1))
    case(c, "padding_3_values", "padding", s(X, DW, PW, padding=(1, 1, 1)))
    case(c, "padding_float", "padding", s(X, DW, PW, padding=0.5))
    case(c, "padding_unknown_string", "padding", s(X, DW, PW, padding="foo"))
    case(c, "padding_same_strided", "padding", s(X, DW, PW, padding="same", stride=2))
    case(c, "kernel_too_large", "kernel", s(X, DW, PW, dilation=3))

    # --- modules ----------------------------------------------------------------------
    c = "nn"

    def make(cls, *args, **kw):
        return lambda: cls(*args, **kw)

    for arg, pos in (("in_channels", 0), ("out_channels", 1)):
        for cls in (cnn.Conv2d, cnn.DepthwiseSeparableConv2d):
            n = cls.__name__
            for bad_name, value in (("negative", -1), ("float", 1.5), ("bool", True),
                                    ("nan", nan), ("str", "4"), ("none", None)):
                args = [4, 4, 3]
                args[pos] = value
                case(c, f"{n}_{arg}_{bad_name}", arg, make(cls, *args))
            args = [4, 4, 3]
            args[pos] = HUGE
            case(c, f"{n}_{arg}_huge", arg, make(cls, *args), huge=True)
    case(c, "DepthwiseSeparableConv2d_in_channels_0", "in_channels",
         make(cnn.DepthwiseSeparableConv2d, 0, 4, 3))
    case(c, "DepthwiseSeparableConv2d_out_channels_0", "out_channels",
         make(cnn.DepthwiseSeparableConv2d, 4, 0, 3))
    for cls in (cnn.Conv2d, cnn.DepthwiseSeparableConv2d):
        n = cls.__name__
        for arg in ("kernel_size", "stride", "dilation", "padding"):
            low = -1 if arg == "padding" else 0
            for bad_name, value in (("low", low), ("pair_with_low", (1, low)),
                                    ("3_values", (1, 1, 1)), ("empty", ()), ("float", 1.5),
                                    ("nan", nan), ("bool", True), ("str", "x"),
                                    ("none", None)):
                kw = {"kernel_size": 3, arg: value}
                case(c, f"{n}_{arg}_{bad_name}", arg, make(cls, 4, 4, **kw))
        case(c, f"{n}_kernel_size_huge", "kernel_size", make(cls, 4, 4, HUGE), huge=True)
        case(c, f"{n}_kernel_size_huge_pair", "kernel_size", make(cls, 4, 4, (2**20, 2**20)),
             huge=True)
        case(c, f"{n}_padding_unknown_string", "padding", make(cls, 4, 4, 3, padding="foo"))
        case(c, f"{n}_padding_same_strided", "padding",
             make(cls, 4, 4, 3, stride=2, padding="same"))
        case(c, f"{n}_padding_mode_unknown", "padding_mode",
             make(cls, 4, 4, 3, padding_mode="foo"))
        case(c, f"{n}_padding_mode_int", "padding_mode", make(cls, 4, 4, 3, padding_mode=0))
        case(c, f"{n}_dtype_int64", "dtype", make(cls, 4, 4, 3, dtype=torch.int64))
        case(c, f"{n}_dtype_complex", "dtype", make(cls, 4, 4, 3, dtype=torch.complex64))
    for bad_name, value in (("0", 0), ("negative", -2), ("not_dividing", 3), ("float", 2.0),
                            ("bool", True), ("nan", nan), ("str", "2"), ("none", None)):
        case(c, f"Conv2d_groups_{bad_name}", "groups", make(cnn.Conv2d, 4, 4, 3, groups=value))
    case(c, "Conv2d_groups_not_dividing_out", "groups", make(cnn.Conv2d, 4, 6, 3, groups=4))
    case(c, "Conv2d_groups_float_dividing", "groups", make(cnn.Conv2d, 3, 3, 3, groups=1.5))
    case(c, "Conv2d_forward_channels", "channels", lambda: cnn.Conv2d(4, 2, 3)(XP))
    case(c, "Conv2d_forward_int_input", "input", lambda: cnn.Conv2d(4, 2, 3)(X.long()))
    case(c, "Conv2d_forward_meta_input", "weight|input", lambda: cnn.Conv2d(4, 2, 3)(meta(X)))
    case(c, "DepthwiseSeparableConv2d_forward_channels", "depthwise_weight",
         lambda: cnn.DepthwiseSeparableConv2d(2, 3, 3)(X))

    for cls in (cnn.MaxPool2d, cnn.AvgPool2d):
        n = cls.__name__
        for arg in ("kernel_size", "stride", "padding"):
            low = -1 if arg == "padding" else 0
            for bad_name, value in (("low", low), ("pair_with_low", (2, low)),
                                    ("3_values", (1, 1, 1)), ("float", 1.5), ("nan", nan),
                                    ("bool", True), ("str", "x")):
                kw = {"kernel_size": 2, arg: value}
                case(c, f"{n}_{arg}_{bad_name}", arg, make(cls, **kw))
        case(c, f"{n}_kernel_size_empty", "kernel_size", make(cls, ()))
        case(c, f"{n}_kernel_size_none", "kernel_size", make(cls, None))
        case(c, f"{n}_padding_over_half", "padding", make(cls, 3, padding=2))
        case(c, f"{n}_padding_over_half_pair", "padding", make(cls, (2, 4), padding=(2, 1)))
        case(c, f"{n}_forward_window_too_large", "kernel_size", lambda cls=cls: cls(7)(XP))
        case(c, f"{n}_forward_int_input", "input", lambda cls=cls: cls(2)(XP.long()))
    for bad_name, value in (("0", 0), ("negative", -1), ("pair_with_0", (1, 0)),
                            ("3_values", (1, 1, 1)), ("float", 1.5), ("nan", nan),
                            ("bool", True)):
        case(c, f"MaxPool2d_dilation_{bad_name}", "dilation",
             make(cnn.MaxPool2d, 2, dilation=value))
    case(c, "MaxPool2d_padding_over_half_dilated", "padding",
         make(cnn.MaxPool2d, 2, padding=2, dilation=3))
    for bad_name, value in (("0", 0), ("float", 1.5), ("bool", True), ("str", "2"),
                            ("nan", nan)):
        case(c, f"AvgPool2d_divisor_override_{bad_name}", "divisor_override",
             make(cnn.AvgPool2d, 2, divisor_override=value))
    for cls in (cnn.AdaptiveAvgPool2d, cnn.AdaptiveMaxPool2d):
        n = cls.__name__
        for bad_name, value in (("negative", -1), ("pair_with_negative", (2, -1)),
                                ("3_values", (1, 2, 3)), ("empty", ()), ("float", 2.5),
                                ("nan", nan), ("str", "2"), ("bool", True),
                                ("bool_pair", (True, 1))):
            case(c, f"{n}_output_size_{bad_name}", "output_size", make(cls, value))
        case(c, f"{n}_forward_int_input", "input", lambda cls=cls: cls(2)(XP.long()))

    # --- analysis, convert, fuse, filters, models ------------------------------------
    c = "python"
    cos, pos_ = analysis.conv_output_size, analysis.pool_output_size
    for fn_name, fn in (("conv_output_size", cos), ("pool_output_size", pos_)):
        for arg in ("size", "kernel", "stride", "padding", "dilation"):
            low = -1 if arg == "padding" else 0
            base = {"size": 8, "kernel": 3}
            for bad_name, value in (("low", low), ("pair_with_low", (3, low)),
                                    ("3_values", (1, 1, 1)), ("empty", ()), ("float", 1.5),
                                    ("nan", nan), ("inf", inf), ("bool", True), ("str", "3"),
                                    ("none", None) if arg in ("size", "kernel") else
                                    ("float_pair", (1.0, 2.0))):
                case(c, f"{fn_name}_{arg}_{bad_name}", arg,
                     lambda fn=fn, kw={**base, arg: value}: fn(**kw))
        case(c, f"{fn_name}_window_too_large", "kernel", lambda fn=fn: fn(4, 7))
        case(c, f"{fn_name}_ceil_mode_str", "ceil_mode", lambda fn=fn: fn(8, 3, ceil_mode="no"))
    case(c, "pool_output_size_padding_over_half", "padding", lambda: pos_(8, 3, padding=2))
    tiny = nn.Sequential(cnn.Conv2d(1, 2, 3), nn.ReLU())
    summary = analysis.summary
    case(c, "summary_model_not_module", "model", lambda: summary("model", (1, 8, 8)))
    case(c, "summary_input_size_int", "input_size", lambda: summary(tiny, 8))
    case(c, "summary_input_size_2_values", "input_size", lambda: summary(tiny, (8, 8)))
    case(c, "summary_input_size_5_values", "input_size", lambda: summary(tiny, (1, 1, 1, 8, 8)))
    case(c, "summary_input_size_zero", "input_size", lambda: summary(tiny, (1, 0, 8)))
    case(c, "summary_input_size_negative", "input_size", lambda: summary(tiny, (1, -8, 8)))
    case(c, "summary_input_size_float", "input_size", lambda: summary(tiny, (1, 8.5, 8)))
    case(c, "summary_input_size_str", "input_size", lambda: summary(tiny, (1, "8", 8)))
    case(c, "summary_input_size_nan", "input_size", lambda: summary(tiny, (1, nan, 8)))
    case(c, "summary_input_size_bool", "input_size", lambda: summary(tiny, (True, 8, 8)))
    case(c, "summary_input_size_huge", "input_size",
         lambda: summary(tiny, (1, 2**20, 2**20)), huge=True)
    case(c, "summary_input_size_over_int64", "input_size",
         lambda: summary(tiny, (1, 2**40, 2**40)), huge=True)
    case(c, "summary_dtype_int", "dtype", lambda: summary(tiny, (1, 8, 8), dtype=torch.int64))
    case(c, "summary_dtype_not_dtype", "dtype", lambda: summary(tiny, (1, 8, 8), dtype="float"))
    case(c, "summary_device_unknown", "device", lambda: summary(tiny, (1, 8, 8), device="foo"))
    case(c, "summary_input_size_mismatch", "channels|input",
         lambda: summary(tiny, (3, 8, 8)))
    case(c, "convert_to_unknown", "to", lambda: cnnops.convert(tiny, to="foo"))
    case(c, "convert_to_none", "to", lambda: cnnops.convert(tiny, to=None))
    case(c, "convert_to_upper_case", "to", lambda: cnnops.convert(tiny, to="TORCH"))
    case(c, "convert_model_not_module", "model", lambda: cnnops.convert("model"))
    case(c, "convert_model_none", "model", lambda: cnnops.convert(None))
    case(c, "fuse_model_not_module", "model", lambda: cnnops.fuse("model"))
    case(c, "fuse_model_none", "model", lambda: cnnops.fuse(None))
    for bad_name, value in (("0", 0), ("even", 4), ("negative", -3), ("float", 3.0),
                            ("float_odd", 1.5), ("nan", nan), ("bool", True), ("str", "3"),
                            ("none", None)):
        case(c, f"gaussian_size_{bad_name}", "size", lambda v=value: filters.gaussian(v))
    case(c, "gaussian_size_huge", "size", lambda: filters.gaussian(HUGE + 1), huge=True)
    for bad_name, value in (("0", 0.0), ("negative", -1.0), ("nan", nan), ("inf", inf),
                            ("str", "1"), ("none", None), ("bool", True)):
        case(c, f"gaussian_sigma_{bad_name}", "sigma", lambda v=value: filters.gaussian(3, v))
    for bad_name, value in (("0", 0), ("negative", -1), ("float", 1.5), ("nan", nan),
                            ("bool", True), ("str", "3")):
        case(c, f"box_blur_size_{bad_name}", "size", lambda v=value: filters.box_blur(v))
    case(c, "box_blur_size_huge", "size", lambda: filters.box_blur(HUGE), huge=True)
    image = torch.rand(3, 8, 8)
    k3 = filters.sobel_x()
    apply = filters.apply
    case(c, "apply_padding_mode_unknown", "padding_mode", lambda: apply(image, k3, "foo"))
    case(c, "apply_padding_mode_circular", "padding_mode", lambda: apply(image, k3, "circular"))
    case(c, "apply_padding_mode_none", "padding_mode", lambda: apply(image, k3, None))
    case(c, "apply_image_not_tensor", "image", lambda: apply([[1.0]], k3))
    case(c, "apply_kernel_not_tensor", "kernel", lambda: apply(image, [[1.0]]))
    case(c, "apply_image_1d", "image", lambda: apply(torch.rand(8), k3))
    case(c, "apply_image_5d", "image", lambda: apply(image[None, None], k3))
    case(c, "apply_image_complex", "image", lambda: apply(image.to(torch.complex64), k3))
    case(c, "apply_image_float16", "image", lambda: apply(image.half(), k3))
    case(c, "apply_image_empty", "image", lambda: apply(torch.rand(3, 0, 8), k3))
    case(c, "apply_kernel_1d", "kernel", lambda: apply(image, torch.ones(3)))
    case(c, "apply_kernel_even", "kernel", lambda: apply(image, torch.ones(2, 3)))
    case(c, "apply_kernel_complex", "kernel", lambda: apply(image, k3.to(torch.complex64)))
    case(c, "apply_kernel_meta", "kernel", lambda: apply(image, meta(k3)))
    case(c, "apply_kernel_larger_than_image_reflect", "kernel",
         lambda: apply(torch.rand(2, 2), torch.ones(5, 5), "reflect"))
    case(c, "edge_magnitude_padding_mode_unknown", "padding_mode",
         lambda: filters.edge_magnitude(image, "foo"))
    for name in ("simple_cnn", "lenet5", "cifar_cnn", "vgg11", "mobilenet_v1"):
        fn = getattr(models, name)
        for bad_name, value in (("negative", -1), ("0", 0), ("float", 10.0), ("nan", nan),
                                ("bool", True), ("str", "10"), ("none", None)):
            case(c, f"{name}_num_classes_{bad_name}", "num_classes",
                 lambda fn=fn, v=value: fn(num_classes=v))
        case(c, f"{name}_num_classes_huge", "num_classes",
             lambda fn=fn: fn(num_classes=HUGE), huge=True)
    for name in ("vgg13", "vgg16", "vgg19"):
        case(c, f"{name}_num_classes_negative", "num_classes",
             lambda fn=getattr(models, name): fn(num_classes=-1))
    case(c, "vgg11_batch_norm_str", "batch_norm", lambda: models.vgg11(batch_norm="yes"))
    for bad_name, value in (("0", 0.0), ("negative", -1.0), ("nan", nan), ("inf", inf),
                            ("str", "1"), ("none", None), ("bool", True)):
        case(c, f"mobilenet_v1_width_mult_{bad_name}", "width_mult",
             lambda v=value: models.mobilenet_v1(width_mult=v))
    case(c, "mobilenet_v1_width_mult_huge", "width_mult",
         lambda: models.mobilenet_v1(width_mult=1e6), huge=True)

    # --- the operators, called directly ------------------------------------------------
    c = "ops"
    G = torch.randn(1, 2, 4, 4)  # grad_output of conv2d(X, W)
    for name in ("conv2d", "conv2d_bias_relu"):
        op = getattr(ops, name)
        args = (ONES, NO_PAD, ONES, 1)

        def o(*a, op=op):
            return lambda: op(*a)

        case(c, f"{name}_padding_2_values", "padding", o(X, W, None, ONES, [1, 1], ONES, 1))
        case(c, f"{name}_padding_negative_side", "padding",
             o(X, W, None, ONES, [0, -1, 0, 0], ONES, 1))
        case(c, f"{name}_stride_3_values", "stride", o(X, W, None, [1, 1, 1], NO_PAD, ONES, 1))
        case(c, f"{name}_stride_0", "stride", o(X, W, None, [0, 1], NO_PAD, ONES, 1))
        case(c, f"{name}_stride_float", "stride", o(X, W, None, [1.5, 1], NO_PAD, ONES, 1))
        case(c, f"{name}_dilation_1_value", "dilation", o(X, W, None, ONES, NO_PAD, [1], 1))
        case(c, f"{name}_dilation_negative", "dilation", o(X, W, None, ONES, NO_PAD, [1, -1], 1))
        case(c, f"{name}_groups_0", "groups", o(X, W, None, *args[:3], 0))
        case(c, f"{name}_groups_negative", "groups", o(X, W, None, *args[:3], -4))
        case(c, f"{name}_groups_float", "groups", o(X, W, None, *args[:3], 1.5))
        case(c, f"{name}_input_3d", "input", o(X[0], W, None, *args))
        case(c, f"{name}_input_int", "input", o(X.long(), W.long(), None, *args))
        case(c, f"{name}_input_bool", "input", o(X.bool(), W.bool(), None, *args))
        case(c, f"{name}_input_complex", "input",
             o(X.to(torch.complex64), W.to(torch.complex64), None, *args))
        case(c, f"{name}_weight_double", "weight", o(X, W.double(), None, *args))
        case(c, f"{name}_bias_double", "bias", o(X, W, B.double(), *args))
        case(c, f"{name}_bias_wrong_shape", "bias", o(X, W, B[:1], *args))
        case(c, f"{name}_channels", "channels", o(X, W[:, :3], None, *args))
        case(c, f"{name}_input_meta", "weight", o(meta(X), W, None, *args))
        case(c, f"{name}_weight_meta", "weight", o(X, meta(W), None, *args))
        case(c, f"{name}_bias_meta", "bias", o(X, W, meta(B), *args))
        case(c, f"{name}_meta_channels", "channels", o(meta(X), meta(W[:, :3]), None, *args))
        case(c, f"{name}_meta_kernel_too_large", "kernel",
             o(meta(X), meta(torch.randn(2, 4, 7, 7)), None, *args))
        case(c, f"{name}_meta_bias_wrong_shape", "bias", o(meta(X), meta(W), meta(B[:1]), *args))
        case(c, f"{name}_meta_stride_0", "stride", o(meta(X), meta(W), None, [0, 1], NO_PAD,
                                                     ONES, 1))
        case(c, f"{name}_meta_input_int", "input",
             o(meta(X.long()), meta(W.long()), None, *args))
    gi, gw = ops.conv2d_grad_input, ops.conv2d_grad_weight
    case(c, "conv2d_grad_input_input_size_3_values", "input_size",
         lambda: gi(G, W, [4, 6, 6], ONES, NO_PAD, ONES, 1))
    case(c, "conv2d_grad_input_input_size_negative", "input_size|grad_output",
         lambda: gi(G, W, [1, 4, -6, 6], ONES, NO_PAD, ONES, 1))
    case(c, "conv2d_grad_input_grad_output_shape", "grad_output",
         lambda: gi(G, W, [1, 4, 7, 7], ONES, NO_PAD, ONES, 1))
    case(c, "conv2d_grad_input_channels", "channels",
         lambda: gi(G, W, [1, 3, 6, 6], ONES, NO_PAD, ONES, 1))
    case(c, "conv2d_grad_input_int", "grad_output",
         lambda: gi(G.long(), W, [1, 4, 6, 6], ONES, NO_PAD, ONES, 1))
    case(c, "conv2d_grad_input_weight_meta", "weight",
         lambda: gi(G, meta(W), [1, 4, 6, 6], ONES, NO_PAD, ONES, 1))
    case(c, "conv2d_grad_input_grad_output_3d", "grad_output",
         lambda: gi(G[0], W, [1, 4, 6, 6], ONES, NO_PAD, ONES, 1))
    case(c, "conv2d_grad_weight_weight_size_3_values", "weight_size",
         lambda: gw(G, X, [2, 4, 3], ONES, NO_PAD, ONES, 1))
    case(c, "conv2d_grad_weight_weight_size_negative", "weight_size|grad_output|kernel",
         lambda: gw(G, X, [2, 4, -3, 3], ONES, NO_PAD, ONES, 1))
    case(c, "conv2d_grad_weight_grad_output_shape", "grad_output",
         lambda: gw(G, X, [2, 4, 2, 2], ONES, NO_PAD, ONES, 1))
    case(c, "conv2d_grad_weight_groups", "groups",
         lambda: gw(G, X, [2, 4, 3, 3], ONES, NO_PAD, ONES, 3))
    case(c, "conv2d_grad_weight_double", "input|grad_output",
         lambda: gw(G, X.double(), [2, 4, 3, 3], ONES, NO_PAD, ONES, 1))
    case(c, "conv2d_grad_weight_input_meta", "input|grad_output",
         lambda: gw(G, meta(X), [2, 4, 3, 3], ONES, NO_PAD, ONES, 1))
    case(c, "conv2d_grad_weight_input_3d", "input",
         lambda: gw(G, X[0], [2, 4, 3, 3], ONES, NO_PAD, ONES, 1))
    gb = ops.conv2d_backward
    case(c, "conv2d_backward_grad_output_shape", "grad_output",
         lambda: gb(G[:, :, :3], X, W, ONES, NO_PAD, ONES, 1, True))
    case(c, "conv2d_backward_input_double", "input|grad_output",
         lambda: gb(G, X.double(), W, ONES, NO_PAD, ONES, 1, True))
    case(c, "conv2d_backward_weight_double", "weight|grad_output",
         lambda: gb(G, X, W.double(), ONES, NO_PAD, ONES, 1, False))
    case(c, "conv2d_backward_weight_meta", "weight",
         lambda: gb(G, X, meta(W), ONES, NO_PAD, ONES, 1, False))
    case(c, "conv2d_backward_groups", "groups",
         lambda: gb(G, X, W, ONES, NO_PAD, ONES, 3, True))
    case(c, "conv2d_backward_padding_3_values", "padding",
         lambda: gb(G, X, W, ONES, [0, 0, 0], ONES, 1, True))
    case(c, "conv2d_backward_meta_channels", "channels",
         lambda: gb(meta(G), meta(X), meta(W[:, :3]), ONES, NO_PAD, ONES, 1, True))
    case(c, "conv2d_backward_meta_input_int", "input|grad_output",
         lambda: gb(meta(G), meta(X.long()), meta(W), ONES, NO_PAD, ONES, 1, True))

    XI = torch.zeros(1, 2, 3, 3, dtype=torch.int64)  # indices of max_pool2d(XP, 2)
    DY = torch.zeros(1, 2, 3, 3)
    case(c, "max_pool2d_with_indices_stride_1_value", "stride",
         lambda: ops.max_pool2d_with_indices(XP, [2, 2], [2], [0, 0], ONES, False))
    case(c, "max_pool2d_kernel_size_0", "kernel_size",
         lambda: ops.max_pool2d_with_indices(XP, [0, 2], [2, 2], [0, 0], ONES, False))
    case(c, "max_pool2d_padding_over_half", "padding",
         lambda: ops.max_pool2d_with_indices(XP, [2, 2], [2, 2], [0, 2], ONES, False))
    case(c, "max_pool2d_input_3d", "input",
         lambda: ops.max_pool2d_with_indices(XP[0], [2, 2], [2, 2], [0, 0], ONES, False))
    case(c, "max_pool2d_meta_input_3d", "input",
         lambda: ops.max_pool2d_with_indices(meta(XP[0]), [2, 2], [2, 2], [0, 0], ONES, False))
    case(c, "max_pool2d_meta_input_int", "input",
         lambda: ops.max_pool2d_with_indices(meta(XP.long()), [2, 2], [2, 2], [0, 0], ONES,
                                             False))
    case(c, "max_pool2d_meta_padding_over_half", "padding",
         lambda: ops.max_pool2d_with_indices(meta(XP), [2, 2], [2, 2], [0, 2], ONES, False))
    case(c, "max_pool2d_meta_stride_0", "stride",
         lambda: ops.max_pool2d_with_indices(meta(XP), [2, 2], [0, 2], [0, 0], ONES, False))
    case(c, "max_pool2d_values_only_padding_over_half", "padding",
         lambda: ops.max_pool2d(XP, [2, 2], [2, 2], [0, 2], ONES, False))
    case(c, "max_pool2d_values_only_input_3d", "input",
         lambda: ops.max_pool2d(XP[0], [2, 2], [2, 2], [0, 0], ONES, False))
    case(c, "max_pool2d_values_only_meta_stride_0", "stride",
         lambda: ops.max_pool2d(meta(XP), [2, 2], [0, 2], [0, 0], ONES, False))
    case(c, "avg_pool2d_divisor_override_0", "divisor_override",
         lambda: ops.avg_pool2d(XP, [2, 2], [2, 2], [0, 0], False, True, 0))
    case(c, "avg_pool2d_meta_divisor_override_0", "divisor_override",
         lambda: ops.avg_pool2d(meta(XP), [2, 2], [2, 2], [0, 0], False, True, 0))
    case(c, "avg_pool2d_kernel_size_3_values", "kernel_size",
         lambda: ops.avg_pool2d(XP, [2, 2, 2], [2, 2], [0, 0], False, True, None))
    case(c, "avg_pool2d_grad_input_grad_output_shape", "grad_output",
         lambda: ops.avg_pool2d_grad_input(DY[:, :, :2], XP, [2, 2], [2, 2], [0, 0], False,
                                           True, None))
    case(c, "avg_pool2d_grad_input_grad_output_meta", "grad_output",
         lambda: ops.avg_pool2d_grad_input(meta(DY), XP, [2, 2], [2, 2], [0, 0], False, True,
                                           None))
    case(c, "avg_pool2d_grad_input_meta_grad_output_shape", "grad_output",
         lambda: ops.avg_pool2d_grad_input(meta(DY[:, :, :2]), meta(XP), [2, 2], [2, 2],
                                           [0, 0], False, True, None))
    for name in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        op = getattr(ops, name)
        case(c, f"{name}_output_size_1_value", "output_size", lambda op=op: op(XP, [3]))
        case(c, f"{name}_output_size_negative", "output_size", lambda op=op: op(XP, [3, -1]))
        case(c, f"{name}_input_int", "input", lambda op=op: op(XP.long(), [3, 3]))
        case(c, f"{name}_meta_output_size_negative", "output_size",
             lambda op=op: op(meta(XP), [3, -1]))
        case(c, f"{name}_meta_input_3d", "input", lambda op=op: op(meta(XP[0]), [3, 3]))
    mg, ga = ops.max_pool2d_grad_input, ops.max_pool2d_gather
    case(c, "max_pool2d_grad_input_indices_float", "indices", lambda: mg(DY, XI.float(), XP))
    case(c, "max_pool2d_grad_input_grad_output_shape", "grad_output",
         lambda: mg(DY[:, :, :2], XI, XP))
    case(c, "max_pool2d_grad_input_grad_output_double", "grad_output",
         lambda: mg(DY.double(), XI, XP))
    case(c, "max_pool2d_grad_input_indices_channels", "indices", lambda: mg(DY, XI[:, :1], XP))
    # (indices outside the plane are not bad input: the operators ignore them by design, as
    # max pooling emits them for windows with no tap inside the input)
    case(c, "max_pool2d_grad_input_indices_meta", "indices", lambda: mg(DY, meta(XI), XP))
    case(c, "max_pool2d_grad_input_grad_output_meta", "grad_output",
         lambda: mg(meta(DY), XI, XP))
    case(c, "max_pool2d_grad_input_input_meta", "input|indices|grad_output",
         lambda: mg(DY, XI, meta(XP)))
    case(c, "max_pool2d_grad_input_input_3d", "input", lambda: mg(DY, XI, XP[0]))
    case(c, "max_pool2d_grad_input_meta_indices_float", "indices",
         lambda: mg(meta(DY), meta(XI.float()), meta(XP)))
    case(c, "max_pool2d_grad_input_meta_indices_channels", "indices",
         lambda: mg(meta(DY[:, :1]), meta(XI[:, :1]), meta(XP)))
    case(c, "max_pool2d_gather_indices_int32", "indices", lambda: ga(XP, XI.int()))
    case(c, "max_pool2d_gather_indices_3d", "indices", lambda: ga(XP, XI[0]))
    case(c, "max_pool2d_gather_indices_meta", "indices", lambda: ga(XP, meta(XI)))
    case(c, "max_pool2d_gather_input_int", "input", lambda: ga(XP.long(), XI))
    case(c, "max_pool2d_gather_meta_indices_int32", "indices",
         lambda: ga(meta(XP), meta(XI.int())))
    ag = ops.adaptive_avg_pool2d_grad_input
    case(c, "adaptive_avg_pool2d_grad_input_grad_output_3d", "grad_output",
         lambda: ag(DY[0], XP))
    case(c, "adaptive_avg_pool2d_grad_input_grad_output_double", "grad_output",
         lambda: ag(DY.double(), XP))
    case(c, "adaptive_avg_pool2d_grad_input_grad_output_channels", "grad_output",
         lambda: ag(DY[:, :1], XP))
    case(c, "adaptive_avg_pool2d_grad_input_grad_output_meta", "grad_output",
         lambda: ag(meta(DY), XP))
    case(c, "adaptive_avg_pool2d_grad_input_meta_channels", "grad_output",
         lambda: ag(meta(DY[:, :1]), meta(XP)))

    so, sb = ops.depthwise_separable_conv2d, ops.depthwise_separable_conv2d_backward
    sargs = (ONES, NO_PAD, ONES)
    GS = torch.randn(1, 5, 4, 4)  # grad_output of the separable conv of X
    case(c, "depthwise_separable_conv2d_padding_2_values", "padding",
         lambda: so(X, DW, PW, None, None, ONES, [0, 0], ONES))
    case(c, "depthwise_separable_conv2d_stride_0", "stride",
         lambda: so(X, DW, PW, None, None, [0, 1], NO_PAD, ONES))
    case(c, "depthwise_separable_conv2d_input_3d", "input", lambda: so(X[0], DW, PW, None, None, *sargs))
    case(c, "depthwise_separable_conv2d_input_int", "input",
         lambda: so(X.long(), DW.long(), PW.long(), None, None, *sargs))
    case(c, "depthwise_separable_conv2d_depthwise_weight_meta", "depthwise_weight",
         lambda: so(X, meta(DW), PW, None, None, *sargs))
    case(c, "depthwise_separable_conv2d_pointwise_bias_meta", "pointwise_bias",
         lambda: so(X, DW, PW, None, meta(PB), *sargs))
    case(c, "depthwise_separable_conv2d_channels", "pointwise_weight",
         lambda: so(X, DW, PW[:, :3], None, None, *sargs))
    case(c, "depthwise_separable_conv2d_meta_channels", "pointwise_weight",
         lambda: so(meta(X), meta(DW), meta(PW[:, :3]), None, None, *sargs))
    case(c, "depthwise_separable_conv2d_meta_depthwise_bias_shape", "depthwise_bias",
         lambda: so(meta(X), meta(DW), meta(PW), meta(DB[:3]), None, *sargs))
    case(c, "depthwise_separable_conv2d_meta_input_int", "input",
         lambda: so(meta(X.long()), meta(DW.long()), meta(PW.long()), None, None, *sargs))
    case(c, "depthwise_separable_conv2d_backward_grad_output_shape", "grad_output",
         lambda: sb(GS[:, :3], X, DW, PW, None, *sargs))
    case(c, "depthwise_separable_conv2d_backward_grad_output_double", "grad_output",
         lambda: sb(GS.double(), X, DW, PW, None, *sargs))
    case(c, "depthwise_separable_conv2d_backward_grad_output_meta", "grad_output",
         lambda: sb(meta(GS), X, DW, PW, None, *sargs))
    case(c, "depthwise_separable_conv2d_backward_depthwise_bias_shape", "depthwise_bias",
         lambda: sb(GS, X, DW, PW, DB[:3], *sargs))
    case(c, "depthwise_separable_conv2d_backward_dilation_0", "dilation",
         lambda: sb(GS, X, DW, PW, None, ONES, NO_PAD, [0, 1]))

    # --- huge sizes: refused before any allocation, and no int64 arithmetic wraps -------
    c = "huge"
    for name in ("conv2d", "conv2d_bias_relu"):
        fn = getattr(F, name)
        case(c, f"{name}_padding_2**40", "padding", lambda fn=fn: fn(X, W, padding=HUGE))
        case(c, f"{name}_padding_2**40_one_side", "padding",
             lambda fn=fn: fn(X, W, padding=(HUGE, 0)))
        case(c, f"{name}_padding_2**62", "padding", lambda fn=fn: fn(X, W, padding=2**62))
        case(c, f"{name}_padding_2**63-1", "padding",
             lambda fn=fn: fn(X, W, padding=2**63 - 1))
        case(c, f"{name}_dilation_2**62", "dilation|kernel",
             lambda fn=fn: fn(X, W, dilation=2**62))
        case(c, f"{name}_dilation_2**63-1", "dilation|kernel",
             lambda fn=fn: fn(X, W, dilation=2**63 - 1))
        case(c, f"{name}_dilation_2**40", "dilation|kernel",
             lambda fn=fn: fn(X, W, dilation=HUGE))
        case(c, f"{name}_kernel_2**40_padding_2**40", "padding|kernel",
             lambda fn=fn: fn(X, big(2, 4, HUGE, 1), padding=(HUGE, 0)))
        case(c, f"{name}_kernel_2**60_dilation_16", "dilation|kernel",
             lambda fn=fn: fn(X, big(1, 4, 2**60, 1), dilation=16))
        case(c, f"{name}_input_output_2**40", "input",
             lambda fn=fn: fn(big(1, 4, 2**20 + 2, 2**20 + 2), W))
        case(c, f"{name}_channels_output_2**40", "weight",
             lambda fn=fn: fn(big(1, 4, 1026, 1026), big(2**20, 4, 3, 3)))
        case(c, f"{name}_padding_same_dilation_2**62", "dilation|padding|kernel",
             lambda fn=fn: fn(X, W, padding="same", dilation=2**62))
    for p, fn in pools.items():
        case(c, f"{p}_kernel_size_2**40", "kernel_size", lambda fn=fn: fn(XP, HUGE))
        case(c, f"{p}_kernel_size_2**63-1", "kernel_size", lambda fn=fn: fn(XP, 2**63 - 1))
        case(c, f"{p}_padding_2**62_kernel_2**63-1", "padding",
             lambda fn=fn: fn(XP, 2**63 - 1, padding=2**62 - 1))
        case(c, f"{p}_padding_2**40_stride_1", "padding|kernel_size",
             lambda fn=fn: fn(XP, 2 * HUGE, 1, padding=HUGE))
        case(c, f"{p}_input_output_2**40", "input",
             lambda fn=fn: fn(big(1, 2**10, 2**16, 2**16), 1))
        case(c, f"{p}_ceil_mode_stride_2**63-1", "stride|kernel_size",
             lambda fn=fn: fn(XP, 2, 2**63 - 1, ceil_mode=True))
    case(c, "max_dilation_2**62", "dilation|kernel_size",
         lambda: F.max_pool2d(XP, 3, dilation=2**62))
    case(c, "max_dilation_2**40", "dilation|kernel_size",
         lambda: F.max_pool2d(XP, 3, dilation=HUGE))
    case(c, "avg_divisor_area_overflow", "padding|kernel_size",
         lambda: F.avg_pool2d(XP, 2**33 + 1, padding=2**32))
    for p, fn in adaptive.items():
        case(c, f"{p}_output_size_2**40", "output_size", lambda fn=fn: fn(XP, HUGE))
        case(c, f"{p}_output_size_2**40_pair", "output_size", lambda fn=fn: fn(XP, (HUGE, HUGE)))
        case(c, f"{p}_output_size_2**20_pair", "output_size",
             lambda fn=fn: fn(XP, (2**20, 2**20)))
        case(c, f"{p}_output_size_2**62", "output_size", lambda fn=fn: fn(XP, (2**62, 1)))
        case(c, f"{p}_output_size_2**63-1", "output_size",
             lambda fn=fn: fn(XP, (2**63 - 1, 2**63 - 1)))
        case(c, f"{p}_input_2**40_output_2**20", "output_size|input",
             lambda fn=fn: fn(big(1, 1, HUGE, 1), (2**20, 2**20)))
        case(c, f"{p}_input_2**62_output_2**62", "output_size|input",
             lambda fn=fn: fn(big(1, 1, 2**62, 1), (2**62, 1)))
        case(c, f"{p}_input_2**62_output_4", "output_size|input",
             lambda fn=fn: fn(big(1, 1, 2**62, 1), (4, 1)))
    case(c, "depthwise_separable_conv2d_padding_2**40", "padding", lambda: sep(X, DW, PW, padding=HUGE))
    case(c, "depthwise_separable_conv2d_padding_2**62", "padding", lambda: sep(X, DW, PW, padding=2**62))
    case(c, "depthwise_separable_conv2d_dilation_2**62", "dilation|kernel",
         lambda: sep(X, DW, PW, dilation=2**62))
    case(c, "depthwise_separable_conv2d_out_channels_output_2**40", "pointwise_weight",
         lambda: sep(big(1, 4, 1026, 1026), DW, big(2**20, 4, 1, 1)))
    case(c, "op_conv2d_padding_2**62", "padding",
         lambda: ops.conv2d(X, W, None, ONES, [2**62] * 4, ONES, 1))
    case(c, "op_conv2d_padding_2**63-1_top", "padding",
         lambda: ops.conv2d(X, W, None, ONES, [2**63 - 1, 0, 0, 0], ONES, 1))
    case(c, "op_conv2d_meta_padding_2**62", "padding",
         lambda: ops.conv2d(meta(X), meta(W), None, ONES, [2**62] * 4, ONES, 1))
    case(c, "op_conv2d_grad_input_input_size_2**40", "input_size",
         lambda: ops.conv2d_grad_input(big(1, 2, HUGE - 2, 4), W, [1, 4, HUGE, 6], ONES, NO_PAD,
                                       ONES, 1))
    case(c, "op_conv2d_grad_input_input_size_2**62", "input_size|grad_output",
         lambda: ops.conv2d_grad_input(G, W, [2**62, 4, 6, 6], ONES, NO_PAD, ONES, 1))
    case(c, "op_conv2d_grad_weight_weight_size_2**40", "weight_size",
         lambda: ops.conv2d_grad_weight(big(1, HUGE, 4, 4), X, [HUGE, 4, 3, 3], ONES, NO_PAD,
                                        ONES, 1))
    case(c, "op_conv2d_grad_weight_weight_size_overflow", "weight_size",
         lambda: ops.conv2d_grad_weight(big(1, 2**58, 4, 4), X, [2**58, 4, 3, 3], ONES, NO_PAD,
                                        ONES, 1))
    case(c, "op_max_pool2d_kernel_2**63-1", "padding|kernel_size",
         lambda: ops.max_pool2d_with_indices(XP, [2**63 - 1] * 2, ONES, [2**62 - 1] * 2, ONES,
                                             False))
    case(c, "op_avg_pool2d_meta_kernel_2**63-1", "padding|kernel_size",
         lambda: ops.avg_pool2d(meta(XP), [2**63 - 1] * 2, ONES, [2**62 - 1] * 2, False,
                                True, None))
    case(c, "op_adaptive_avg_pool2d_2**40", "output_size",
         lambda: ops.adaptive_avg_pool2d(XP, [HUGE, HUGE]))
    case(c, "op_adaptive_max_pool2d_meta_2**62", "output_size",
         lambda: ops.adaptive_max_pool2d(meta(XP), [2**62, 2**62]))
    case(c, "op_depthwise_separable_conv2d_padding_2**62", "padding",
         lambda: so(X, DW, PW, None, None, ONES, [2**62] * 4, ONES))
    case(c, "op_depthwise_separable_conv2d_backward_padding_2**62", "padding|grad_output",
         lambda: sb(GS, X, DW, PW, None, ONES, [2**62] * 4, ONES))


# ---------------------------------------------------------------------------------------
# The child: runs the cases it is given, one JSON line each.


def child_main(chunk: str, skip: int) -> None:
    import resource
    import time

    import torch

    torch.set_num_threads(1)
    build_table()
    cases = [c for c in CASES if c.chunk == chunk][skip:]
    # Cap the address space, so that a case that really allocates 2**40 elements fails
    # rather than take the machine's memory.
    with open("/proc/self/status") as status:
        vm_kb = int(next(line for line in status if line.startswith("VmSize:")).split()[1])
    cap = (vm_kb + 4 * 1024 * 1024) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    out = sys.stdout
    for c in cases:
        out.write(json.dumps({"start": c.id}) + "\n")
        out.flush()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        try:
            result = c.call()
            report = {"returned": _describe(result)}
        except BaseException as error:  # noqa: BLE001  every kind is reported
            report = {"classes": [k.__name__ for k in type(error).__mro__],
                      "message": str(error)[:2000]}
        report["elapsed_s"] = time.perf_counter() - start
        report["rss_growth_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        report["id"] = c.id
        out.write(json.dumps(report) + "\n")
        out.flush()


def _describe(value) -> str:
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__}{'' if shape is None else tuple(shape)}"


# ---------------------------------------------------------------------------------------
# The parent: one child per chunk, restarted after the case that killed it.

_RESULTS: dict[str, dict[str, dict]] = {}


def _run_chunk(chunk: str, ids: list[str]) -> dict[str, dict]:
    results: dict[str, dict] = {}
    while len(results) < len(ids):
        skip = len(results)
        try:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), chunk, str(skip)],
                                  capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
            stdout, stderr, why = proc.stdout, proc.stderr, _exit_reason(proc.returncode)
        except subprocess.TimeoutExpired as expired:
            stdout = _text(expired.stdout)
            stderr, why = _text(expired.stderr), f"hung (killed after {CHILD_TIMEOUT_S} s)"
        running = None
        for line in stdout.splitlines():
            record = json.loads(line)
            if "start" in record:
                running = record["start"]
            else:
                results[record["id"]] = record
                running = None
        if len(results) == len(ids):
            break
        if running is None:  # died outside any case: every remaining case fails with it
            for case_id in ids[len(results):]:
                results[case_id] = {"died": f"the child {why} before this case: {stderr[-3000:]}"}
            break
        results[running] = {"died": f"the child {why} during this case; stderr: {stderr[-3000:]}"}
    return results


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by signal {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


def _result(case_: Case) -> dict:
    if case_.chunk not in _RESULTS:
        ids = [c.id for c in CASES if c.chunk == case_.chunk]
        _RESULTS[case_.chunk] = _run_chunk(case_.chunk, ids)
    return _RESULTS[case_.chunk][case_.id]


if __name__ == "__main__":
    child_main(sys.argv[1], int(sys.argv[2]))
    sys.exit(0)

build_table()
_BY_ID = {c.id: c for c in CASES}
assert len(_BY_ID) == len(CASES), "duplicate case ids"


@pytest.mark.parametrize("case_id", list(_BY_ID))
def test_bad_input_is_refused_naming_the_argument(case_id):
    c = _BY_ID[case_id]
    r = _result(c)
    assert "died" not in r, r["died"]
    assert "returned" not in r, f"no exception: the call returned {r['returned']}"
    assert any(k in ERRORS for k in r["classes"]), (
        f"raised {r['classes'][0]}, not one of {ERRORS}: {r['message']}")
    assert r["message"] and re.search(c.match, r["message"], re.IGNORECASE), (
        f"the message does not name {c.match!r}: {r['message']}")
    if c.huge:
        assert r["rss_growth_kb"] < RSS_GROWTH_LIMIT_KB, (
            f"peak RSS grew by {r['rss_growth_kb'] // 1024} MiB before the refusal")


def test_table_covers_every_public_callable():
    # a new public function or module must get rows in the table above
    import torch

    import cnnops
    from cnnops import nn as cnn

    ids = " ".join(_BY_ID)
    names = list(cnnops.functional.__all__) + list(cnn.__all__) + list(cnnops.models.__all__)
    names += ["conv_output_size", "pool_output_size", "summary", "convert", "fuse", "gaussian",
              "box_blur", "apply"]
    names += [op for op in torch.ops.cnnops if not op.startswith("_")]
    missing = [n for n in names if n not in ids]
    assert not missing, f"no bad-input case for: {missing}"
