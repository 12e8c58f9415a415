"""The model zoo under torch.compile(fullgraph=True, backend='inductor'), forward and
backward, against eager; and torch.export of models built from cnnops layers, saved and
loaded back. (tests/test_models.py compiles the zoo with the aot_eager backend; this is
inductor, which also generates code around the cnnops operators and checks their real
output strides against the fake kernels'.)
"""

import pytest
import torch
from torch import nn

from cnnops import models

# (builder, input size); batch 2, the smallest inputs the models accept.
ZOO = {
    "simple_cnn": (models.simple_cnn, (1, 28, 28)),
    "lenet5": (models.lenet5, (1, 28, 28)),
    "cifar_cnn": (models.cifar_cnn, (3, 32, 32)),
    "vgg11": (lambda: models.vgg11(num_classes=10), (3, 32, 32)),
    "mobilenet_v1": (lambda: models.mobilenet_v1(num_classes=10, width_mult=0.25), (3, 32, 32)),
}


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# Opt-in (`-m heavy`): with a fresh inductor cache each model takes 30-80 s to compile on
# the 2-core CI machine, about 4.5 minutes for the zoo, past the default run's budget.
@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.parametrize("name", ZOO, ids=list(ZOO))
def test_model_compiles_with_inductor_forward_and_backward(name):
    build, size = ZOO[name]
    model = build().eval()  # eval: no dropout, so eager and compiled agree
    x = torch.randn(2, *size, requires_grad=True)
    compiled = torch.compile(model, fullgraph=True, backend="inductor")
    out, ref = compiled(x), model(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    inputs = [x, *model.parameters()]
    grad = torch.randn_like(out)
    grads = torch.autograd.grad(out, inputs, grad)
    refs = torch.autograd.grad(ref, inputs, grad)
    for g, r in zip(grads, refs):
        torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-4)


def small_vgg11() -> nn.Module:
    # VGG-11's cnnops features and pooling as built; only the 4096-wide classifier (120M
    # parameters, 480 MB on disk) is swapped for one layer, to keep the saved file small.
    model = models.vgg11(num_classes=10)
    model.classifier = nn.Linear(512 * 7 * 7, 10)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("build, size", [(models.simple_cnn, (1, 28, 28)),
                                         (small_vgg11, (3, 32, 32))], ids=["simple_cnn", "vgg11"])
def test_model_exports_saves_and_loads(build, size, tmp_path):
    model = build().eval()
    x = torch.randn(2, *size)
    exported = torch.export.export(model, (x,))
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert any(t.startswith("cnnops.") for t in targets), targets
    assert not any("convolution" in t or "max_pool2d" in t for t in targets if "aten" in t)
    path = tmp_path / "model.pt2"
    torch.export.save(exported, path)
    loaded = torch.export.load(path)
    other = torch.randn(2, *size)
    expected = model(other)
    torch.testing.assert_close(loaded.module()(other), expected, rtol=0, atol=0)
    torch.testing.assert_close(exported.module()(other), expected, rtol=0, atol=0)
