"""Bad input to conv2d raises a Python exception that names the offending argument.

The exact wording belongs to the library; each case matches one distinctive word of it.
"""

import pytest
import torch

import cnnops

ERRORS = (RuntimeError, ValueError, TypeError)


def bad(name, match, input=(1, 4, 6, 6), weight=(2, 4, 3, 3), bias=None, dtype=torch.float32,
        dtypes=None, **kwargs):
    """One call that differs from the valid conv2d(input (1, 4, 6, 6), weight (2, 4, 3, 3))
    in the shapes, dtypes (`dtype` for all operands, `dtypes` per operand) or keywords given."""
    dtypes = {"input": dtype, "weight": dtype, "bias": dtype, **(dtypes or {})}
    operands = {"input": input, "weight": weight, "bias": bias}
    specs = {k: None if shape is None else (shape, dtypes[k]) for k, shape in operands.items()}
    return pytest.param(specs, kwargs, match, id=name)


def make(spec, device):
    if spec is None:
        return None
    shape, dtype = spec
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(shape, dtype=dtype, device=device)
    return torch.zeros(shape, dtype=dtype, device=device)


def call_conv2d(specs, kwargs, device="cpu", input_device=None):
    x = make(specs["input"], input_device or device)
    w = make(specs["weight"], device)
    b = make(specs["bias"], device)
    return cnnops.conv2d(x, w, b, **kwargs)


BAD_CALLS = [
    bad("input_2d", "input", input=(4, 6)),
    bad("input_5d", "input", input=(1, 1, 4, 6, 6)),
    bad("weight_3d", "weight", weight=(2, 4, 3)),
    bad("weight_5d", "weight", weight=(2, 4, 3, 3, 1)),
    bad("weight_empty_kernel", "weight", weight=(2, 4, 0, 3)),
    bad("channel_mismatch", "channels", weight=(2, 3, 3, 3)),
    bad("channel_mismatch_unbatched", "channels", input=(3, 6, 6)),
    bad("channel_mismatch_groups", "channels", groups=2),
    bad("groups_not_dividing_in_channels", "groups", weight=(3, 1, 3, 3), groups=3),
    bad("groups_not_dividing_out_channels", "groups", weight=(3, 2, 3, 3), groups=2),
    bad("groups_0", "groups", groups=0),
    bad("groups_negative", "groups", groups=-2),
    bad("groups_float", "groups", groups=2.0),
    bad("stride_0", "stride", stride=0),
    bad("stride_pair_with_0", "stride", stride=(1, 0)),
    bad("stride_negative", "stride", stride=-1),
    bad("stride_3_values", "stride", stride=(1, 1, 1)),
    bad("stride_float", "stride", stride=1.5),
    bad("dilation_0", "dilation", dilation=0),
    bad("dilation_pair_with_negative", "dilation", dilation=(2, -1)),
    bad("dilation_3_values", "dilation", dilation=(1, 2, 1)),
    bad("padding_negative", "padding", padding=-1),
    bad("padding_pair_with_negative", "padding", padding=(0, -2)),
    bad("padding_3_values", "padding", padding=(1, 1, 1)),
    bad("padding_float", "padding", padding=1.5),
    bad("padding_unknown_string", "padding", padding="full"),
    bad("padding_same_with_stride2", "same|stride", padding="same", stride=2),
    bad("padding_same_with_stride1x2", "same|stride", padding="same", stride=(1, 2)),
    bad("kernel_taller_than_input", "kernel", weight=(2, 4, 7, 3)),
    bad("kernel_wider_than_padded_input", "kernel", weight=(2, 4, 3, 9), padding=1),
    bad("dilated_kernel_larger_than_input", "kernel", dilation=3),
    bad("bias_wrong_length", "bias", bias=(3,)),
    bad("bias_2d", "bias", bias=(2, 1)),
    bad("bias_0d", "bias", bias=()),
    bad("weight_dtype_differs", "dtype", dtypes=dict(weight=torch.float64)),
    bad("input_dtype_differs", "dtype", dtypes=dict(input=torch.float64)),
    bad("bias_dtype_differs", "dtype", bias=(2,), dtypes=dict(bias=torch.float64)),
    bad("int64_tensors", "dtype", dtype=torch.int64),
    bad("int32_tensors", "dtype", dtype=torch.int32),
    bad("uint8_tensors", "dtype", dtype=torch.uint8),
    bad("bool_tensors", "dtype", dtype=torch.bool),
    bad("complex_tensors", "dtype", dtype=torch.complex64),
    # float16 and bfloat16 are CUDA-only in cnnops
    bad("float16_on_cpu", "dtype", dtype=torch.float16),
    bad("bfloat16_on_cpu", "dtype", dtype=torch.bfloat16),
]


def test_valid_call_is_accepted():
    # the starting point of every case below must itself be valid
    specs, kwargs, _ = bad("valid", "").values
    assert call_conv2d(specs, kwargs).shape == (1, 2, 4, 4)


@pytest.mark.parametrize("specs, kwargs, match", BAD_CALLS)
def test_bad_argument_is_refused(specs, kwargs, match):
    with pytest.raises(ERRORS, match=f"(?i){match}"):
        call_conv2d(specs, kwargs)


@pytest.mark.cuda
@pytest.mark.parametrize(
    "specs, kwargs, match, input_device",
    [
        pytest.param(*bad("", "device").values, "cpu", id="input_on_cpu_weight_on_cuda"),
        pytest.param(*bad("", "dtype", dtype=torch.int64).values, "cuda", id="int64_on_cuda"),
        pytest.param(*bad("", "dtype", dtype=torch.bool).values, "cuda", id="bool_on_cuda"),
        pytest.param(*bad("", "dtype", dtypes=dict(weight=torch.float16)).values, "cuda",
                     id="float32_input_float16_weight"),
    ],
)
def test_bad_cuda_argument_is_refused(specs, kwargs, match, input_device):
    with pytest.raises(ERRORS, match=f"(?i){match}"):
        call_conv2d(specs, kwargs, device="cuda", input_device=input_device)
        torch.cuda.synchronize()


@pytest.mark.cuda
def test_bias_on_other_device_is_refused():
    x, w = torch.randn(1, 4, 6, 6, device="cuda"), torch.randn(2, 4, 3, 3, device="cuda")
    with pytest.raises(ERRORS, match="(?i)device"):
        cnnops.conv2d(x, w, torch.randn(2))


# The operators themselves refuse bad input too (torch.ops.cnnops.* called directly).
X = torch.randn(1, 4, 6, 6)
W = torch.randn(2, 4, 3, 3)
G = torch.randn(1, 2, 4, 4)  # the shape of conv2d(X, W) with no padding
NO_PAD = [0, 0, 0, 0]
conv2d_op = torch.ops.cnnops.conv2d
grad_input_op = torch.ops.cnnops.conv2d_grad_input
grad_weight_op = torch.ops.cnnops.conv2d_grad_weight

BAD_OPERATOR_CALLS = [
    pytest.param(lambda: conv2d_op(X, W, None, [1, 1], [1, 1], [1, 1], 1),
                 "padding", id="conv2d_padding_2_values"),
    pytest.param(lambda: conv2d_op(X, W, None, [1, 1, 1], NO_PAD, [1, 1], 1),
                 "stride", id="conv2d_stride_3_values"),
    pytest.param(lambda: conv2d_op(X, W, None, [1, 1], NO_PAD, [1], 1),
                 "dilation", id="conv2d_dilation_1_value"),
    pytest.param(lambda: conv2d_op(X, W, None, [1, 1], [0, -1, 0, 0], [1, 1], 1),
                 "padding", id="conv2d_negative_bottom_padding"),
    pytest.param(lambda: conv2d_op(X, W, None, [1, 1], NO_PAD, [1, 1], 0),
                 "groups", id="conv2d_groups_0"),
    pytest.param(lambda: conv2d_op(X[0], W, None, [1, 1], NO_PAD, [1, 1], 1),
                 "input", id="conv2d_3d_input"),
    pytest.param(lambda: grad_input_op(G, W, [1, 4, 7, 7], [1, 1], NO_PAD, [1, 1], 1),
                 "grad_output", id="grad_input_wrong_grad_output_shape"),
    pytest.param(lambda: grad_input_op(G, W, [1, 3, 6, 6], [1, 1], NO_PAD, [1, 1], 1),
                 "channels", id="grad_input_channel_mismatch"),
    pytest.param(lambda: grad_input_op(G, W, [1, 4, 6, 6], [0, 1], NO_PAD, [1, 1], 1),
                 "stride", id="grad_input_stride_0"),
    pytest.param(lambda: grad_input_op(G.long(), W, [1, 4, 6, 6], [1, 1], NO_PAD, [1, 1], 1),
                 "dtype", id="grad_input_int64_grad_output"),
    pytest.param(lambda: grad_weight_op(G, X, [2, 4, 2, 2], [1, 1], NO_PAD, [1, 1], 1),
                 "grad_output", id="grad_weight_wrong_grad_output_shape"),
    pytest.param(lambda: grad_weight_op(G, X, [2, 4, 3, 3], [1, 1], NO_PAD, [1, 1], 3),
                 "groups", id="grad_weight_groups_not_dividing"),
    pytest.param(lambda: grad_weight_op(G, X.double(), [2, 4, 3, 3], [1, 1], NO_PAD, [1, 1], 1),
                 "dtype", id="grad_weight_dtype_mismatch"),
    pytest.param(lambda: grad_weight_op(G, X, [2, 4, 3, 3], [1, 1], NO_PAD, [0, 1], 1),
                 "dilation", id="grad_weight_dilation_0"),
]


def test_valid_operator_calls_are_accepted():
    args = ([1, 1], NO_PAD, [1, 1], 1)
    assert conv2d_op(X, W, None, *args).shape == G.shape
    assert grad_input_op(G, W, list(X.shape), *args).shape == X.shape
    assert grad_weight_op(G, X, list(W.shape), *args).shape == W.shape


@pytest.mark.parametrize("call, match", BAD_OPERATOR_CALLS)
def test_operator_refuses_bad_argument(call, match):
    with pytest.raises(ERRORS, match=f"(?i){match}"):
        call()
