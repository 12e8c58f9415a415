"""The cases of `cnnops bench` (bench.py): what is timed, grouped in op families.

A case builds its operands for one device and dtype, checks cnnops against torch, and hands
out zero-argument runners, one per implementation ('cnnops', 'torch') and pass ('forward',
'forward+backward'). An op family joins with a few lines in FAMILIES: its name, the cnnops
function whose presence enables it, the unit of its rate, and a function that builds its
cases from the reference shapes (cnnops.bench_shapes). The pytest-benchmark suites of
benchmarks/ time the same cases.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import cnnops

from . import bench_shapes as shapes
from .bench_shapes import ConvShape, PoolShape, SeparableShape

PASSES = ("forward", "forward+backward")
# A result is wrong when max|cnnops - torch| exceeds this fraction of max|torch|: loose enough
# for a different summation order, far too tight for an indexing or formula error.
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-3, torch.float16: 2e-2,
             torch.bfloat16: 5e-2}


def _error(ours: Tensor, ref: Tensor) -> float:
    """max|ours - ref| relative to max|ref| (inf when shapes differ or ours is not finite)."""
    if ours.shape != ref.shape:
        return math.inf
    ours, ref = ours.detach().double(), ref.detach().double()
    if not torch.isfinite(ours).all() and torch.isfinite(ref).all():
        return math.inf
    scale = ref.abs().max().item() if ref.numel() else 0.0
    diff = (ours - ref).abs().max().item() if ref.numel() else 0.0
    return diff / (scale if scale > 0 else 1.0)


def _compare(pairs: Sequence[tuple[str, Tensor, Tensor]], dtype: torch.dtype) -> str | None:
    """None when every (name, cnnops, torch) pair agrees; else what differs and by how much."""
    tolerance = TOLERANCE[dtype]
    for name, ours, ref in pairs:
        if ours.shape != ref.shape:
            return f"{name}: shape {tuple(ours.shape)}, torch gives {tuple(ref.shape)}"
        err = _error(ours, ref)
        if err > tolerance:
            return f"{name} differs from torch: max error {err:.3g} of max|torch| (tolerance {tolerance:g})"
    return None


def _compare_to_exact(triples: Sequence[tuple[str, Tensor, Tensor, Tensor]],
                      dtype: torch.dtype) -> str | None:
    """None when, for every (name, cnnops, torch, exact), cnnops is as close to `exact` (the
    same network run by torch in float32) as the tolerance or twice torch's own distance.

    A half-precision network cannot be held to torch's answer: the two convolutions round
    their outputs differently by an ulp, and a max pool whose window holds two values that
    close sends the gradient to a different pixel on each side, so the first layer's weight
    gradients differ by a few percent with neither one wrong."""
    tolerance = TOLERANCE[dtype]
    for name, ours, theirs, exact in triples:
        if ours.shape != exact.shape:
            return f"{name}: shape {tuple(ours.shape)}, torch gives {tuple(exact.shape)}"
        err, torch_err = _error(ours, exact), _error(theirs, exact)
        if err > max(tolerance, 2 * torch_err):
            return (f"{name} differs from a float32 run: max error {err:.3g} of max|float32| "
                    f"(torch's {torch_err:.3g}; tolerance {tolerance:g} or twice torch's)")
    return None


@dataclasses.dataclass
class Prepared:
    """A case made concrete on one device and dtype."""

    check: Callable[[], str | None]             # None if cnnops agrees with torch
    runners: Callable[[str, str], Callable[[], object]]  # (impl 'cnnops'|'torch', pass)
    forward_work: float                          # flops, or bytes, of one forward call


def _to(t: Tensor, device: torch.device, dtype: torch.dtype,
        memory_format: torch.memory_format) -> Tensor:
    """t on device as dtype; a 4-D tensor (activation or weight) also in memory_format."""
    t = t.to(device, dtype)
    return t.contiguous(memory_format=memory_format) if t.dim() == 4 else t


@dataclasses.dataclass
class OpCase:
    """One op on one shape: ``ours(*inputs)`` against ``native(*inputs)``."""

    op: str
    shape: str
    make_inputs: Callable[[torch.Generator], list[Tensor | None]]  # float32, on the CPU
    ours: Callable[..., Tensor]
    native: Callable[..., Tensor]
    flops: int = 0

    def prepare(self, device: torch.device, dtype: torch.dtype, unit: str,
                memory_format: torch.memory_format = torch.contiguous_format) -> Prepared:
        generator = torch.Generator().manual_seed(0)
        inputs = [t if t is None else _to(t, device, dtype, memory_format)
                  for t in self.make_inputs(generator)]
        leaves = [t if t is None else t.clone().requires_grad_() for t in inputs]
        grad_leaves = [t for t in leaves if t is not None]
        reference = self.native(*inputs)
        grad_output = _to(torch.randn(reference.shape, generator=generator), device, dtype,
                          memory_format)
        impls = {"cnnops": lambda *a: self.ours(*a), "torch": lambda *a: self.native(*a)}

        def check() -> str | None:
            pairs = [("forward", impls["cnnops"](*inputs), reference)]
            grads = {impl: torch.autograd.grad(fn(*leaves), grad_leaves, grad_output)
                     for impl, fn in impls.items()}
            for i, (ours, ref) in enumerate(zip(grads["cnnops"], grads["torch"])):
                pairs.append((f"gradient of operand {i}", ours, ref))
            return _compare(pairs, dtype)

        def runners(impl: str, pass_: str) -> Callable[[], object]:
            fn = impls[impl]
            if pass_ == "forward":
                return lambda: fn(*inputs)
            return lambda: torch.autograd.grad(fn(*leaves), grad_leaves, grad_output)

        if unit == "GB/s":
            elements = sum(t.numel() for t in inputs if t is not None) + reference.numel()
            work = float(elements * reference.element_size())
        else:
            work = float(self.flops)
        return Prepared(check, runners, work)


@dataclasses.dataclass
class ModelCase:
    """A network built from torch.nn layers, run as it is (torch) and as `cnnops.convert`
    makes it (cnnops, the same weights): inference is the forward pass, a training step
    (forward, cross-entropy, backward, SGD step) the forward+backward one. A `fused` case
    runs cnnops' inference through `cnnops.fuse` (convolution, bias and ReLU as one
    operator) and has no training step."""

    op: str
    shape: str
    build: Callable[[], nn.Module]  # the torch.nn network
    input_shape: tuple[int, int, int, int]
    num_classes: int = 10
    fused: bool = False

    def prepare(self, device: torch.device, dtype: torch.dtype, unit: str,
                memory_format: torch.memory_format = torch.contiguous_format) -> Prepared:
        torch.manual_seed(0)
        native = self.build().to(device, dtype)
        native.to(memory_format=memory_format)  # 4-D parameters, as users convert a net
        models = {"torch": native, "cnnops": cnnops.convert(native)}
        if self.fused:
            models["cnnops"] = cnnops.fuse(models["cnnops"])
        generator = torch.Generator().manual_seed(0)
        x = _to(torch.randn(self.input_shape, generator=generator), device, dtype, memory_format)
        labels = torch.randint(0, self.num_classes, (self.input_shape[0],),
                               generator=generator).to(device)
        optimizers = {} if self.fused else {
            impl: torch.optim.SGD(m.parameters(), lr=1e-4) for impl, m in models.items()}

        def check() -> str | None:
            # Eval mode: dropout off, so both nets compute the same function.
            half = dtype in (torch.float16, torch.bfloat16)
            runs = dict(models)
            if half:
                runs["exact"] = copy.deepcopy(native).float()
            outputs, grads = {}, {}
            for impl, model in runs.items():
                model.eval()
                inputs = x.float() if impl == "exact" else x
                if self.fused:
                    with torch.no_grad():
                        outputs[impl] = model(inputs)
                    continue
                model.zero_grad(set_to_none=True)
                outputs[impl] = model(inputs)
                F.cross_entropy(outputs[impl], labels).backward()
                grads[impl] = {n: p.grad for n, p in model.named_parameters()}
                model.zero_grad(set_to_none=True)
            results = [("logits", outputs)]
            if not self.fused:
                results += [(f"gradient of {n}", {impl: grads[impl][n] for impl in runs})
                            for n in grads["cnnops"]]
            if half:
                return _compare_to_exact(
                    [(name, r["cnnops"], r["torch"], r["exact"]) for name, r in results], dtype)
            return _compare([(name, r["cnnops"], r["torch"]) for name, r in results], dtype)

        def runners(impl: str, pass_: str) -> Callable[[], object]:
            model = models[impl]
            if pass_ == "forward":
                def infer() -> Tensor:
                    model.eval()
                    with torch.no_grad():
                        return model(x)
                return infer
            if self.fused:
                raise ValueError(f"{self.op}: a fused network has no training step")
            optimizer = optimizers[impl]

            def train_step() -> Tensor:
                model.train()
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), labels)
                loss.backward()
                optimizer.step()
                return loss
            return train_step

        return Prepared(check, runners, float(_model_flops(native, x)))


def _model_flops(model: nn.Module, x: Tensor) -> int:
    """Forward flops of the convolutions and linear layers (multiply-adds count two)."""
    total = 0

    def count(module: nn.Module, inputs, output: Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            total += 2 * output.numel() * per_output
        elif isinstance(module, nn.Linear):
            total += 2 * output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return total


# --------------------------------------------------------------------------------------
# The op families.


def _conv_inputs(shape: ConvShape) -> Callable[[torch.Generator], list[Tensor]]:
    def make(generator: torch.Generator) -> list[Tensor]:
        fan_in = shape.weight_shape[1] * shape.kernel * shape.kernel
        x = torch.randn(shape.input_shape, generator=generator)
        w = torch.randn(shape.weight_shape, generator=generator) / math.sqrt(fan_in)
        b = torch.randn(shape.out_channels, generator=generator) * 0.1
        return [x, w, b]
    return make


def _conv_case(family: str, shape: ConvShape) -> OpCase:
    kwargs = dict(stride=shape.stride, padding=shape.padding, groups=shape.groups)
    return OpCase(f"{family}.{shape.name}", shape.describe(), _conv_inputs(shape),
                  lambda x, w, b: cnnops.conv2d(x, w, b, **kwargs),
                  lambda x, w, b: F.conv2d(x, w, b, **kwargs), shape.flops)


def _separable_case(block: SeparableShape) -> OpCase:
    dw, pw = block.depthwise, block.pointwise

    def make(generator: torch.Generator) -> list[Tensor]:
        x, dw_w, dw_b = _conv_inputs(dw)(generator)
        _, pw_w, pw_b = _conv_inputs(pw)(generator)
        return [x, dw_w, pw_w, dw_b, pw_b]

    def ours(x, dw_w, pw_w, dw_b, pw_b):
        return cnnops.depthwise_separable_conv2d(x, dw_w, pw_w, dw_b, pw_b, stride=dw.stride,
                                                 padding=dw.padding)

    def native(x, dw_w, pw_w, dw_b, pw_b):
        y = F.conv2d(x, dw_w, dw_b, stride=dw.stride, padding=dw.padding, groups=dw.groups)
        return F.conv2d(y, pw_w, pw_b)

    return OpCase(f"separable.{block.name}", block.describe(), make, ours, native, block.flops)


def _pool_case(family: str, shape: PoolShape) -> OpCase:
    def make(generator: torch.Generator) -> list[Tensor]:
        return [torch.randn(shape.input_shape, generator=generator)]

    if shape.kernel == 0:  # global pooling: adaptive to 1x1
        def ours(x):
            return getattr(cnnops, family)(x, 1)

        def native(x):
            return getattr(F, family)(x, 1)
    else:
        def ours(x):
            return getattr(cnnops, family)(x, shape.kernel, shape.stride, shape.padding)

        def native(x):
            return getattr(F, family)(x, shape.kernel, shape.stride, shape.padding)

    return OpCase(f"{family}.{shape.name}", shape.describe(), make, ours, native)


# Tiny shapes: a smoke test of the harness itself (`--tiny`), seconds for every family.
_TINY_CONV = ConvShape("tiny", 2, 3, 9, 7, 4)
_TINY_DEPTHWISE = ConvShape("tiny", 2, 4, 9, 7, 4, groups=4)
_TINY_POINTWISE = ConvShape("tiny", 2, 4, 9, 7, 6, kernel=1, padding=0)
_TINY_SEPARABLE = SeparableShape("tiny", _TINY_DEPTHWISE, _TINY_POINTWISE)
_TINY_POOL = PoolShape("tiny", 2, 3, 8, 8, kernel=2, stride=2)
_TINY_GLOBAL = PoolShape("tiny", 2, 3, 5, 5, kernel=0, stride=0)


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    requires: str      # the cnnops function whose presence enables the family
    unit: str          # 'GFLOP/s' or 'GB/s'
    backward_factor: int  # work of forward+backward / work of forward
    cases: Callable[[bool], list]  # cases(tiny)
    quick: str         # the one op that --quick runs
    native_conv: bool = True  # native runs cuDNN convolutions (CUDA: time TF32 off and on)
    note: str = ""
    passes: tuple[str, ...] = PASSES

    def available(self) -> bool:
        return hasattr(cnnops, self.requires)


def _model_cases(family: str, tiny: bool, fused: bool = False) -> list[ModelCase]:
    nets = [("simplecnn_b2", "2x1x28x28", _simple_cnn, (2, 1, 28, 28))] if tiny else [
        ("simplecnn", "64x1x28x28", _simple_cnn, (64, 1, 28, 28)),
        ("vgg16c", "32x3x32x32", _vgg16_cifar, (32, 3, 32, 32))]
    return [ModelCase(f"{family}.{name}", shape, build, input_shape, fused=fused)
            for name, shape, build, input_shape in nets]


FAMILIES = [
    Family("conv2d", "conv2d", "GFLOP/s", 3,
           lambda tiny: [_conv_case("conv2d", s) for s in ([_TINY_CONV] if tiny else shapes.CONV_SHAPES)],
           quick="conv2d.simplecnn.conv2"),
    Family("pointwise", "conv2d", "GFLOP/s", 3,
           lambda tiny: [_conv_case("pointwise", s)
                         for s in ([_TINY_POINTWISE] if tiny else shapes.MBV1_POINTWISE)],
           quick="pointwise.mbv1.pw28"),
    # conv2d with groups == C runs the depthwise kernels (cpu/depthwise.cpp, cuda/depthwise.cu),
    # which came with depthwise_separable_conv2d.
    Family("depthwise", "depthwise_separable_conv2d", "GB/s", 3,
           lambda tiny: [_conv_case("depthwise", s)
                         for s in ([_TINY_DEPTHWISE] if tiny else shapes.MBV1_DEPTHWISE)],
           quick="depthwise.mbv1.dw56", note="the depthwise kernels"),
    Family("separable", "depthwise_separable_conv2d", "GFLOP/s", 3,
           lambda tiny: [_separable_case(b) for b in ([_TINY_SEPARABLE] if tiny else shapes.MOBILENET_V1)],
           quick="separable.mbv1.ds28"),
    *[Family(name, name, "GB/s", 2,
             lambda tiny, name=name: [_pool_case(name, s)
                                      for s in ([_TINY_POOL] if tiny else shapes.POOL_SHAPES)],
             quick=f"{name}.2x2", native_conv=False)
      for name in ("max_pool2d", "avg_pool2d")],
    *[Family(name, name, "GB/s", 2,
             lambda tiny, name=name: [_pool_case(name, s)
                                      for s in ([_TINY_GLOBAL] if tiny else shapes.GLOBAL_POOL_SHAPES)],
             quick=f"{name}.global", native_conv=False)
      for name in ("adaptive_avg_pool2d", "adaptive_max_pool2d")],
    Family("e2e", "conv2d", "GFLOP/s", 3, lambda tiny: _model_cases("e2e", tiny),
           quick="e2e.simplecnn"),
    # Inference of the same nets through cnnops.fuse, against torch's eager network.
    Family("fused", "fuse", "GFLOP/s", 3, lambda tiny: _model_cases("fused", tiny, fused=True),
           quick="fused.simplecnn", passes=("forward",), note="e2e inference with cnnops.fuse"),
]
FAMILY_NAMES = [family.name for family in FAMILIES]


# --------------------------------------------------------------------------------------
# The end-to-end networks, from torch.nn layers; ModelCase runs them through cnnops.convert.
# SimpleCNN is cnnops.models.simple_cnn's; the CIFAR VGG-16 (thirteen convs, then one linear
# layer) is not in the zoo, whose VGGs carry torchvision's 4096-wide classifier.


def _simple_cnn() -> nn.Module:
    """The seed's SimpleCNN for 1x28x28 input: three 3x3 convs, each followed by ReLU and a
    2x2 max-pool, then 576 -> 64 -> 10 with dropout."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(576, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))


VGG16_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                512, 512, 512, "M"]


def _vgg16_cifar() -> nn.Module:
    """VGG-16's thirteen 3x3 convs for 3x32x32 input (no batch norm), then 512 -> 10."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
            channels = item
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512, 10))


def select_cases(families: Sequence[Family], quick: bool, tiny: bool) -> list[tuple[Family, object]]:
    selected = []
    for family in families:
        cases = family.cases(tiny)
        if quick and not tiny:
            cases = [c for c in cases if c.op == family.quick] or cases[:1]
        selected += [(family, case) for case in cases]
    return selected

