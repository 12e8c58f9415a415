"""torch.autocast: the cnnops operators follow native conv2d and pooling (python/cnnops/_autocast.py).

CUDA: conv2d, conv2d_bias_relu and depthwise_separable_conv2d run in the autocast dtype, as
native conv2d does; pooling runs in its input's dtype, as native pooling does.
CPU: native conv2d runs in bfloat16 there, but the cnnops CPU kernels have no bfloat16, so
cnnops runs in float32 instead (lower-precision operands are cast up) and returns float32.
"""

import pytest
import torch
import torch.nn.functional as F

import cnnops
from cnnops import models

# (input shape, weight shape, groups): plain, grouped and depthwise.
CONVS = [
    ((2, 6, 9, 7), (8, 6, 3, 3), 1),
    ((2, 6, 9, 7), (4, 3, 3, 2), 2),
    ((2, 6, 9, 7), (6, 1, 3, 3), 6),
]
CONV_IDS = ["plain", "grouped", "depthwise"]
POOLS = [
    (lambda f, x: f.max_pool2d(x, 3, 2, 1), "max_pool2d"),
    (lambda f, x: f.avg_pool2d(x, 3, 2, 1), "avg_pool2d"),
    (lambda f, x: f.adaptive_avg_pool2d(x, (2, 3)), "adaptive_avg_pool2d"),
    (lambda f, x: f.adaptive_max_pool2d(x, (2, 3)), "adaptive_max_pool2d"),
]

# A bfloat16 result has 8 significant bits (an ulp is 2^-8 of the value); float16 has 11.
# These bound the rounding of a result, not of its operands (those are compared rounded).
BF16 = dict(rtol=1e-2, atol=1e-2)
FP16 = dict(rtol=5e-3, atol=5e-3)


def separable_native(x, dw, pw, dw_b, pw_b):
    return F.conv2d(F.conv2d(x, dw, dw_b, 1, 1, 1, x.shape[1]), pw, pw_b)


# ---- CPU ------------------------------------------------------------------------------------


@pytest.mark.parametrize("input_shape, weight_shape, groups", CONVS, ids=CONV_IDS)
def test_cpu_autocast_conv2d_runs_in_float32(input_shape, weight_shape, groups):
    x = torch.randn(input_shape, requires_grad=True)
    w = torch.randn(weight_shape, requires_grad=True)
    b = torch.randn(weight_shape[0], requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = cnnops.conv2d(x, w, b, padding=1, groups=groups)
        native = F.conv2d(x, w, b, padding=1, groups=groups)
    assert native.dtype == torch.bfloat16  # what torch does; cnnops differs, on purpose:
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, cnnops.conv2d(x, w, b, padding=1, groups=groups),
                               rtol=0, atol=0)
    # Native rounds the operands to bfloat16, accumulates in float32 and rounds the result:
    # the same arithmetic on the rounded operands differs from it by the final rounding only.
    rounded = [t.detach().bfloat16().float() for t in (x, w, b)]
    torch.testing.assert_close(cnnops.conv2d(*rounded, padding=1, groups=groups),
                               native.float(), **BF16)

    grad = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, w, b), grad)
    refs = torch.autograd.grad(F.conv2d(x, w, b, padding=1, groups=groups), (x, w, b), grad)
    for g, r in zip(grads, refs):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


def test_cpu_autocast_casts_a_bfloat16_input_up():
    # A native layer autocast ran in bfloat16 feeds a cnnops conv: without the rule the CPU
    # kernel would refuse the bfloat16 input (it has none), or the mixed dtypes.
    x = torch.randn(2, 4, 8, 8)
    w = torch.randn(5, 4, 3, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = F.conv2d(x, torch.randn(4, 4, 1, 1))
        assert hidden.dtype == torch.bfloat16
        out = cnnops.conv2d(hidden, w, padding=1)
        native = F.conv2d(hidden, w, padding=1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, cnnops.conv2d(hidden.float(), w.detach(), padding=1),
                               rtol=0, atol=0)
    w_rounded = w.detach().bfloat16().float()  # hidden is bfloat16 already; native rounds w
    torch.testing.assert_close(cnnops.conv2d(hidden.float(), w_rounded, padding=1),
                               native.float(), **BF16)
    out.sum().backward()
    assert w.grad is not None and w.grad.dtype == torch.float32


def test_cpu_bfloat16_without_autocast_is_still_refused():
    with pytest.raises(TypeError, match="BFloat16"):
        cnnops.conv2d(torch.randn(1, 2, 5, 5, dtype=torch.bfloat16),
                      torch.randn(3, 2, 3, 3, dtype=torch.bfloat16))


def test_cpu_autocast_separable_and_fused():
    x = torch.randn(2, 4, 9, 7, requires_grad=True)
    dw = torch.randn(8, 1, 3, 3, requires_grad=True)
    pw = torch.randn(5, 8, 1, 1, requires_grad=True)
    dw_b, pw_b = torch.randn(8), torch.randn(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = cnnops.depthwise_separable_conv2d(x, dw, pw, dw_b, pw_b, padding=1)
        native = separable_native(x, dw, pw, dw_b, pw_b)
        with torch.no_grad():
            fused = cnnops.functional.conv2d_bias_relu(x.bfloat16(), pw[:, :4], pw_b)
    assert out.dtype == fused.dtype == torch.float32
    torch.testing.assert_close(out, native.float(), rtol=3e-2, atol=5e-2)
    torch.testing.assert_close(
        fused, F.relu(F.conv2d(x.detach().bfloat16().float(), pw[:, :4].detach(), pw_b)),
        rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(out.sum(), (x, dw, pw))
    refs = torch.autograd.grad(separable_native(x, dw, pw, dw_b, pw_b).sum(), (x, dw, pw))
    for g, r in zip(grads, refs):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("pool, name", POOLS, ids=[name for _, name in POOLS])
def test_cpu_autocast_pooling(pool, name):
    x = torch.randn(2, 3, 9, 7, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, native = pool(cnnops, x), pool(F, x)
        # float32 in: float32 out, as native (pooling is on no autocast list).
        assert out.dtype == native.dtype == torch.float32
        torch.testing.assert_close(out, native, rtol=1e-6, atol=1e-6)
        # bfloat16 in: native pools in bfloat16, cnnops (no bfloat16 CPU kernel) in float32.
        low = x.detach().bfloat16()
        out_low, native_low = pool(cnnops, low), pool(F, low)
    assert out_low.dtype == torch.float32 and native_low.dtype == torch.bfloat16
    torch.testing.assert_close(out_low, pool(F, low.float()), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out_low, native_low.float(), **BF16)
    (grad,) = torch.autograd.grad(out.sum(), x)
    (ref,) = torch.autograd.grad(pool(F, x).sum(), x)
    torch.testing.assert_close(grad, ref)


def test_cpu_autocast_model_trains_and_compiles():
    torch.manual_seed(0)
    model = models.simple_cnn().eval()  # eval: no dropout, so eager and compiled agree
    x = torch.randn(2, 1, 28, 28)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")(x)
    # The final Linear is on the CPU's bfloat16 list; the cnnops layers before it ran in float32.
    assert out.dtype == compiled.dtype == torch.bfloat16
    torch.testing.assert_close(compiled, out, rtol=0, atol=0)
    out.float().square().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


# ---- CUDA -----------------------------------------------------------------------------------

CUDA_DTYPES = [torch.float16, torch.bfloat16]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
@pytest.mark.parametrize("input_shape, weight_shape, groups", CONVS, ids=CONV_IDS)
def test_cuda_autocast_conv2d_runs_in_the_autocast_dtype(dtype, input_shape, weight_shape, groups):
    x = torch.randn(input_shape, device="cuda", requires_grad=True)
    w = torch.randn(weight_shape, device="cuda", requires_grad=True)
    b = torch.randn(weight_shape[0], device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=dtype):
        out = cnnops.conv2d(x, w, b, padding=1, groups=groups)
        native = F.conv2d(x, w, b, padding=1, groups=groups)
        with torch.no_grad():
            fused = cnnops.functional.conv2d_bias_relu(x, w, b, padding=1, groups=groups)
    assert out.dtype == native.dtype == fused.dtype == dtype
    tol = FP16 if dtype == torch.float16 else BF16
    torch.testing.assert_close(out, native, **tol)
    torch.testing.assert_close(fused, native.relu(), **tol)
    grad = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, w, b), grad)
    refs = torch.autograd.grad(native, (x, w, b), grad)
    for g, r in zip(grads, refs):
        assert g.dtype == r.dtype == torch.float32
        torch.testing.assert_close(g, r, rtol=5e-2, atol=5e-2)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
def test_cuda_autocast_separable(dtype):
    x = torch.randn(2, 4, 9, 7, device="cuda", requires_grad=True)
    dw = torch.randn(8, 1, 3, 3, device="cuda", requires_grad=True)
    pw = torch.randn(5, 8, 1, 1, device="cuda", requires_grad=True)
    dw_b, pw_b = torch.randn(8, device="cuda"), torch.randn(5, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        out = cnnops.depthwise_separable_conv2d(x, dw, pw, dw_b, pw_b, padding=1)
        native = separable_native(x, dw, pw, dw_b, pw_b)
    assert out.dtype == native.dtype == dtype
    torch.testing.assert_close(out, native, rtol=5e-2, atol=1e-1)
    grads = torch.autograd.grad(out.float().sum(), (x, dw, pw))
    refs = torch.autograd.grad(native.float().sum(), (x, dw, pw))
    for g, r in zip(grads, refs):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, r, rtol=5e-2, atol=1e-1)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
@pytest.mark.parametrize("pool, name", POOLS, ids=[name for _, name in POOLS])
def test_cuda_autocast_pooling_keeps_the_input_dtype(pool, name, dtype):
    x = torch.randn(2, 3, 9, 7, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        for t in (x, x.to(dtype)):
            out, native = pool(cnnops, t), pool(F, t)
            assert out.dtype == native.dtype == t.dtype
            torch.testing.assert_close(out, native)
