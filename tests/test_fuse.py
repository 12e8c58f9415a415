"""Inference fusion and the conv2d_bias_relu operator behind it."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnops
import cnnops.nn as cnn
from cnnops.fuse import FusedConv2d


def randomise_batch_norms(model):
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            if module.affine:
                module.weight.data.uniform_(0.5, 2)
                module.bias.data.uniform_(-1, 1)
    return model


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("version", [1, 2, 3, 4])  # 3: Winograd at stride 1, 4: direct (CPU)
@pytest.mark.parametrize("in_channels", [3, 5])  # 3: short enough for the direct kernel
def test_conv2d_bias_relu_equals_relu_of_conv2d(version, stride, in_channels):
    x = torch.randn(2, in_channels, 9, 11)
    w = torch.randn(7, in_channels, 3, 3)
    b = torch.randn(7)
    with cnnops.kernel_version("conv2d", version):
        fused = cnnops.functional.conv2d_bias_relu(x, w, b, stride=stride, padding=(1, 2))
    torch.testing.assert_close(fused, F.relu(F.conv2d(x, w, b, stride=stride, padding=(1, 2))),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("version", [1, 2, 3, 4])
@pytest.mark.parametrize("kernel", [1, 3])
def test_conv2d_bias_relu_keeps_nan_as_relu_does(kernel, version):
    x = torch.full((1, 1, 3, 3), float("nan"))
    with cnnops.kernel_version("conv2d", version):
        out = cnnops.functional.conv2d_bias_relu(x, torch.ones(1, 1, kernel, kernel),
                                                 padding=kernel // 2)
    assert torch.isnan(out).all()


def test_conv2d_bias_relu_refuses_to_record_gradients():
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="inference-only"):
        cnnops.functional.conv2d_bias_relu(torch.randn(1, 3, 5, 5), w)
    with torch.no_grad():
        cnnops.functional.conv2d_bias_relu(torch.randn(1, 3, 5, 5), w)


def test_conv2d_bias_relu_opcheck():
    args = (torch.randn(2, 4, 7, 9).to(memory_format=torch.channels_last), torch.randn(6, 2, 3, 3),
            torch.randn(6), [1, 2], [1, 0, 2, 1], [1, 1], 2)
    torch.library.opcheck(torch.ops.cnnops.conv2d_bias_relu, args,
                          test_utils=("test_schema", "test_faketensor"))


def make_model(conv=nn.Conv2d):
    return randomise_batch_norms(nn.Sequential(
        conv(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        conv(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
        conv(8, 8, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
        nn.Sequential(conv(8, 6, 1), nn.ReLU(), nn.BatchNorm2d(6, affine=False)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)))


@pytest.mark.parametrize("conv", [nn.Conv2d, cnn.Conv2d], ids=["torch_layers", "cnnops_layers"])
def test_fuse_equals_the_unfused_model(conv):
    model = make_model(conv).eval()
    fused = cnnops.fuse(model)
    assert fused is not model and not fused.training
    assert sum(isinstance(m, FusedConv2d) for m in fused.modules()) == 4
    assert sum(isinstance(m, FusedConv2d) and m.relu for m in fused.modules()) == 3
    x = torch.randn(4, 3, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-5)


def test_fuse_leaves_the_original_model_untouched():
    model = make_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cnnops.fuse(model)
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_fused_model_runs_without_no_grad_on_plain_input():
    fused = cnnops.fuse(make_model().eval())
    out = fused(torch.randn(1, 3, 8, 8))
    assert out.shape == (1, 3)
