"""The model zoo: parameter counts, torchvision-compatible keys, shapes, equality with the
same model on torch layers, FLOPs, and torch.compile."""

import pytest
import torch
from torch import nn

import cnnops
from cnnops import models

TORCH_LAYERS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)

# (builder, input size, parameter count)
SMALL = [
    (models.simple_cnn, (1, 28, 28), 93_322),
    (models.lenet5, (1, 28, 28), 61_706),
    (models.cifar_cnn, (3, 32, 32), None),
    (lambda: models.vgg11(num_classes=10), (3, 32, 32), None),
    (lambda: models.mobilenet_v1(num_classes=10, width_mult=0.25), (3, 32, 32), None),
]
IDS = ["simple_cnn", "lenet5", "cifar_cnn", "vgg11_cifar", "mobilenet_v1_x0.25"]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("build, size, params", SMALL, ids=IDS)
def test_model_shape_params_and_layers(build, size, params):
    model = build()
    if params is not None:
        assert parameter_count(model) == params
    assert not any(type(m) in TORCH_LAYERS for m in model.modules()), "a torch layer is left"
    assert model(torch.randn(2, *size)).shape == (2, 10)


def test_vgg16_parameters_flops_and_torchvision_keys():
    model = models.vgg16()
    assert parameter_count(model) == 138_357_544
    conv_positions = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    expected = {f"features.{i}.{p}" for i in conv_positions for p in ("weight", "bias")}
    expected |= {f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}
    assert set(model.state_dict()) == expected
    # About 15.5 G multiply-accumulates at 224x224.
    summary = cnnops.summary(model, (3, 224, 224))
    assert summary.total_flops / 2 == pytest.approx(15.47e9, rel=0.01)


@pytest.mark.parametrize("name, params", [("vgg11", 132_863_336), ("vgg13", 133_047_848),
                                          ("vgg19", 143_667_240)])
def test_other_vgg_parameter_counts(name, params):
    assert parameter_count(getattr(models, name)()) == params


def test_vgg_batch_norm_keys_follow_torchvision():
    keys = models.vgg11(batch_norm=True).state_dict().keys()
    assert "features.1.running_mean" in keys and "features.4.weight" in keys


def test_vgg_matches_torchvision_when_installed():
    torchvision = pytest.importorskip("torchvision")
    ours, theirs = models.vgg16(), torchvision.models.vgg16()
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=1e-4, atol=1e-4)


def test_mobilenet_v1_parameters():
    assert parameter_count(models.mobilenet_v1()) == 4_231_976


@pytest.mark.parametrize("build, size, params", SMALL, ids=IDS)
def test_model_equals_itself_on_torch_layers(build, size, params):
    torch.manual_seed(0)
    model = build().eval()
    native = cnnops.convert(model, to="torch")
    x = torch.randn(3, *size)
    torch.testing.assert_close(model(x), native(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("build, size, params", SMALL, ids=IDS)
def test_model_compiles_fullgraph_forward_and_backward(build, size, params):
    torch.manual_seed(0)
    model = build().eval()  # eval: dropout off, so eager and compiled agree
    x = torch.randn(2, *size)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out, ref = compiled(x), model(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
    refs = torch.autograd.grad(ref.square().sum(), list(model.parameters()))
    for g, r in zip(grads, refs):
        torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-4)


def test_fused_models_equal_the_originals():
    torch.manual_seed(0)
    for model, size in ((models.vgg11(num_classes=10, batch_norm=True), (3, 32, 32)),
                        (models.mobilenet_v1(num_classes=10, width_mult=0.25), (3, 32, 32))):
        model.eval()
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2)
        fused = cnnops.fuse(model)
        x = torch.randn(2, *size)
        with torch.no_grad():
            torch.testing.assert_close(fused(x), model(x), rtol=1e-3, atol=1e-4)
