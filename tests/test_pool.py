"""cnnops' pooling against torch.nn.functional: values, indices, gradients, memory formats.

Random configurations of every argument (seeded, so every run draws the same ones) run on
the reference kernel (version 1) and the fast kernels (version 2), over input layouts that
pick each of version 2's kernels: NCHW, channels_last, and strided views that fall back to
the reference loop. Max pooling is a selection, so its values and indices must equal
torch's exactly (ties included: the tie and NaN rules are torch's); average pooling is
compared with tolerances from the dtype.
"""

import random
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import cnnops

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]
HALF_DTYPES = [pytest.param(torch.float16, id="float16"), pytest.param(torch.bfloat16, id="bfloat16")]
VERSIONS = [pytest.param(1, id="v1_reference"), pytest.param(2, id="v2_fast")]
# NCHW and channels_last run version 2's layout kernels; 'offset' is NCHW with rows longer
# than W; 'sliced' and 'transposed_hw' have no unit stride along W or C (version 1 runs).
LAYOUTS = ["contiguous", "channels_last", "permuted_nhwc", "offset", "sliced", "transposed_hw"]

TOLERANCES = {  # (rtol, atol) of sums of a few unit-normal values
    torch.float64: (1e-12, 1e-12),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (2e-2, 2e-2),
}


def lay_out(logical: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as `logical` (N, C, H, W), in the memory layout named."""
    n, c, h, w = logical.shape
    if layout == "contiguous":
        return logical.contiguous()
    if layout == "channels_last":
        return logical.contiguous(memory_format=torch.channels_last)
    if layout == "permuted_nhwc":
        return logical.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    if layout == "transposed_hw":
        return logical.transpose(2, 3).contiguous().transpose(2, 3)
    if layout == "sliced":
        big = torch.zeros(n, c, h, 2 * w, dtype=logical.dtype, device=logical.device)
        big[..., ::2] = logical
        return big[..., ::2]
    if layout == "offset":
        big = torch.zeros(n + 1, c + 2, h + 1, w + 3, dtype=logical.dtype, device=logical.device)
        big[1:, 2:, 1:, 3:] = logical
        return big[1:, 2:, 1:, 3:]
    raise AssertionError(layout)


def make_input(shape, dtype=torch.float32, device="cpu", layout="contiguous", distinct=True):
    """Distinct values (a shuffled ramp) unless asked otherwise, so that max pooling's
    gradient has no ties; they are exact in every dtype for the sizes used here."""
    numel = 1
    for s in shape:
        numel *= s
    if distinct:
        values = (torch.randperm(numel, dtype=torch.float64) - numel / 2) / max(numel / 8, 1)
    else:
        values = torch.randn(numel, dtype=torch.float64)
    logical = values.reshape(shape).to(dtype=dtype, device=device)
    return lay_out(logical, layout) if len(shape) == 4 else logical


def assert_same_memory_format(actual, expected):
    for memory_format in (torch.contiguous_format, torch.channels_last):
        if actual.dim() != 4 and memory_format is torch.channels_last:
            continue
        assert (actual.is_contiguous(memory_format=memory_format)
                == expected.is_contiguous(memory_format=memory_format)), (
            f"strides {actual.stride()}, torch's {expected.stride()}")


# ---- random configurations ------------------------------------------------------------


def random_max_config(seed: int):
    rng = random.Random(seed)
    kernel = (rng.randint(1, 4), rng.randint(1, 4))
    dilation = (rng.choice([1, 1, 2]), rng.choice([1, 1, 2, 3]))
    stride = rng.choice([None, (rng.randint(1, 3), rng.randint(1, 3))])
    padding = (rng.randint(0, kernel[0] // 2), rng.randint(0, kernel[1] // 2))
    ceil_mode = rng.random() < 0.5
    span = [dilation[d] * (kernel[d] - 1) + 1 - 2 * padding[d] for d in range(2)]
    shape = (rng.randint(1, 2), rng.randint(1, 5), max(span[0], 1) + rng.randint(0, 9),
             max(span[1], 1) + rng.randint(0, 9))
    kwargs = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                  ceil_mode=ceil_mode)
    return shape, kwargs


def random_avg_config(seed: int):
    rng = random.Random(1000 + seed)
    kernel = (rng.randint(1, 4), rng.randint(1, 4))
    stride = rng.choice([None, (rng.randint(1, 3), rng.randint(1, 3))])
    padding = (rng.randint(0, kernel[0] // 2), rng.randint(0, kernel[1] // 2))
    shape = (rng.randint(1, 2), rng.randint(1, 5), kernel[0] + rng.randint(0, 9),
             kernel[1] + rng.randint(0, 9))
    kwargs = dict(kernel_size=kernel, stride=stride, padding=padding,
                  ceil_mode=rng.random() < 0.5, count_include_pad=rng.random() < 0.5,
                  divisor_override=rng.choice([None, None, 3, -2]))
    return shape, kwargs


def random_adaptive_config(seed: int):
    rng = random.Random(2000 + seed)
    shape = (rng.randint(1, 2), rng.randint(1, 5), rng.randint(1, 13), rng.randint(1, 13))
    # smaller, equal, larger than the input, 1 (global) and None (keep the input's size)
    choices = [1, 2, 3, 5, 7, shape[2], shape[2] + 2, None]
    output_size = (rng.choice(choices), rng.choice(choices + [shape[3]]))
    return shape, output_size


MAX_SEEDS = range(24)
AVG_SEEDS = range(24)
ADAPTIVE_SEEDS = range(16)


def nchw_copy(x):
    """x as a contiguous (NCHW) leaf, for torch's reference values. torch's CUDA channels_last
    pooling kernels disagree with its NCHW and CPU kernels in two places, and cnnops follows
    the latter: average pooling's gradient with padding (pytorch/pytorch#188344, wrong up to
    torch 2.11) and max pooling's index for a window of only -inf (0, not the window's first
    tap). Memory formats are still compared with what torch gives for x itself."""
    return x.detach().contiguous().requires_grad_(x.requires_grad)


def max_pool_both(x, version, **kwargs):
    with cnnops.kernel_version("pool", version):
        return cnnops.max_pool2d(x, return_indices=True, **kwargs)


def max_grad_tolerance(x):
    """Exact on the CPU, where torch and cnnops both add an element's gradients in output
    order; on CUDA torch adds them in another order (atomics, for adaptive max pooling)."""
    if x.device.type == "cpu":
        return dict(rtol=0, atol=0)
    rtol, atol = TOLERANCES[x.dtype]
    return dict(rtol=rtol, atol=atol)


def check_max_pool(x, version, grad=True, **kwargs):
    """cnnops.max_pool2d against F.max_pool2d: values, indices, memory format, gradient."""
    x = x.detach().requires_grad_(grad)
    x_nchw = nchw_copy(x)
    ref_out, ref_idx = F.max_pool2d(x_nchw, return_indices=True, **kwargs)
    native_out, native_idx = F.max_pool2d(x, return_indices=True, **kwargs)
    out, idx = max_pool_both(x, version, **kwargs)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0, equal_nan=True)
    assert idx.dtype == torch.int64
    assert torch.equal(idx, ref_idx), f"indices differ:\n{idx}\n{ref_idx}"
    assert_same_memory_format(out, native_out)
    assert_same_memory_format(idx, native_idx)
    with cnnops.kernel_version("pool", version), torch.no_grad():
        values = cnnops.max_pool2d(x, **kwargs)  # the inference operator: no indices
    torch.testing.assert_close(values, ref_out, rtol=0, atol=0, equal_nan=True)
    assert_same_memory_format(values, native_out)
    if grad:
        grad_output = torch.randn_like(native_out)
        (ref_grad,) = torch.autograd.grad(ref_out, x_nchw, grad_output)
        (native_grad,) = torch.autograd.grad(native_out, x, grad_output)
        with cnnops.kernel_version("pool", version):
            (got,) = torch.autograd.grad(out, x, grad_output)
        torch.testing.assert_close(got, ref_grad, **max_grad_tolerance(x))
        assert_same_memory_format(got, native_grad)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("seed", MAX_SEEDS)
def test_max_pool2d_random_configs(seed, version, layout, device):
    shape, kwargs = random_max_config(seed)
    dtype = torch.float64 if seed % 3 == 0 else torch.float32
    check_max_pool(make_input(shape, dtype, device, layout), version, **kwargs)


def check_avg_pool(x, version, fn, ref_fn, *args, **kwargs):
    x = x.detach().requires_grad_()
    x_nchw = nchw_copy(x)
    ref = ref_fn(x_nchw, *args, **kwargs)
    native = ref_fn(x, *args, **kwargs)
    with cnnops.kernel_version("pool", version):
        out = fn(x, *args, **kwargs)
    rtol, atol = TOLERANCES[x.dtype]
    torch.testing.assert_close(out, ref, rtol=rtol, atol=atol)
    assert_same_memory_format(out, native)
    grad_output = torch.randn_like(native)
    (ref_grad,) = torch.autograd.grad(ref, x_nchw, grad_output)
    (native_grad,) = torch.autograd.grad(native, x, grad_output)
    with cnnops.kernel_version("pool", version):
        (got,) = torch.autograd.grad(out, x, grad_output)
    torch.testing.assert_close(got, ref_grad, rtol=rtol, atol=atol)
    assert_same_memory_format(got, native_grad)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("seed", AVG_SEEDS)
def test_avg_pool2d_random_configs(seed, version, layout, device):
    shape, kwargs = random_avg_config(seed)
    dtype = torch.float64 if seed % 3 == 0 else torch.float32
    x = make_input(shape, dtype, device, layout, distinct=False)
    check_avg_pool(x, version, cnnops.avg_pool2d, F.avg_pool2d, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("seed", ADAPTIVE_SEEDS)
def test_adaptive_pools_random_configs(seed, version, layout, device):
    shape, output_size = random_adaptive_config(seed)
    dtype = torch.float64 if seed % 3 == 0 else torch.float32
    x = make_input(shape, dtype, device, layout, distinct=False)
    check_avg_pool(x, version, cnnops.adaptive_avg_pool2d, F.adaptive_avg_pool2d, output_size)

    x = make_input(shape, dtype, device, layout).requires_grad_()
    ref_out, ref_idx = F.adaptive_max_pool2d(x, output_size, return_indices=True)
    with cnnops.kernel_version("pool", version):
        out, idx = cnnops.adaptive_max_pool2d(x, output_size, return_indices=True)
        grad_output = torch.randn_like(ref_out)
        (got,) = torch.autograd.grad(out, x, grad_output)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)
    assert torch.equal(idx, ref_idx)
    assert_same_memory_format(out, ref_out)
    with cnnops.kernel_version("pool", version), torch.no_grad():
        values = cnnops.adaptive_max_pool2d(x, output_size)  # even windows: max_pool2d's values
    torch.testing.assert_close(values, ref_out, rtol=0, atol=0)
    assert_same_memory_format(values, ref_out)
    (ref_grad,) = torch.autograd.grad(ref_out, x, grad_output)
    torch.testing.assert_close(got, ref_grad, **max_grad_tolerance(x))


# ---- the reference shapes, torch's rules at the edges ------------------------------------

REFERENCE_CASES = [  # (shape, kwargs): the shapes the fast paths are written for
    pytest.param((2, 3, 16, 18), dict(kernel_size=2, stride=2), id="2x2_s2"),
    pytest.param((2, 3, 15, 17), dict(kernel_size=3, stride=2, padding=1), id="3x3_s2_p1"),
    pytest.param((1, 4, 9, 11), dict(kernel_size=3, stride=1, padding=1), id="3x3_s1_p1"),
    pytest.param((1, 2, 13, 17), dict(kernel_size=(3, 2), stride=3, padding=(1, 0),
                                      ceil_mode=True), id="3x2_s3_ceil"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("shape, kwargs", REFERENCE_CASES)
def test_reference_shapes_with_ties(shape, kwargs, version, layout, device):
    """Values from {0, 1, 2} (ReLU outputs tie a lot): the first maximum wins, as in torch."""
    x = lay_out(torch.randint(0, 3, shape).to(torch.float32), layout).to(device)
    check_max_pool(x, version, grad=True, **kwargs)
    check_avg_pool(x, version, cnnops.avg_pool2d, F.avg_pool2d, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [16, 17, 18, 19, 33, 35, 36])
def test_fused_row_kernels(width, dtype, device):
    """2x2 and 3x3 windows of stride 2 or 1 run fused row kernels, eight outputs at a time,
    the last vector of a row overlapping the one before: rows of 8 to 35 interior outputs
    (up to 32 columns, with padding, through the padded planes), with NaN, -inf and ties
    among the values."""
    x = torch.randint(0, 4, (2, 3, 11, width)).to(dtype)
    x[0, 0, 3, 5:9] = float("nan")
    x[0, 1, :, -3:] = float("-inf")
    x[1, 2, 4, :] = float("nan")
    x = x.to(device)
    for kwargs in (dict(kernel_size=2, stride=2), dict(kernel_size=3, stride=2, padding=1),
                   dict(kernel_size=3, stride=2), dict(kernel_size=2, stride=2, padding=1),
                   dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                   dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=2, stride=1),
                   dict(kernel_size=3, stride=1), dict(kernel_size=2, stride=1, padding=1)):
        check_max_pool(x, 2, grad=False, **kwargs)
        expected = F.avg_pool2d(x, **kwargs)
        torch.testing.assert_close(cnnops.avg_pool2d(x, **kwargs), expected, equal_nan=True,
                                   rtol=TOLERANCES[dtype][0], atol=TOLERANCES[dtype][1])
    check_max_pool(x.nan_to_num(), 2, grad=True, kernel_size=3, stride=2, padding=1)
    # -0.0 and 0.0 alternate along each row: every window sees both, and the first one in
    # row-major order wins, as in torch (assert_close does not tell the two zeros apart)
    zeros = torch.zeros(1, 2, 6, width, dtype=dtype)
    zeros[..., ::2] = -0.0
    zeros = zeros.to(device)
    for kwargs in (dict(kernel_size=2, stride=2), dict(kernel_size=3, stride=2, padding=1),
                   dict(kernel_size=3, stride=1, padding=1)):
        ref_out, ref_idx = F.max_pool2d(zeros, return_indices=True, **kwargs)
        out, idx = cnnops.max_pool2d(zeros, return_indices=True, **kwargs)
        values = cnnops.max_pool2d(zeros, **kwargs)  # no grad: the values-only operator
        assert torch.equal(idx, ref_idx)
        assert torch.equal(out.signbit(), ref_out.signbit())
        assert torch.equal(values.signbit(), ref_out.signbit())


AVG_PADDED_PLANE_CASES = [
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=3, stride=1, padding=1, count_include_pad=False),
    dict(kernel_size=2, stride=1, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=1),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=2, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=3, stride=2, padding=1, divisor_override=5),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [(5, 3), (8, 8), (7, 9), (14, 14), (17, 17), (31, 30), (35, 33)])
def test_avg_pool_padded_planes_sum_as_the_reference(hw, dtype):
    """NCHW average pooling of planes with short rows or border windows (2x2 and 3x3, stride 1
    any width, stride 2 up to 32 columns) copies each plane into a zero-padded block and sums
    whole windows in registers, in the reference kernel's order: the same values to the bit,
    and torch's, with NaN and inf where the values hold them. Its gradient against torch's."""
    x = torch.randn(2, 3, *hw, dtype=dtype)
    x[0, 1, 0, 0] = float("nan")
    x[1, 2, -1, -1] = float("inf")
    for kwargs in AVG_PADDED_PLANE_CASES:
        with cnnops.kernel_version("pool", 1):
            reference = cnnops.avg_pool2d(x, **kwargs)
        with cnnops.kernel_version("pool", 2):
            fast = cnnops.avg_pool2d(x, **kwargs)
        assert torch.equal(fast.isnan(), reference.isnan()), kwargs
        assert torch.equal(fast.nan_to_num(), reference.nan_to_num()), kwargs
        torch.testing.assert_close(fast, F.avg_pool2d(x, **kwargs), equal_nan=True,
                                   rtol=TOLERANCES[dtype][0], atol=TOLERANCES[dtype][1])
        # and grad_input, which at stride 1 sums the shares of a zero-padded block likewise
        check_avg_pool(x.nan_to_num(posinf=5.0), 2, cnnops.avg_pool2d, F.avg_pool2d, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [8, 13, 40, 77, 300])
def test_channels_last_channel_chunks(channels, dtype, device):
    """channels_last pooling holds 32 channels' running results in registers, then eight at
    a time, the last eight overlapping the ones before, in blocks of 256 channels. Max: NaN,
    -inf and ties in several chunks and lanes, with indices and without; average and
    adaptive average, forward and backward (a gather per input pixel)."""
    x = torch.randint(0, 3, (2, channels, 7, 9)).to(dtype)
    for c in {0, 5, channels // 2, channels - 1}:
        x[0, c, 1:3, 2:5] = float("nan")
        x[1, c, :4, :4] = float("-inf")
    x = x.contiguous(memory_format=torch.channels_last).to(device)
    for kwargs in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, stride=1),
                   dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1), ceil_mode=True)):
        check_max_pool(x, 2, grad=dtype is torch.float64, **kwargs)
    with torch.no_grad():  # the values-only operator
        torch.testing.assert_close(cnnops.max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1),
                                   rtol=0, atol=0, equal_nan=True)
    x = torch.randn(x.shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
    x = x.to(device)
    for kwargs in (dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
                   dict(kernel_size=(2, 3), stride=(1, 2), ceil_mode=True, divisor_override=5)):
        check_avg_pool(x, 2, cnnops.avg_pool2d, F.avg_pool2d, **kwargs)
    check_avg_pool(x, 2, cnnops.adaptive_avg_pool2d, F.adaptive_avg_pool2d, (3, 4))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("version", VERSIONS)
def test_max_pool_grad_input_takes_indices_in_any_order(version, layout):
    """The index-based adjoint adds each grad_output element at the in-plane index it is
    given, whatever the order (version 2 zeroes grad_input as it goes: channels_last row by
    row, as far as the indices reach): random indices, repeated, running backwards, and
    some outside the plane (skipped)."""
    g = torch.Generator().manual_seed(0)
    x = lay_out(torch.randn(2, 40, 6, 7, dtype=torch.float64), layout)
    dy = lay_out(torch.randn(2, 40, 3, 4, dtype=torch.float64, generator=g), layout)
    idx = torch.randint(0, 42, (2, 40, 3, 4), generator=g)
    idx[0, :8] = torch.arange(41, 29, -1).view(3, 4)  # backwards: the last row first
    idx[1, 3, 0] = torch.tensor([42, -1, 100, 41])
    inside = (idx >= 0) & (idx < 42)
    expected = torch.zeros(2, 40, 42, dtype=torch.float64).scatter_add_(
        2, (idx * inside).view(2, 40, 12), (dy * inside).reshape(2, 40, 12)).view(2, 40, 6, 7)
    with cnnops.kernel_version("pool", version):
        got = torch.ops.cnnops.max_pool2d_grad_input(dy, lay_out(idx, layout), x)
    torch.testing.assert_close(got, expected, rtol=1e-13, atol=1e-13)
    # one output pixel (global pooling), 40 and 13 channels (in channels_last a pixel's
    # channels are zeroed as one run); a gradient of -0.0 gives 0.0, as 0 + -0.0
    for channels in (40, 13):
        dy1 = lay_out(torch.randn(2, channels, 1, 1, dtype=torch.float64, generator=g), layout)
        dy1[0, 1] = -0.0
        idx1 = torch.randint(0, 42, (2, channels, 1, 1), generator=g)
        idx1[1, :3, 0, 0] = torch.tensor([42, -1, 41])
        inside = (idx1 >= 0) & (idx1 < 42)
        expected = torch.zeros(2, channels, 42, dtype=torch.float64).scatter_add_(
            2, (idx1 * inside).view(2, channels, 1), (dy1 * inside).reshape(2, channels, 1))
        x1 = lay_out(torch.randn(2, channels, 6, 7, dtype=torch.float64), layout)
        with cnnops.kernel_version("pool", version):
            got = torch.ops.cnnops.max_pool2d_grad_input(dy1, lay_out(idx1, layout), x1)
        assert torch.equal(got, expected.view(2, channels, 6, 7))
        assert not got[0, 1].signbit().any()


@pytest.mark.parametrize("width", [1024, 1025], ids=["aligned_rows", "odd_width"])
def test_large_gradients_are_streamed_correctly(width):
    """A grad_input of 16 MiB or more is written with non-temporal stores, row by row (avg)
    or plane by plane (max); an odd width starts most rows off the 16-byte boundary."""
    x = torch.randn(1, 4, 1024, width, generator=torch.Generator().manual_seed(width))
    assert x.nbytes >= 16 << 20
    for kwargs in (dict(kernel_size=2, stride=2), dict(kernel_size=3, stride=2, padding=1)):
        check_max_pool(x, 2, **kwargs)
        check_avg_pool(x, 2, cnnops.avg_pool2d, F.avg_pool2d, **kwargs)
    check_avg_pool(x, 2, cnnops.avg_pool2d, F.avg_pool2d, kernel_size=(1, 3), stride=2)
    # channels_last, 13 channels: most pixels' runs start off the 16-byte boundary
    x = torch.randn(1, 13, 448, 401, generator=torch.Generator().manual_seed(width))
    x = x.contiguous(memory_format=torch.channels_last)
    assert x.nbytes >= 8 << 20
    for kwargs in (dict(kernel_size=2, stride=2), dict(kernel_size=3, stride=2, padding=1)):
        check_avg_pool(x, 2, cnnops.avg_pool2d, F.avg_pool2d, **kwargs)


def test_streamed_short_rows_are_written_by_planes():
    """An average-pool grad_input of 8 MiB or more with short rows that are not whole cache
    lines (35 columns) is assembled a plane at a time and streamed in one run."""
    x = torch.randn(32, 64, 35, 35, generator=torch.Generator().manual_seed(35))
    assert x.nbytes >= 8 << 20
    check_avg_pool(x, 2, cnnops.avg_pool2d, F.avg_pool2d, kernel_size=3, stride=1, padding=1,
                   count_include_pad=False)
    check_avg_pool(x, 2, cnnops.avg_pool2d, F.avg_pool2d, kernel_size=2, stride=2)


@pytest.mark.parametrize("channels", [3, 40])
def test_channels_last_avg_backward_adds_in_reference_order(channels):
    """The channels-last average backward divides each output's share out once per output
    row and adds a pixel's shares in output order (p, then q) from zero, as the reference
    does: the same bits, -0.0 gradients included (0 + -0.0 is 0.0)."""
    g = torch.Generator().manual_seed(channels)
    x = torch.randn(2, channels, 23, 19, dtype=torch.float64, generator=g)
    x = x.contiguous(memory_format=torch.channels_last)
    calls = [lambda t: torch.ops.cnnops.avg_pool2d(t, [3, 3], [2, 2], [1, 1], True, False, None),
             lambda t: torch.ops.cnnops.avg_pool2d(t, [4, 2], [1, 2], [2, 0], False, True, None),
             lambda t: torch.ops.cnnops.avg_pool2d(t, [3, 5], [2, 3], [1, 2], True, True, 7),
             lambda t: torch.ops.cnnops.adaptive_avg_pool2d(t, [9, 7])]
    for call in calls:
        y = call(x)
        dy = torch.randn(y.shape, dtype=torch.float64, generator=g)
        dy[0, 0] = -0.0
        dy = dy.contiguous(memory_format=torch.channels_last)
        grads = []
        for version in (1, 2):
            with cnnops.kernel_version("pool", version):
                grads.append(torch.autograd.grad(call(x.requires_grad_()), x, dy)[0])
        assert grads[1].is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(grads[0], grads[1])
        assert not grads[1].signbit()[0, 0].any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("plane", [(7, 7), (70, 70)], ids=["7x7", "70x70"])
def test_global_pooling_with_nan_and_inf(plane, version, layout, device):
    """Output 1x1: the global-pooling fast paths (small planes and long ones), with NaN
    (the last NaN of a plane wins), -inf everywhere, +inf beside -inf, and ties; with indices
    and without (the values-only operator, under no_grad)."""
    shape = (3, 4, *plane)
    x = torch.randn(shape, dtype=torch.float64)
    x[0, 0].view(-1)[[5, 17, 30]] = float("nan")  # several NaNs: the last one's index
    x[0, 1] = float("-inf")  # nothing but -inf: index 0
    x[1, 2] = 1.0  # all equal: the first one
    x[1, 3].view(-1)[-1] = float("nan")  # a NaN at the very end
    x[2, 0].view(-1)[[3, 11]] = 9.0  # a tie for the maximum
    x[2, 3].view(-1)[[6, 9]] = 9.0  # a tie across vector lanes: the later lane's comes first
    x[1, 1].view(-1)[-1] = 9.0  # the maximum last, past the whole vectors of a 7x7 plane
    x[2, 1].view(-1)[[0, 2]] = torch.tensor([-0.0, 0.0], dtype=torch.float64)
    x[2, 1].clamp_(max=0.0)
    # +inf and -inf eight apart, in one vector lane: the kernels' NaN probe (a sum) reads NaN
    x[2, 2].view(-1)[[1, 9]] = torch.tensor([float("inf"), float("-inf")], dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        xd = lay_out(x.to(dtype), layout).to(device)
        for size in (1, (1, 1)):
            ref_out, ref_idx = F.adaptive_max_pool2d(xd, size, return_indices=True)
            with cnnops.kernel_version("pool", version):
                out, idx = cnnops.adaptive_max_pool2d(xd, size, return_indices=True)
                avg = cnnops.adaptive_avg_pool2d(xd, size)
                kernel_max = cnnops.max_pool2d(xd, plane, return_indices=True)
                with torch.no_grad():
                    values = cnnops.adaptive_max_pool2d(xd, size)
            for got in (out, values):
                torch.testing.assert_close(got, ref_out, rtol=0, atol=0, equal_nan=True)
                assert torch.equal(torch.signbit(got[2, 1]), torch.signbit(ref_out[2, 1]))
            assert torch.equal(idx, ref_idx)
            assert torch.equal(kernel_max[1], ref_idx)
            torch.testing.assert_close(avg, F.adaptive_avg_pool2d(xd, size), equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
@pytest.mark.parametrize("version", VERSIONS)
def test_nan_and_inf_in_windows_and_padding(version, layout, device):
    x = torch.randn(2, 3, 9, 10, dtype=torch.float64)
    x[0, 0, 2:5, 3:7] = float("nan")
    x[0, 1, :4, :4] = float("-inf")  # windows of only -inf, some reaching into the padding
    x[1, 2, :, :3] = float("-inf")
    x[1, 0, 4, ::3] = float("nan")
    x = lay_out(x, layout).to(device)
    for kwargs in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, stride=1),
                   dict(kernel_size=(3, 4), stride=(2, 3), padding=(1, 2), dilation=(2, 1),
                        ceil_mode=True)):
        check_max_pool(x, version, grad=False, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("version", VERSIONS)
def test_window_entirely_in_padding(version, layout, device):
    """kernel 2, dilation 3, padding 1 over 2 pixels: the taps -1 and 2 both miss the input.
    torch reports -inf at its (out-of-plane) start index; the gradient there is zero."""
    x = lay_out(torch.randn(1, 2, 2, 2), layout).to(device).requires_grad_()
    kwargs = dict(kernel_size=2, stride=1, padding=1, dilation=3)
    ref_out, ref_idx = F.max_pool2d(nchw_copy(x), return_indices=True, **kwargs)
    out, idx = max_pool_both(x, version, **kwargs)
    assert torch.equal(out, ref_out) and torch.equal(idx, ref_idx)
    assert out.isneginf().all() and (idx >= 4).all()
    with cnnops.kernel_version("pool", version):
        (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    assert torch.equal(grad, torch.zeros_like(x))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("version", VERSIONS)
def test_ceil_mode_last_window_starts_inside(version, device):
    """ceil_mode drops a last window that would start in the right padding (torch's rule)."""
    x = make_input((1, 1, 5, 5), device=device)
    for kwargs in (dict(kernel_size=2, stride=2, padding=1, ceil_mode=True),
                   dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                   dict(kernel_size=2, stride=3, ceil_mode=True)):
        check_max_pool(x, version, **kwargs)
        check_avg_pool(x, version, cnnops.avg_pool2d, F.avg_pool2d, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("version", VERSIONS)
def test_batch_zero_and_unbatched(version, device):
    for shape in ((0, 3, 7, 9), (3, 7, 9), (2, 1, 1, 1), (1, 3, 1, 9), (2, 2, 9, 1)):
        x = make_input(shape, device=device)
        check_max_pool(x, version, kernel_size=(1, 1) if 1 in shape[-2:] else 2)
        check_avg_pool(x, version, cnnops.avg_pool2d, F.avg_pool2d, 1, ceil_mode=True)
        check_avg_pool(x, version, cnnops.adaptive_avg_pool2d, F.adaptive_avg_pool2d, (2, None))
        ref = F.adaptive_max_pool2d(x, (None, 3), return_indices=True)
        with cnnops.kernel_version("pool", version):
            got = cnnops.adaptive_max_pool2d(x, (None, 3), return_indices=True)
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
        assert got[0].stride() == ref[0].stride()


def test_unbatched_permuted_input_gives_a_contiguous_result():
    x = torch.randn(6, 5, 4).permute(2, 0, 1)  # (C, H, W) with C innermost
    for fn, ref_fn, args in ((cnnops.max_pool2d, F.max_pool2d, (2,)),
                             (cnnops.avg_pool2d, F.avg_pool2d, (2,)),
                             (cnnops.adaptive_avg_pool2d, F.adaptive_avg_pool2d, ((2, 3),)),
                             (cnnops.adaptive_max_pool2d, F.adaptive_max_pool2d, ((2, 3),))):
        out, ref = fn(x, *args), ref_fn(x, *args)
        assert out.stride() == ref.stride()
        torch.testing.assert_close(out, ref)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_half_precision_cuda(layout, dtype):
    device = "cuda"
    for seed in range(6):
        shape, kwargs = random_max_config(seed)
        check_max_pool(make_input(shape, dtype, device, layout, distinct=False), 2, **kwargs)
        shape, kwargs = random_avg_config(seed)
        x = make_input(shape, dtype, device, layout, distinct=False)
        check_avg_pool(x, 2, cnnops.avg_pool2d, F.avg_pool2d, **kwargs)
        shape, output_size = random_adaptive_config(seed)
        x = make_input(shape, dtype, device, layout, distinct=False)
        check_avg_pool(x, 2, cnnops.adaptive_avg_pool2d, F.adaptive_avg_pool2d, output_size)


# ---- indices as torch's, deterministic backward, the portable build ---------------------


class OpRecorder(TorchDispatchMode):
    """The cnnops operators a block of code calls."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.name())
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("device", DEVICES)
def test_indices_are_computed_only_when_needed(device):
    x = torch.randn(2, 3, 8, 8, device=device)
    cases = [  # (grad mode, input requires grad, return_indices) -> operator
        ((False, True, False), "cnnops::max_pool2d"),
        ((True, False, False), "cnnops::max_pool2d"),
        ((True, True, False), "cnnops::max_pool2d_with_indices"),
        ((False, False, True), "cnnops::max_pool2d_with_indices"),
    ]
    for (grad_mode, requires_grad, return_indices), expected in cases:
        recorder = OpRecorder()
        with torch.set_grad_enabled(grad_mode), recorder:
            cnnops.max_pool2d(x.clone().requires_grad_(requires_grad), 2,
                              return_indices=return_indices)
        assert [n for n in recorder.names if n.startswith("cnnops::")] == [expected]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_indices_feed_max_unpool2d(layout, device):
    x = make_input((2, 3, 8, 10), device=device, layout=layout)
    out, idx = cnnops.max_pool2d(x, 2, return_indices=True)
    ref_out, ref_idx = F.max_pool2d(x, 2, return_indices=True)
    torch.testing.assert_close(F.max_unpool2d(out, idx, 2, output_size=x.shape[-2:]),
                               F.max_unpool2d(ref_out, ref_idx, 2, output_size=x.shape[-2:]))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_cpu_backward_is_deterministic_across_thread_counts(layout):
    """Overlapping windows over tied values: many additions land on one element; the sums
    must not depend on the number of threads."""
    x = lay_out(torch.randint(0, 2, (4, 16, 33, 35)).float(), layout).requires_grad_()
    grads = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, threads):
            torch.set_num_threads(n)
            for fn in (lambda t: cnnops.max_pool2d(t, 3, 1, 1),
                       lambda t: cnnops.avg_pool2d(t, 5, 2, 2, ceil_mode=True),
                       lambda t: cnnops.adaptive_avg_pool2d(t, (9, 7))):
                out = fn(x)
                grads.append(torch.autograd.grad(out, x, torch.randn(out.shape,
                             generator=torch.Generator().manual_seed(1)))[0])
    finally:
        torch.set_num_threads(threads)
    for i in range(3, len(grads)):
        assert torch.equal(grads[i], grads[i % 3])


def test_fast_kernels_match_reference_kernels():
    x = make_input((2, 5, 17, 19), torch.float64, distinct=False)
    for layout in ("contiguous", "channels_last"):
        xl = lay_out(x, layout)
        for kwargs in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=(2, 4))):
            results = []
            for version in (1, 2):
                with cnnops.kernel_version("pool", version):
                    results.append((cnnops.max_pool2d(xl, return_indices=True, **kwargs),
                                    cnnops.avg_pool2d(xl, **kwargs),
                                    cnnops.adaptive_avg_pool2d(xl, (5, 6))))
            (m1, a1, g1), (m2, a2, g2) = results
            assert torch.equal(m1[0], m2[0]) and torch.equal(m1[1], m2[1])
            torch.testing.assert_close(a1, a2, rtol=1e-13, atol=1e-13)
            torch.testing.assert_close(g1, g2, rtol=1e-13, atol=1e-13)


def test_portable_build_matches_torch():
    """CNNOPS_CPU_ISA=portable runs version 2's portable build (the AVX2 one otherwise)."""
    code = """
import torch, torch.nn.functional as F, cnnops
assert cnnops._ops._C.cpu_isa() == "portable"
torch.manual_seed(0)
for layout, shape in ((torch.contiguous_format, (2, 3, 15, 37)), (torch.channels_last, (2, 3, 15, 17))):
    x = torch.randn(shape).contiguous(memory_format=layout).requires_grad_()
    for k, s, p in ((2, 2, 0), (3, 2, 1)):
        o, i = cnnops.max_pool2d(x, k, s, p, return_indices=True)
        ro, ri = F.max_pool2d(x, k, s, p, return_indices=True)
        assert torch.equal(o, ro) and torch.equal(i, ri)
        g = torch.randn_like(o)
        assert torch.equal(torch.autograd.grad(o, x, g)[0], torch.autograd.grad(ro, x, g)[0])
        a, ra = cnnops.avg_pool2d(x, k, s, p), F.avg_pool2d(x, k, s, p)
        torch.testing.assert_close(a, ra)
        torch.testing.assert_close(torch.autograd.grad(a, x, g)[0], torch.autograd.grad(ra, x, g)[0])
    for size in (1, (4, 5)):
        torch.testing.assert_close(cnnops.adaptive_avg_pool2d(x, size), F.adaptive_avg_pool2d(x, size))
        assert torch.equal(cnnops.adaptive_max_pool2d(x, size, True)[1],
                           F.adaptive_max_pool2d(x, size, True)[1])
print("ok")
"""
    import os

    env = dict(os.environ, CNNOPS_CPU_ISA="portable")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")


def test_functional_module_and_keywords_match_torch():
    x = make_input((2, 4, 9, 8))
    assert cnnops.functional.max_pool2d is cnnops.max_pool2d
    torch.testing.assert_close(
        cnnops.max_pool2d(input=x, kernel_size=3, stride=2, padding=1, dilation=1,
                          ceil_mode=True, return_indices=False),
        F.max_pool2d(input=x, kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True,
                     return_indices=False))
    torch.testing.assert_close(
        cnnops.avg_pool2d(input=x, kernel_size=3, stride=[], padding=1, ceil_mode=True,
                          count_include_pad=False, divisor_override=None),
        F.avg_pool2d(input=x, kernel_size=3, stride=[], padding=1, ceil_mode=True,
                     count_include_pad=False, divisor_override=None))
    torch.testing.assert_close(cnnops.adaptive_avg_pool2d(input=x, output_size=[3, None]),
                               F.adaptive_avg_pool2d(input=x, output_size=[3, None]))
    torch.testing.assert_close(
        cnnops.adaptive_max_pool2d(input=x, output_size=(None, 5), return_indices=True),
        F.adaptive_max_pool2d(input=x, output_size=(None, 5), return_indices=True))
