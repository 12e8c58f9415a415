"""Bad input to the pooling functions and operators raises a Python exception that names the
offending argument.

The exact wording belongs to the library; each case matches one distinctive word of it.
"""

import pytest
import torch

import cnnops

ERRORS = (RuntimeError, ValueError, TypeError)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
ops = torch.ops.cnnops


def bad(name, fn, kind, match, shape=(1, 2, 6, 6), dtype=torch.float32, **kwargs):
    """One call of cnnops.<fn> on an input of `shape` and `dtype` with `kwargs` that must raise
    `kind` with a message matching `match`."""
    return pytest.param(fn, shape, dtype, kwargs, kind, match, id=name)


BAD_CALLS = [
    # the input
    bad("max_input_2d", "max_pool2d", ValueError, "input", shape=(6, 6), kernel_size=2),
    bad("max_input_5d", "max_pool2d", ValueError, "input", shape=(1, 1, 2, 6, 6), kernel_size=2),
    bad("max_input_int64", "max_pool2d", TypeError, "input", dtype=torch.int64, kernel_size=2),
    bad("max_input_int32", "max_pool2d", TypeError, "input", dtype=torch.int32, kernel_size=2),
    bad("max_input_zero_channels", "max_pool2d", ValueError, "input", shape=(1, 0, 6, 6),
        kernel_size=2),
    bad("max_input_zero_height", "max_pool2d", ValueError, "input", shape=(1, 2, 0, 6),
        kernel_size=1),
    bad("avg_input_1d", "avg_pool2d", ValueError, "input", shape=(6,), kernel_size=2),
    bad("avg_input_uint8", "avg_pool2d", TypeError, "input", dtype=torch.uint8, kernel_size=2),
    bad("adaptive_avg_input_int", "adaptive_avg_pool2d", TypeError, "input", dtype=torch.int64,
        output_size=2),
    bad("adaptive_max_input_5d", "adaptive_max_pool2d", ValueError, "input",
        shape=(1, 1, 1, 4, 4), output_size=2),
    bad("adaptive_max_input_bool", "adaptive_max_pool2d", TypeError, "input", dtype=torch.bool,
        output_size=2),
    # kernel_size, stride, dilation: < 1 or the wrong length
    bad("kernel_0", "max_pool2d", ValueError, "kernel_size", kernel_size=0),
    bad("kernel_negative", "avg_pool2d", ValueError, "kernel_size", kernel_size=(2, -1)),
    bad("kernel_3_values", "max_pool2d", ValueError, "kernel_size", kernel_size=(2, 2, 2)),
    bad("kernel_empty", "avg_pool2d", ValueError, "kernel_size", kernel_size=()),
    bad("kernel_float", "max_pool2d", TypeError, "kernel_size", kernel_size=2.0),
    bad("stride_0", "max_pool2d", ValueError, "stride", kernel_size=2, stride=0),
    bad("stride_negative", "avg_pool2d", ValueError, "stride", kernel_size=2, stride=(1, -2)),
    bad("stride_3_values", "avg_pool2d", ValueError, "stride", kernel_size=2, stride=(1, 1, 1)),
    bad("dilation_0", "max_pool2d", ValueError, "dilation", kernel_size=2, dilation=0),
    bad("dilation_3_values", "max_pool2d", ValueError, "dilation", kernel_size=2,
        dilation=(1, 1, 1)),
    # padding: negative, or over half the kernel
    bad("max_padding_negative", "max_pool2d", ValueError, "padding", kernel_size=2, padding=-1),
    bad("max_padding_over_half", "max_pool2d", ValueError, "padding", kernel_size=3, padding=2),
    bad("max_padding_over_half_of_dilated", "max_pool2d", ValueError, "padding",
        kernel_size=2, padding=2, dilation=3),
    bad("avg_padding_over_half", "avg_pool2d", ValueError, "padding", kernel_size=(4, 2),
        padding=(2, 2)),
    # a window larger than the padded input
    bad("max_window_too_large", "max_pool2d", ValueError, "kernel_size", kernel_size=7),
    bad("max_dilated_window_too_large", "max_pool2d", ValueError, "kernel_size", kernel_size=3,
        dilation=3),
    bad("avg_window_too_large", "avg_pool2d", ValueError, "kernel_size", kernel_size=(2, 9),
        padding=1),
    # divisor_override
    bad("divisor_override_0", "avg_pool2d", ValueError, "divisor_override", kernel_size=2,
        divisor_override=0),
    bad("divisor_override_float", "avg_pool2d", TypeError, "divisor_override", kernel_size=2,
        divisor_override=1.5),
    # adaptive output_size
    bad("adaptive_avg_negative", "adaptive_avg_pool2d", ValueError, "output_size",
        output_size=(-1, 2)),
    bad("adaptive_max_negative", "adaptive_max_pool2d", ValueError, "output_size",
        output_size=-3),
    bad("adaptive_3_values", "adaptive_avg_pool2d", ValueError, "output_size",
        output_size=(1, 2, 3)),
    bad("adaptive_float", "adaptive_max_pool2d", TypeError, "output_size", output_size=(2.5, 2)),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn, shape, dtype, kwargs, kind, match", BAD_CALLS)
def test_bad_input_names_the_argument(fn, shape, dtype, kwargs, kind, match, device):
    x = torch.zeros(shape, dtype=dtype, device=device)
    with pytest.raises(kind, match=match):
        getattr(cnnops, fn)(x, **kwargs)


def test_half_precision_is_refused_on_cpu():
    for fn, args in ((cnnops.max_pool2d, (2,)), (cnnops.avg_pool2d, (2,)),
                     (cnnops.adaptive_avg_pool2d, (1,)), (cnnops.adaptive_max_pool2d, (1,))):
        with pytest.raises(TypeError, match="input.*float16"):
            fn(torch.zeros(1, 2, 4, 4, dtype=torch.float16), *args)


# The operators underneath check their own arguments too (torch.ops.cnnops.* called directly).
x = torch.zeros(1, 2, 6, 6)
idx = torch.zeros(1, 2, 3, 3, dtype=torch.int64)
dy = torch.zeros(1, 2, 3, 3)
OPERATOR_CALLS = [
    pytest.param(lambda: ops.max_pool2d_with_indices(x, [2, 2], [2], [0, 0], [1, 1], False),
                 "stride", id="stride_1_value"),
    pytest.param(lambda: ops.max_pool2d_with_indices(x[0], [2, 2], [2, 2], [0, 0], [1, 1], False),
                 "input", id="unbatched_operator_input"),
    pytest.param(lambda: ops.avg_pool2d(x, [2, 2], [2, 2], [0, 0], False, True, 0),
                 "divisor_override", id="divisor_override_0"),
    pytest.param(lambda: ops.adaptive_avg_pool2d(x, [3]), "output_size", id="output_size_1_value"),
    pytest.param(lambda: ops.max_pool2d_grad_input(dy, idx.float(), x), "indices",
                 id="grad_input_float_indices"),
    pytest.param(lambda: ops.max_pool2d_grad_input(dy[:, :, :2], idx, x), "grad_output",
                 id="grad_input_grad_output_shape"),
    pytest.param(lambda: ops.max_pool2d_grad_input(dy.double(), idx, x), "grad_output",
                 id="grad_input_grad_output_dtype"),
    pytest.param(lambda: ops.max_pool2d_grad_input(dy, idx[:, :1], x), "indices",
                 id="grad_input_indices_channels"),
    pytest.param(lambda: ops.max_pool2d_gather(x, idx.int()), "indices", id="gather_int32_indices"),
    pytest.param(lambda: ops.avg_pool2d_grad_input(dy[:, :, :2], x, [2, 2], [2, 2], [0, 0], False,
                                                   True, None),
                 "grad_output", id="avg_grad_output_shape"),
    pytest.param(lambda: ops.adaptive_avg_pool2d_grad_input(dy[0], x), "grad_output",
                 id="adaptive_grad_output_3d"),
    pytest.param(lambda: ops.adaptive_avg_pool2d_grad_input(dy.double(), x), "grad_output",
                 id="adaptive_grad_output_dtype"),
]


@pytest.mark.parametrize("call, match", OPERATOR_CALLS)
def test_operators_name_the_argument(call, match):
    with pytest.raises(ERRORS, match=match):
        call()
