"""convert(): torch.nn layers to their cnnops twins and back, weights and state kept."""

import warnings

import pytest
import torch
from torch import nn

import cnnops
import cnnops.nn as cnn

TORCH_LAYERS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
CNNOPS_LAYERS = (cnn.Conv2d, cnn.MaxPool2d, cnn.AvgPool2d, cnn.AdaptiveAvgPool2d,
                 cnn.AdaptiveMaxPool2d)


def mixed_model() -> nn.Module:
    """Every layer kind convert() takes, nested, with batch norm and dropout between."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding="same", groups=2, padding_mode="reflect"),
                      nn.AvgPool2d(2, count_include_pad=False)),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
        nn.AdaptiveMaxPool2d((3, None)), nn.Dropout(0.2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def kinds(model):
    return [type(m) for m in model.modules()]


def test_convert_replaces_every_torch_layer_and_keeps_the_outputs():
    torch.manual_seed(0)
    model = mixed_model().eval()
    converted = cnnops.convert(model)
    assert converted is not model
    assert not any(kind in TORCH_LAYERS for kind in kinds(converted))
    assert sum(kind in CNNOPS_LAYERS for kind in kinds(converted)) == 7
    assert all(kind in TORCH_LAYERS or not issubclass(kind, TORCH_LAYERS) for kind in kinds(model))
    x = torch.randn(2, 3, 17, 15)
    torch.testing.assert_close(converted(x), model(x), rtol=1e-5, atol=1e-5)
    assert converted.state_dict().keys() == model.state_dict().keys()


def test_convert_back_to_torch_restores_torch_layers():
    model = mixed_model()
    back = cnnops.convert(cnnops.convert(model), to="torch")
    assert kinds(back) == kinds(model)
    for (key, a), (_, b) in zip(back.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), key


def test_convert_keeps_training_mode_dtype_and_gradients():
    model = mixed_model().double().train()
    converted = cnnops.convert(model)
    assert converted.training
    assert all(p.dtype == torch.float64 for p in converted.parameters())
    out = converted(torch.randn(2, 3, 12, 12, dtype=torch.float64))
    out.sum().backward()
    assert all(p.grad is not None for p in converted.parameters())


def test_convert_inplace_changes_the_model_itself():
    model = mixed_model()
    assert cnnops.convert(model, inplace=True) is model
    assert isinstance(model[0], cnn.Conv2d)


def test_convert_leaves_subclasses_alone_with_a_warning():
    class DoubledConv(nn.Conv2d):
        def forward(self, x):
            return 2 * super().forward(x)

    model = nn.Sequential(nn.Conv2d(3, 4, 3), DoubledConv(4, 4, 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = cnnops.convert(model)
    assert type(converted[0]) is cnn.Conv2d and type(converted[1]) is DoubledConv
    assert any("DoubledConv" in str(w.message) for w in caught)


def test_convert_refuses_bad_arguments():
    with pytest.raises(ValueError, match="to"):
        cnnops.convert(nn.Conv2d(1, 1, 1), to="onnx")
    with pytest.raises(TypeError, match="model"):
        cnnops.convert("not a model")
