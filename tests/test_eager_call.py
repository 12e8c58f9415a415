"""cnnops._ops.eager_call: the functional API's calls that record no gradient skip the Python
autograd layer of torch.library; those must give the same results, record the same graph
(none) and leave every other call as it was."""

import pytest
import torch

import cnnops
from cnnops import _ops


def calls():
    """(name, function of the operands, operands): one call per functional operator."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    w = torch.randn(6, 4, 3, 3, generator=g)
    b = torch.randn(6, generator=g)
    dw = torch.randn(4, 1, 3, 3, generator=g)
    pw = torch.randn(5, 4, 1, 1, generator=g)
    return [
        ("conv2d", lambda x, w, b: cnnops.conv2d(x, w, b, 1, 1), (x, w, b)),
        ("conv2d_unbatched", lambda x, w, b: cnnops.conv2d(x[0], w, b, 1, 1), (x, w, b)),
        ("max_pool2d", lambda x: cnnops.max_pool2d(x, 2), (x,)),
        ("max_pool2d_indices", lambda x: cnnops.max_pool2d(x, 3, 2, 1, return_indices=True)[0],
         (x,)),
        ("avg_pool2d", lambda x: cnnops.avg_pool2d(x, 3, 2, 1), (x,)),
        ("adaptive_avg_pool2d", lambda x: cnnops.adaptive_avg_pool2d(x, 3), (x,)),
        ("adaptive_max_pool2d", lambda x: cnnops.adaptive_max_pool2d(x, 3), (x,)),
        ("adaptive_max_pool2d_even", lambda x: cnnops.adaptive_max_pool2d(x, 4), (x,)),
        ("separable", lambda x, dw, pw: cnnops.depthwise_separable_conv2d(x, dw, pw, padding=1),
         (x, dw, pw)),
    ]


CASES = [pytest.param(fn, operands, id=name) for name, fn, operands in calls()]


class _CountingTorchC:
    """torch._C as eager_call sees it, counting the calls it sends below the Autograd key."""

    def __init__(self):
        self.count = 0

    def __getattr__(self, name):
        return getattr(torch._C, name)

    def _AutoDispatchBelowAutograd(self):
        self.count += 1
        return torch._C._AutoDispatchBelowAutograd()


@pytest.fixture
def below_autograd_count(monkeypatch):
    counting = _CountingTorchC()
    monkeypatch.setattr(_ops, "_torch_C", counting)
    return counting


@pytest.mark.parametrize("fn, operands", CASES)
def test_call_without_gradient_skips_autograd_and_matches(fn, operands, below_autograd_count):
    recorded = fn(*[t.clone().requires_grad_() for t in operands])
    assert recorded.grad_fn is not None
    assert below_autograd_count.count == 0, "a call that records a gradient went below autograd"
    plain = fn(*operands)
    assert below_autograd_count.count >= 1, "a call that records nothing kept the autograd layer"
    assert plain.grad_fn is None and not plain.requires_grad
    torch.testing.assert_close(plain, recorded.detach(), rtol=0, atol=0)
    with torch.no_grad():
        under_no_grad = fn(*[t.clone().requires_grad_() for t in operands])
    assert under_no_grad.grad_fn is None and not under_no_grad.requires_grad
    torch.testing.assert_close(under_no_grad, plain, rtol=0, atol=0)


class Tagged(torch.Tensor):
    """A tensor subclass that only passes through __torch_function__: it must keep the
    operator's own dispatch path."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return super().__torch_function__(func, types, args, kwargs or {})


def test_subclass_and_compile_keep_the_autograd_layer(below_autograd_count):
    x = torch.randn(1, 2, 6, 6)
    expected = cnnops.max_pool2d(x, 2)
    before = below_autograd_count.count
    out = cnnops.max_pool2d(x.as_subclass(Tagged), 2)
    torch.testing.assert_close(out.as_subclass(torch.Tensor), expected, rtol=0, atol=0)
    compiled = torch.compile(lambda t: cnnops.max_pool2d(t, 2), fullgraph=True,
                             backend="eager")
    torch.testing.assert_close(compiled(x), expected, rtol=0, atol=0)
    assert below_autograd_count.count == before
