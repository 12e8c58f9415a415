"""The pooling modules: drop-in twins of torch.nn's, same repr and results."""

import pytest
import torch

import cnnops.nn as cnn

CASES = [
    ("MaxPool2d", dict(kernel_size=2)),
    ("MaxPool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("MaxPool2d", dict(kernel_size=(3, 2), stride=(2, 1), dilation=2, return_indices=True)),
    ("AvgPool2d", dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ("AvgPool2d", dict(kernel_size=2, ceil_mode=True, divisor_override=3)),
    ("AdaptiveAvgPool2d", dict(output_size=1)),
    ("AdaptiveAvgPool2d", dict(output_size=(None, 3))),
    ("AdaptiveMaxPool2d", dict(output_size=(2, 3), return_indices=True)),
]


@pytest.mark.parametrize("name, kwargs", CASES, ids=lambda v: str(v))
def test_pool_module_is_a_drop_in_for_torch(name, kwargs):
    ours, native = getattr(cnn, name)(**kwargs), getattr(torch.nn, name)(**kwargs)
    assert repr(ours) == repr(native)
    x = torch.randn(2, 3, 11, 9, requires_grad=True)
    out, ref = ours(x), native(x)
    if isinstance(ref, tuple):
        assert torch.equal(out[1], ref[1])
        out, ref = out[0], ref[0]
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(torch.autograd.grad(out.sum(), x)[0],
                               torch.autograd.grad(ref.sum(), x)[0])
    assert ours(x[0]).__class__ is native(x[0]).__class__  # unbatched input


@pytest.mark.parametrize("build, match", [
    (lambda: cnn.MaxPool2d(0), "kernel_size"),
    (lambda: cnn.MaxPool2d(2, stride=0), "stride"),
    (lambda: cnn.AvgPool2d(2, padding=-1), "padding"),
    (lambda: cnn.AvgPool2d(2, divisor_override=0), "divisor_override"),
    (lambda: cnn.AdaptiveAvgPool2d(-1), "output_size"),
    (lambda: cnn.AdaptiveMaxPool2d((2, -3)), "output_size"),
])
def test_pool_module_refuses_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()
