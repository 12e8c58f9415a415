"""cnnops._ops.eager_call: the functional API's calls skip the Python autograd layer of
torch.library, going below autograd where they record no gradient and through cnnops' own
autograd.Function of the same formula where they do; those must give the same results and
gradients (to second order), record the same graph (none, or one node) and leave every other
call as it was."""

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


def _recorded_by_cnnops(t: torch.Tensor) -> bool:
    """Whether t's autograd graph holds a node of cnnops' own autograd.Function."""
    nodes, seen = [t.grad_fn], set()
    while nodes:
        node = nodes.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if type(node).__name__.startswith("cnnops_"):
            return True
        nodes.extend(next_node for next_node, _ in node.next_functions)
    return False


@pytest.mark.parametrize("fn, operands", CASES)
def test_call_without_gradient_skips_autograd_and_matches(fn, operands, below_autograd_count):
    recorded = fn(*[t.clone().requires_grad_() for t in operands])
    assert _recorded_by_cnnops(recorded), recorded.grad_fn
    before = below_autograd_count.count
    plain = fn(*operands)
    assert below_autograd_count.count > before, "a call that records nothing kept autograd"
    assert plain.grad_fn is None and not plain.requires_grad
    torch.testing.assert_close(plain, recorded.detach(), rtol=0, atol=0)
    with torch.no_grad():
        under_no_grad = fn(*[t.clone().requires_grad_() for t in operands])
    assert under_no_grad.grad_fn is None and not under_no_grad.requires_grad
    torch.testing.assert_close(under_no_grad, plain, rtol=0, atol=0)


def _gradients(fn, operands):
    """The output, its gradients and the gradients of their squared sum (second order)."""
    leaves = [t.clone().requires_grad_() for t in operands]
    out = fn(*leaves)
    grad_out = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    first = torch.autograd.grad(out, leaves, grad_out, create_graph=True)
    second = torch.autograd.grad(sum((g * g).sum() for g in first), leaves, allow_unused=True)
    return out, first, second


@pytest.mark.parametrize("fn, operands", CASES)
def test_recorded_call_matches_the_library_autograd(fn, operands, monkeypatch):
    ours = _gradients(fn, operands)
    monkeypatch.setattr(_ops, "_EAGER_FUNCTIONS", {})  # every call through torch.library's
    library = _gradients(fn, operands)
    assert library[0].grad_fn is not None and not _recorded_by_cnnops(library[0])
    torch.testing.assert_close(ours, library, rtol=0, atol=0)


def test_functorch_transforms_keep_the_autograd_layer(monkeypatch):
    class Unused:
        arg_count = 7

        @staticmethod
        def apply(*args):
            pytest.fail("eager_call used cnnops' autograd.Function under torch.func.grad")

    monkeypatch.setitem(_ops._EAGER_FUNCTIONS, _ops.ops.conv2d, Unused)
    x, w = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3)
    # torch.library's autograd layer does not take torch.func's transforms (its Function has
    # no setup_context method): the call reaches it and stops there, as it did before
    with pytest.raises(RuntimeError, match="functorch transforms"):
        torch.func.grad(lambda t: cnnops.conv2d(t, w, padding=1).sum())(x)


def test_autocast_keeps_the_autograd_layer():
    # autocast's rule casts the operands (bfloat16 -> float32 on the CPU) below the call; the
    # autograd layer must save the cast operands, which it does when the operator takes them
    x = torch.randn(1, 2, 6, 6).bfloat16().requires_grad_()
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = cnnops.conv2d(x, w, padding=1)
    assert out.dtype == torch.float32 and not _recorded_by_cnnops(out)
    grad_x, grad_w = torch.autograd.grad(out.sum(), (x, w))
    assert grad_x.dtype == torch.bfloat16 and grad_w.dtype == torch.float32


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
