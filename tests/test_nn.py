"""The drop-in modules: same construction, parameters, state_dict, repr and results as torch.nn."""

import pytest
import torch

import cnnops
import cnnops.nn as cnn

CONV_CONFIGS = [
    dict(in_channels=3, out_channels=8, kernel_size=3),
    dict(in_channels=3, out_channels=8, kernel_size=3, padding=1, bias=False),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 5), stride=2, padding=(1, 2), groups=2),
    dict(in_channels=5, out_channels=7, kernel_size=4, padding="same", dilation=2),
    dict(in_channels=5, out_channels=7, kernel_size=3, padding="valid", stride=(2, 1)),
    dict(in_channels=3, out_channels=4, kernel_size=3, padding=2, padding_mode="reflect"),
    dict(in_channels=3, out_channels=4, kernel_size=3, padding=(1, 2), padding_mode="replicate"),
    dict(in_channels=3, out_channels=4, kernel_size=3, padding=1, padding_mode="circular"),
    dict(in_channels=6, out_channels=6, kernel_size=3, padding="same", groups=6,
         padding_mode="circular"),
]


@pytest.mark.parametrize("config", CONV_CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_conv2d_module_is_a_drop_in_for_torch(config):
    torch.manual_seed(1)
    ours = cnn.Conv2d(**config)
    torch.manual_seed(1)
    native = torch.nn.Conv2d(**config)
    assert repr(ours) == repr(native)
    assert ours.state_dict().keys() == native.state_dict().keys()
    for (name, a), (_, b) in zip(ours.named_parameters(), native.named_parameters()):
        assert torch.equal(a, b), name  # same initialisation from the same seed

    x = torch.randn(2, config["in_channels"], 11, 13, requires_grad=True)
    y, y_ref = ours(x), native(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(y.square().sum(), [x, *ours.parameters()])
    grads_ref = torch.autograd.grad(y_ref.square().sum(), [x, *native.parameters()])
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-4)


def test_conv2d_module_loads_a_torch_state_dict_and_back():
    native = torch.nn.Conv2d(3, 5, 3, padding=1)
    ours = cnn.Conv2d(3, 5, 3, padding=1)
    ours.load_state_dict(native.state_dict())
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(ours(x), native(x), rtol=1e-5, atol=1e-5)
    back = torch.nn.Conv2d(3, 5, 3, padding=1)
    back.load_state_dict(ours.state_dict())
    torch.testing.assert_close(back(x), native(x), rtol=0, atol=0)


def test_conv2d_module_accepts_unbatched_input():
    conv = cnn.Conv2d(3, 4, 3)
    assert conv(torch.randn(3, 9, 9)).shape == (4, 7, 7)


def test_initialisation_statistics_match_torch():
    torch.manual_seed(0)
    ours = torch.cat([cnn.Conv2d(64, 64, 3).weight.flatten() for _ in range(4)])
    torch.manual_seed(0)
    native = torch.cat([torch.nn.Conv2d(64, 64, 3).weight.flatten() for _ in range(4)])
    assert torch.equal(ours, native)


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_channels=3, out_channels=4, kernel_size=3, padding_mode="mirror"), "padding_mode"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, groups=2), "groups"),
    (dict(in_channels=3, out_channels=4, kernel_size=0), "kernel|positive|must be"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, padding="full"), "padding"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, padding="same", stride=2), "same"),
])
def test_conv2d_module_refuses_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, RuntimeError, TypeError), match=match):
        cnn.Conv2d(**kwargs)


def test_conv2d_module_compiles_fullgraph():
    conv = cnn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(conv, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), conv(x))
    assert cnnops.conv2d is cnnops.functional.conv2d
