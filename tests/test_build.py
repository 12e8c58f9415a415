"""The installation itself: import-time checks, build information, the `cnnops` command."""

import subprocess
import sys

import pytest
import torch

import cnnops
from cnnops import _ops


def run_python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)


def test_import_refuses_a_library_built_for_another_torch():
    # Pretend another torch is installed: the import must name both versions and the fix.
    result = run_python("import torch; torch.__version__ = '0.0.1'; import cnnops")
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("ImportError")
    assert "0.0.1" in message and "compiled against torch" in message
    assert "pip install --no-build-isolation -e ." in message


def test_library_was_built_for_this_torch():
    assert _ops._C.torch_version() == torch.__version__


def test_cpu_isa_is_reported():
    assert _ops._C.cpu_isa() in ("avx512", "avx2+fma", "portable")
    assert _ops._C.cpu_best_isa() in ("avx512", "avx2+fma", "portable")


def test_cpu_isa_can_be_capped_to_portable():
    import os

    env = dict(os.environ, CNNOPS_CPU_ISA="portable")
    result = run_python("import cnnops; print(cnnops._ops._C.cpu_isa())", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "portable"


def test_kernel_version_restores_the_previous_version():
    assert _ops._C.get_kernel_version("conv2d") == 0
    with cnnops.kernel_version("conv2d", 1):
        assert _ops._C.get_kernel_version("conv2d") == 1
    assert _ops._C.get_kernel_version("conv2d") == 0


@pytest.mark.parametrize("family, version, match", [("conv3d", 1, "family"), ("conv2d", -1, "version")])
def test_kernel_version_refuses_bad_arguments(family, version, match):
    with pytest.raises(ValueError, match=match):
        with cnnops.kernel_version(family, version):
            pass


def test_cnnops_info_prints_the_build_and_passes_its_self_check():
    result = subprocess.run([sys.executable, "-m", "cnnops.cli", "info"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert torch.__version__ in result.stdout
    assert "cpu ISA in use" in result.stdout
    assert "self-check passed" in result.stdout
    assert "FAIL" not in result.stdout


def test_errors_raised_in_cpp_keep_their_numbers():
    """c10 formats an error message with the C++ runtime the extension was linked with. A
    private, statically linked libstdc++ (a toolchain that adds -static-libstdc++) drops the
    numbers from the message, or crashes the process; setup.py's link_args() prevents it."""
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(ValueError, match=r"input has 4 channels.* = 3 channels"):
        torch.ops.cnnops.conv2d(x, torch.randn(2, 3, 3, 3), None, [1, 1], [0, 0, 0, 0], [1, 1], 1)
    with pytest.raises(ValueError, match=r"must be >= 1, got \[0, 0\]"):
        torch.ops.cnnops.max_pool2d(x, [0, 0], [1, 1], [0, 0], [1, 1], False)
