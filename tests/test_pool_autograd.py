"""Pooling's autograd: float64 gradcheck / gradgradcheck, torch.library.opcheck of every
pooling operator, torch.compile(fullgraph=True) against eager."""

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import cnnops

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
VERSIONS = [pytest.param(1, id="v1_reference"), pytest.param(2, id="v2_fast")]
ops = torch.ops.cnnops


def distinct_input(shape, layout="contiguous", device="cpu"):
    """float64 values at least 0.1 apart, so that gradcheck's perturbations (1e-6) never
    move a maximum to another element."""
    numel = 1
    for s in shape:
        numel *= s
    x = (torch.randperm(numel, dtype=torch.float64) / 10).reshape(shape).to(device)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x.requires_grad_()


def pool_case(name, fn, shape=(1, 2, 4, 5), layout="contiguous"):
    return pytest.param(fn, shape, layout, id=name)


# Tiny on purpose: gradgradcheck perturbs every element one at a time.
GRADCHECK_CASES = [
    pool_case("max_2x2", lambda x: cnnops.max_pool2d(x, 2)),
    pool_case("max_3x3_s2_p1_ceil", lambda x: cnnops.max_pool2d(x, 3, 2, 1, ceil_mode=True)),
    pool_case("max_overlapping_dilated", lambda x: cnnops.max_pool2d(x, (2, 3), 1, (1, 1), 2)),
    pool_case("max_channels_last", lambda x: cnnops.max_pool2d(x, 3, 2, 1), (1, 3, 4, 4),
              "channels_last"),
    pool_case("avg_3x3_s2_p1", lambda x: cnnops.avg_pool2d(x, 3, 2, 1)),
    pool_case("avg_ceil_exclude_pad", lambda x: cnnops.avg_pool2d(x, (3, 2), (2, 1), 1, True, False)),
    pool_case("avg_divisor_override", lambda x: cnnops.avg_pool2d(x, 2, 1, divisor_override=3)),
    pool_case("avg_channels_last", lambda x: cnnops.avg_pool2d(x, 2, 1, 1), (1, 3, 3, 4),
              "channels_last"),
    pool_case("adaptive_avg_3x4", lambda x: cnnops.adaptive_avg_pool2d(x, (3, 4))),
    pool_case("adaptive_avg_global", lambda x: cnnops.adaptive_avg_pool2d(x, 1)),
    pool_case("adaptive_avg_upsampling", lambda x: cnnops.adaptive_avg_pool2d(x, (7, 8)), (1, 2, 3, 4)),
    # the values-only inference operator, differentiable through recomputed indices
    pool_case("max_values_only_3x3_s2_p1", lambda x: ops.max_pool2d(x, [3, 3], [2, 2], [1, 1],
                                                                      [1, 1], False)),
    pool_case("adaptive_max_3x4", lambda x: cnnops.adaptive_max_pool2d(x, (3, 4))),
    pool_case("adaptive_max_global_channels_last", lambda x: cnnops.adaptive_max_pool2d(x, 1),
              (1, 3, 3, 4), "channels_last"),
    pool_case("unbatched", lambda x: cnnops.max_pool2d(x, 2, 1) + cnnops.avg_pool2d(x, 2, 1),
              (2, 3, 4)),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("fn, shape, layout", GRADCHECK_CASES)
def test_gradcheck_and_gradgradcheck(fn, shape, layout, version, device):
    x = distinct_input(shape, layout, device)
    with cnnops.kernel_version("pool", version):
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("version", VERSIONS)
def test_third_order_through_the_gather(version):
    """max_pool2d_grad_input's backward is the gather, whose backward is the scatter again."""
    x = distinct_input((1, 2, 4, 5))
    _, indices = ops.max_pool2d_with_indices(x, [2, 2], [1, 1], [0, 0], [1, 1], False)
    dy = torch.randn(indices.shape, dtype=torch.float64, requires_grad=True)
    with cnnops.kernel_version("pool", version):
        assert torch.autograd.gradgradcheck(lambda g: ops.max_pool2d_grad_input(g, indices, x), (dy,))
        assert torch.autograd.gradgradcheck(lambda t: ops.max_pool2d_gather(t, indices),
                                            (torch.randn_like(x).requires_grad_(),))


def opcheck_args(device, layout):
    x = distinct_input((2, 3, 7, 6), layout, device)
    pool = ([3, 3], [2, 2], [1, 1], True)  # kernel_size, stride, padding, ceil_mode
    out, idx = ops.max_pool2d_with_indices(x, pool[0], pool[1], pool[2], [1, 1], pool[3])
    avg_args = (*pool, False, None)
    dy = torch.randn_like(out).requires_grad_()
    return {
        "max_pool2d_with_indices": (x, pool[0], pool[1], pool[2], [1, 2], pool[3]),
        "max_pool2d": (x, pool[0], pool[1], pool[2], [1, 2], pool[3]),
        "adaptive_max_pool2d": (x, [3, 4]),
        "max_pool2d_grad_input": (dy, idx, x),
        "max_pool2d_gather": (x, idx),
        "avg_pool2d": (x, *avg_args),
        "avg_pool2d_divisor": (x, [2, 3], [1, 2], [1, 0], False, True, 5),
        "avg_pool2d_grad_input": (dy, x, *avg_args),
        "adaptive_avg_pool2d": (x, [4, 1]),
        "adaptive_avg_pool2d_global": (x, [1, 1]),
        "adaptive_avg_pool2d_grad_input": (torch.randn(2, 3, 4, 1, dtype=torch.float64,
                                                       device=device, requires_grad=True), x),
    }


OPCHECK_NAMES = ["max_pool2d_with_indices", "max_pool2d", "adaptive_max_pool2d",
                 "max_pool2d_grad_input", "max_pool2d_gather", "avg_pool2d", "avg_pool2d_divisor", "avg_pool2d_grad_input",
                 "adaptive_avg_pool2d", "adaptive_avg_pool2d_global",
                 "adaptive_avg_pool2d_grad_input"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("name", OPCHECK_NAMES)
def test_opcheck(name, layout, device):
    op = getattr(ops, name.removesuffix("_divisor").removesuffix("_global"))
    torch.library.opcheck(op, opcheck_args(device, layout)[name])


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph_matches_eager(device):
    def net(x):
        y = cnnops.max_pool2d(x, 3, 2, 1)
        y = cnnops.avg_pool2d(y, 2, ceil_mode=True, count_include_pad=False)
        a, idx = cnnops.adaptive_max_pool2d(y, (2, 3), return_indices=True)
        return (cnnops.adaptive_avg_pool2d(y, 1).sum() + a.sum() + idx.sum() * 0,
                cnnops.max_pool2d(y, 2, return_indices=True)[1])

    counter = CompileCounterWithBackend("inductor")
    compiled = torch.compile(net, fullgraph=True, backend=counter)
    for layout in ("contiguous", "channels_last"):
        x = distinct_input((2, 3, 13, 11), layout, device)
        out, idx = compiled(x)
        ref_out, ref_idx = net(x)
        torch.testing.assert_close(out, ref_out)
        assert torch.equal(idx, ref_idx)
        (grad,) = torch.autograd.grad(out, x)
        (ref_grad,) = torch.autograd.grad(ref_out, x)
        torch.testing.assert_close(grad, ref_grad)
    assert counter.frame_count >= 1
