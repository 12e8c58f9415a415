"""The benchmark harness itself (`cnnops bench`): it runs, writes complete JSON and CSV,
refuses to time an op whose result is wrong, and fails clearly when asked for what it cannot
do. No timing thresholds: timings live in benchmarks/, never in tests."""

import copy
import csv
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnops
from cnnops import bench, bench_cases, bench_report, bench_shapes
from cnnops._ops import _C

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_bench(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    """`cnnops bench ARGS` in a fresh interpreter; `prelude` runs first (to hide modules)."""
    code = f"import sys\n{prelude}\nfrom cnnops.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "bench", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One `cnnops bench --quick --tiny` run with every output, shared by the tests below."""
    out = tmp_path_factory.mktemp("bench")
    paths = {kind: out / f"bench.{kind}" for kind in ("json", "csv", "png")}
    result = run_bench("--quick", "--tiny", "--json", paths["json"], "--csv", paths["csv"],
                       "--plot", paths["png"])
    assert result.returncode == 0, result.stdout + result.stderr
    return result, paths


def test_tiny_run_prints_a_table_and_the_geomeans(tiny_run):
    result, _ = tiny_run
    assert "cnnops vs torch" in result.stdout
    assert "conv2d.tiny" in result.stdout
    assert "geomean speedup" in result.stdout
    assert "peaks:" in result.stdout


def test_json_has_the_machine_the_peaks_and_every_row_field(tiny_run):
    _, paths = tiny_run
    data = json.loads(paths["json"].read_text())
    machine = data["machine"]
    for key in ("date", "cpu_model", "cpu_count", "threads", "cpu_isa", "torch", "cnnops"):
        assert machine[key] not in (None, ""), key
    assert machine["cpu_isa"] == _C.cpu_isa()
    assert machine["torch"] == torch.__version__
    assert data["peaks"]["fma_gflops"]["float32"] > 0
    assert data["peaks"]["fma_gflops"]["float64"] > 0
    assert data["peaks"]["copy_gbs"] > 0

    rows = data["rows"]
    assert rows
    for row in rows:
        assert set(bench_report.ROW_FIELDS) <= set(row), row
        family = row["op"].split(".")[0]
        assert family in bench_cases.FAMILY_NAMES and "." in row["op"]
        assert row["device"] == "cpu" and row["dtype"] == "float32"
        assert row["pass"] in ("forward", "forward+backward")
        assert row["rate_unit"] in ("GFLOP/s", "GB/s")
        assert row["cnnops_ms"] > 0 and row["torch_ms"] > 0 and row["rate"] > 0
        assert math.isclose(row["speedup"], row["torch_ms"] / row["cnnops_ms"], rel_tol=1e-9)
        assert math.isclose(row["peak_fraction"], row["rate"] / row["peak"], rel_tol=1e-9)
    timed = {(row["op"], row["pass"]) for row in rows}
    passes = {family.name: family.passes for family in bench_cases.FAMILIES}
    for op, _ in timed:
        expected = {(op, pass_) for pass_ in passes[op.split(".")[0]]}
        assert expected == {t for t in timed if t[0] == op}
    # --quick: one op per available family.
    assert len({op for op, _ in timed}) == len(data["settings"]["families"])
    assert {g["family"] for g in data["geomean"]} == set(data["settings"]["families"])
    assert data["refused"] == []


def test_csv_holds_the_same_rows(tiny_run):
    _, paths = tiny_run
    with open(paths["csv"], newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == bench_report.ROW_FIELDS
        rows = list(reader)
    data = json.loads(paths["json"].read_text())
    assert [(r["op"], r["pass"]) for r in rows] == [(r["op"], r["pass"]) for r in data["rows"]]


def test_plot_is_a_png(tiny_run):
    pytest.importorskip("matplotlib")
    _, paths = tiny_run
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_wrong_result_is_refused_not_timed(tmp_path):
    path = tmp_path / "bench.json"
    result = run_bench("--tiny", "--ops", "conv2d,pointwise", "--inject-wrong", "conv2d.tiny",
                       "--json", path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "REFUSED conv2d.tiny" in result.stdout
    assert "differs from torch" in result.stdout
    data = json.loads(path.read_text())
    assert [r["op"] for r in data["refused"]] == ["conv2d.tiny"]
    assert "conv2d.tiny" not in {row["op"] for row in data["rows"]}
    assert "pointwise.tiny" in {row["op"] for row in data["rows"]}  # the others still run


def test_channels_last_runs_every_family_with_channels_last_operands(tmp_path, monkeypatch):
    path = tmp_path / "bench.json"
    result = run_bench("--quick", "--tiny", "--channels-last", "--json", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "channels_last" in result.stdout.splitlines()[0]
    data = json.loads(path.read_text())
    assert data["settings"]["memory_format"] == "channels_last"
    assert {row["op"].split(".")[0] for row in data["rows"]} >= {"conv2d", "max_pool2d", "e2e"}
    # The operands the harness times really are channels_last (and the default is not).
    family, case = next((f, c) for f, c in bench_cases.select_cases(bench_cases.FAMILIES, True, True)
                        if c.op == "conv2d.tiny")
    seen, ours = [], case.ours
    monkeypatch.setattr(case, "ours", lambda x, *rest: seen.append(x) or ours(x, *rest))
    for memory_format in (torch.channels_last, torch.contiguous_format):
        case.prepare(torch.device("cpu"), torch.float32, family.unit, memory_format).check()
        assert seen[-1].is_contiguous(memory_format=memory_format)


def test_without_rich_and_matplotlib_the_output_is_plain(tmp_path):
    png = tmp_path / "speedups.png"
    result = run_bench("--tiny", "--ops", "pointwise", "--plot", png,
                       prelude="sys.modules['rich'] = sys.modules['matplotlib'] = None")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pointwise.tiny" in result.stdout and "geomean speedup" in result.stdout
    assert "matplotlib is not installed" in result.stdout
    assert not png.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a GPU-less machine")
def test_cuda_without_a_gpu_fails_with_a_clear_message():
    result = run_bench("--device", "cuda", "--tiny")
    assert result.returncode == 2
    assert "no CUDA GPU is visible" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--ops", "conv3d"], "unknown op family conv3d"),
    (["--dtype", "float16"], "CPU kernels support float32 and float64 only"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--inject-wrong", "conv2d.nothing"], "no selected single op is named conv2d.nothing"),
])
def test_bad_requests_are_refused_in_one_line(args, message, capsys):
    assert bench.main(["--tiny", *args]) == 2
    assert message in capsys.readouterr().err


def test_list_names_every_family(capsys):
    assert bench.main(["--list"]) == 0
    out = capsys.readouterr().out
    for family in bench_cases.FAMILIES:
        assert family.name in out
        assert family.quick in out


def test_every_family_has_quick_and_tiny_cases_with_unique_names():
    ops = []
    for family in bench_cases.FAMILIES:
        reference = [case.op for case in family.cases(False)]
        assert family.quick in reference, family.name
        assert family.cases(True), family.name
        assert all(op.startswith(family.name + ".") for op in reference + [c.op for c in family.cases(True)])
        ops += reference
    assert len(ops) == len(set(ops))
    quick = bench_cases.select_cases(bench_cases.FAMILIES, quick=True, tiny=False)
    assert [case.op for _, case in quick] == [family.quick for family in bench_cases.FAMILIES]


def test_pooling_and_depthwise_families_run_once_their_functions_exist(monkeypatch, capsys):
    # Stand-ins with torch's arithmetic: what matters here is the harness, not the kernels.
    def separable(x, dw_w, pw_w, dw_b=None, pw_b=None, stride=1, padding=0, dilation=1):
        y = F.conv2d(x, dw_w, dw_b, stride, padding, dilation, groups=x.shape[1])
        return F.conv2d(y, pw_w, pw_b)

    for name in ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"):
        monkeypatch.setattr(cnnops, name, getattr(F, name), raising=False)
    monkeypatch.setattr(cnnops, "depthwise_separable_conv2d", separable, raising=False)
    families = [f.name for f in bench_cases.FAMILIES
                if f.name not in ("conv2d", "pointwise", "e2e", "fused")]
    results = bench.run(bench.Options(ops=families, tiny=True, quick=True))
    assert results.refused == [] and results.skipped == []
    timed = {row["op"].split(".")[0] for row in results.rows}
    assert timed == set(families)
    units = {row["op"].split(".")[0]: row["rate_unit"] for row in results.rows}
    assert units["max_pool2d"] == "GB/s" and units["separable"] == "GFLOP/s"


def test_an_op_that_raises_is_refused_with_its_error(monkeypatch):
    def broken(*args, **kwargs):
        raise NotImplementedError("no kernel for this input")

    monkeypatch.setattr(cnnops, "avg_pool2d", broken, raising=False)
    results = bench.run(bench.Options(ops=["avg_pool2d"], tiny=True))
    assert results.rows == []
    assert [r["op"] for r in results.refused] == ["avg_pool2d.tiny"]
    assert "NotImplementedError: no kernel for this input" in results.refused[0]["reason"]


def test_families_missing_from_the_build_are_skipped_with_a_reason(monkeypatch):
    monkeypatch.delattr(cnnops, "max_pool2d", raising=False)
    results = bench.run(bench.Options(ops=["max_pool2d"], tiny=True))
    assert results.rows == []
    assert results.skipped == [{"family": "max_pool2d", "reason": "cnnops has no max_pool2d yet"}]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_allocator_setting_is_recorded():
    """By default the bench has glibc keep freed memory (no timing pays for page faults);
    --allocator-defaults leaves it alone. Either way the results say which."""
    kept = bench.run(bench.Options(ops=["max_pool2d"], tiny=True)).settings["allocator"]
    assert kept.startswith("glibc: freed memory kept")
    left = bench.run(bench.Options(ops=["max_pool2d"], tiny=True, allocator_defaults=True))
    assert left.settings["allocator"].endswith("by an earlier run in this process")
    code = ("from cnnops import bench; print(bench.run(bench.Options(ops=['max_pool2d'], "
            "tiny=True, allocator_defaults=True)).settings['allocator'])")
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, timeout=300)
    assert fresh.stdout.strip().splitlines()[-1] == "default"


def test_peaks_are_measured_by_the_extension():
    assert _C.cpu_fma_peak_gflops(False, 0.01) > 0
    assert _C.cpu_fma_peak_gflops(True, 0.01) > 0
    assert _C.cpu_copy_bandwidth_gbs(4 << 20, 0.01) > 0


def test_end_to_end_nets_run_on_cnnops_kernels_through_convert_and_fuse():
    for build in (bench_cases._simple_cnn, bench_cases._vgg16_cifar):
        converted = cnnops.convert(build())
        assert any(isinstance(m, cnnops.nn.Conv2d) for m in converted.modules())
        assert any(isinstance(m, cnnops.nn.MaxPool2d) for m in converted.modules())
        assert not any(type(m) in (nn.Conv2d, nn.MaxPool2d) for m in converted.modules())
        fused = cnnops.fuse(converted)
        assert not any(isinstance(m, nn.Conv2d) for m in fused.modules())  # every conv has a ReLU


@pytest.mark.parametrize("op", ["e2e.simplecnn_b2", "fused.simplecnn_b2"])
def test_end_to_end_cases_check_logits_and_refuse_a_wrong_net(op, monkeypatch):
    family, case = next((f, c) for f, c in bench_cases.select_cases(bench_cases.FAMILIES, True, True)
                        if c.op == op)
    prepared = case.prepare(torch.device("cpu"), torch.float32, family.unit)
    assert prepared.check() is None
    assert prepared.runners("cnnops", "forward")().shape == (2, 10)
    if family.passes == ("forward",):
        with pytest.raises(ValueError, match="no training step"):
            prepared.runners("cnnops", "forward+backward")
    # A wrong kernel under the converted net is caught by the check.
    monkeypatch.setattr(cnnops.functional, "max_pool2d", lambda x, *a, **k: F.avg_pool2d(x, 2))
    assert "logits" in case.prepare(torch.device("cpu"), torch.float32, family.unit).check()


def test_half_precision_nets_are_held_to_a_float32_run_not_to_torch(monkeypatch):
    """Half-precision networks: cnnops' error against a float32 run may be the tolerance or
    twice torch's own, whatever the distance between cnnops and torch."""
    exact = torch.linspace(-1, 1, 100)
    noise = torch.randn(100) * 0.03
    close, far = exact + noise / 10, exact + noise
    compare = bench_cases._compare_to_exact
    assert compare([("g", far, exact - noise, exact)], torch.float16) is None  # torch as far
    assert compare([("g", close, far, exact)], torch.float16) is None
    assert compare([("g", exact + 0.01, exact, exact)], torch.float16) is None  # tolerance
    message = compare([("g", far, close, exact)], torch.float16)
    assert message is not None and "g differs from a float32 run" in message
    assert "shape" in compare([("g", far[:50], close, exact)], torch.float16)
    # The network check takes that path in half precision: torch's own layers standing in for
    # cnnops' (whose CPU kernels have no float16) pass; a pooling swapped for another fails.
    family, case = next((f, c) for f, c in bench_cases.select_cases(bench_cases.FAMILIES, True, True)
                        if c.op == "e2e.simplecnn_b2")
    monkeypatch.setattr(cnnops, "convert", copy.deepcopy)
    assert case.prepare(torch.device("cpu"), torch.float16, family.unit).check() is None

    def swapped(model):
        model = copy.deepcopy(model)
        model[2] = nn.AvgPool2d(2)
        return model
    monkeypatch.setattr(cnnops, "convert", swapped)
    message = case.prepare(torch.device("cpu"), torch.float16, family.unit).check()
    assert message is not None and "differs from a float32 run" in message


def test_reference_shapes_have_one_home():
    module = load_script("shapes")
    assert module.CONV_SHAPES is bench_shapes.CONV_SHAPES
    depthwise = [(s.in_channels, s.height, s.stride) for s in bench_shapes.MBV1_DEPTHWISE]
    assert depthwise == [(32, 112, 1), (64, 112, 2), (128, 56, 1), (128, 56, 2), (256, 28, 1),
                         (256, 28, 2), (512, 14, 1), (512, 14, 2), (1024, 7, 1)]
    assert all(s.batch == 8 for s in bench_shapes.MBV1_DEPTHWISE)
    for dw, pw in zip(bench_shapes.MBV1_DEPTHWISE, bench_shapes.MBV1_POINTWISE):
        assert pw.input_shape == dw.output_shape and pw.kernel == 1


def test_readme_table_is_regenerated_between_its_markers(tiny_run, tmp_path):
    readme_table = load_script("readme_table")
    _, paths = tiny_run
    data = json.loads(paths["json"].read_text())
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{readme_table.BEGIN}\nold\n{readme_table.END}\noutro\n")
    results = tmp_path / "results"
    results.mkdir()
    readme_table.main(["--results", str(results), "--readme", str(readme)])
    assert "No CPU results are recorded yet" in readme.read_text()
    data["settings"]["tiny"] = False  # only full runs are tabled
    (results / "run.json").write_text(json.dumps(data))
    readme_table.main(["--results", str(results), "--readme", str(readme)])
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    for row in data["rows"]:
        assert f"`{row['op']}`" in text
    # A later run of one family only (--ops) leaves the table on the run of every family.
    partial = dict(data, settings=dict(data["settings"], families=["conv2d"]),
                   machine=dict(data["machine"], date="9999-12-31T00:00:00+00:00"),
                   rows=[row for row in data["rows"] if row["op"].startswith("conv2d")])
    (results / "later.json").write_text(json.dumps(partial))
    readme_table.main(["--results", str(results), "--readme", str(readme)])
    assert readme.read_text() == text


def test_cuda_peaks_come_from_the_device_properties(monkeypatch):
    # No GPU here: an H100's properties, and the copy measurement stubbed out.
    from types import SimpleNamespace

    h100 = SimpleNamespace(major=9, minor=0, multi_processor_count=132, clock_rate=1_830_000,
                           memory_clock_rate=2_619_000, memory_bus_width=5120,
                           total_memory=80 << 30, name="NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: h100)
    monkeypatch.setattr(bench, "_cuda_copy_gbs", lambda device, seconds: 3000.0)
    peaks = bench.measure_cuda_peaks(torch.device("cuda"), 0.1)
    assert peaks["fma_gflops"]["float32"] == pytest.approx(61_800, rel=0.01)
    assert peaks["tensor_gflops"]["float16"] == pytest.approx(989_000, rel=0.01)
    assert peaks["tensor_gflops"]["tf32"] == pytest.approx(494_500, rel=0.01)
    assert peaks["dram_gbs_spec"] == pytest.approx(3352, rel=0.01)
    assert bench.peak_for(peaks, "float32", "GFLOP/s") == peaks["fma_gflops"]["float32"]
    assert bench.peak_for(peaks, "float16", "GFLOP/s") == peaks["tensor_gflops"]["float16"]
    assert bench.peak_for(peaks, "float64", "GFLOP/s") == peaks["tensor_gflops"]["float64"]
    assert bench.peak_for(peaks, "float32", "GB/s") == 3000.0

    # An older torch without clock_rate: no compute peak, and rows say so with None.
    del h100.clock_rate
    peaks = bench.measure_cuda_peaks(torch.device("cuda"), 0.1)
    assert peaks["fma_gflops"] == {} and bench.peak_for(peaks, "float32", "GFLOP/s") is None


def test_gpu_check_script_parses_and_explains_its_usage():
    script = os.path.join(ROOT, "benchmarks", "gpu_check.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    result = subprocess.run(["bash", script], capture_output=True, text=True)
    assert result.returncode == 2 and "usage" in result.stderr


def test_traffic_bound_counts_the_least_bytes_of_each_pass():
    traffic = load_script("traffic_bound")
    x, w, b = torch.zeros(2, 4, 8, 8), torch.zeros(4, 1, 3, 3), torch.zeros(4)
    y = torch.zeros(2, 4, 4, 4)  # stride 2
    unit = 4  # bytes per element
    forward = (x.numel() + w.numel() + b.numel() + y.numel()) * unit
    assert traffic.least_bytes([x, w, b], y, "forward") == forward
    # backward: grad_output read, grad_input written, the input read again for grad_weight
    assert traffic.least_bytes([x, w, b], y, "forward+backward") == (
        forward + (y.numel() + 2 * x.numel()) * unit)
    # a pooling (no weight) reads the input once in the forward pass only
    assert traffic.least_bytes([x], y, "forward+backward") == (
        (x.numel() + y.numel()) * unit * 2)
    assert traffic.least_bytes([x, None, None], y, "forward") == (x.numel() + y.numel()) * unit


def test_traffic_bound_runs_on_tiny_shapes(tmp_path):
    path = tmp_path / "bound.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "traffic_bound.py"), "--tiny",
         "--ops", "depthwise,max_pool2d", "--min-run-time", "0.01", "--threads", "1",
         "--json", str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(path.read_text())["rows"]
    assert {(row["op"], row["pass"]) for row in rows} == {
        (op, p) for op in ("depthwise.tiny", "max_pool2d.tiny")
        for p in ("forward", "forward+backward")}
    for row in rows:
        assert row["bound_ms"] > 0 and row["cnnops_ms"] > 0 and row["torch_ms"] > 0
        assert row["torch_over_bound"] == pytest.approx(row["torch_ms"] / row["bound_ms"])
    assert "geomean per family" in result.stdout
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "traffic_bound.py"),
                          "--ops", "conv2d"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--ops: conv2d not among" in bad.stderr
