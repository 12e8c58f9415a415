"""Build cnnops: a C++ (and, where available, CUDA) extension for PyTorch.

Every switch is an environment variable (see README.md, "Build switches"):

  FORCE_CUDA=1          build the CUDA sources even when no GPU is visible
  USE_CUDA=0            build the CPU sources only
  DEBUG=1               -O0 -g (and -lineinfo for CUDA)
  CUDA_HOME             the CUDA toolkit (else /usr/local/cuda)
  TORCH_CUDA_ARCH_LIST  GPU architectures (default: the visible GPUs, else 8.0 and 9.0)
  MAX_JOBS              parallel compile jobs (read by torch's ninja build)
"""

import glob
import os
import sys

from setuptools import setup

import torch
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.join(ROOT, "python", "cnnops")


def env_flag(name: str, default: str = "0") -> bool:
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes", "on")


def find_cuda_home() -> str | None:
    """CUDA_HOME, then /usr/local/cuda: nvcc on PATH may be a wrapper outside the toolkit."""
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if candidate and os.path.exists(os.path.join(candidate, "bin", "nvcc")):
            return candidate
    return None


def resolve_config() -> dict:
    debug = env_flag("DEBUG")
    cuda_home = find_cuda_home()
    torch_has_cuda = torch.version.cuda is not None
    if os.environ.get("USE_CUDA", "").strip() == "0":
        use_cuda, why = False, "USE_CUDA=0"
    elif env_flag("FORCE_CUDA"):
        use_cuda, why = True, "FORCE_CUDA=1"
    elif cuda_home and torch_has_cuda and torch.cuda.is_available():
        use_cuda, why = True, "a GPU, a CUDA toolkit and a CUDA build of torch are present"
    elif cuda_home and torch_has_cuda:
        use_cuda, why = True, "a CUDA toolkit and a CUDA build of torch are present"
    else:
        use_cuda, why = False, "no CUDA toolkit or no CUDA build of torch"
    if use_cuda and not torch_has_cuda:
        sys.exit("cnnops: CUDA was requested but this torch is a CPU-only build; set USE_CUDA=0")
    if use_cuda and cuda_home is None:
        sys.exit("cnnops: CUDA was requested but no toolkit was found; set CUDA_HOME")

    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if use_cuda and not arch_list:
        if torch.cuda.is_available():
            caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
            arch_list = ";".join(f"{major}.{minor}" for major, minor in caps)
        else:
            arch_list = "8.0;9.0"
    return {
        "torch_version": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "use_cuda": use_cuda,
        "cuda_reason": why,
        "cuda_home": cuda_home if use_cuda else None,
        "arch_list": arch_list if use_cuda else None,
        "debug": debug,
        "max_jobs": os.environ.get("MAX_JOBS", "(torch's default)"),
    }


def write_build_config(config: dict) -> None:
    """Record what the library was built against, so import can tell a stale build."""
    lines = ['"""Written by setup.py at build time; do not edit."""', "", "BUILD_CONFIG = {"]
    lines += [f"    {key!r}: {value!r}," for key, value in config.items()]
    lines += ["}", ""]
    with open(os.path.join(PACKAGE_DIR, "_build_config.py"), "w") as f:
        f.write("\n".join(lines))


def loaded_libstdcxx() -> str | None:
    """The path of the shared libstdc++ this process loaded with libtorch (Linux), or None."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split(maxsplit=5)[-1].strip()
                if os.path.basename(path).startswith("libstdc++.so"):
                    return path
    except OSError:
        pass
    return None


def link_args() -> list[str]:
    """OpenMP, and on Linux the shared C++ runtime that libtorch itself uses, named by path.

    A toolchain may resolve -lstdc++ to an archive: the GPU machine's g++ is a wrapper whose
    -B directory holds libstdc++.a and no libstdc++.so. The extension then carries a private
    copy of the C++ runtime whose locale was never set up, while c10's error messages are
    formatted by that copy through torch's inline headers: numbers vanish from them or,
    linked with -Bsymbolic-functions, every error raised from C++ is a segfault. A library
    named by its path ahead of the driver's own -lstdc++ resolves every std:: symbol, so no
    archive member is pulled in."""
    args = ["-fopenmp"]
    libstdcxx = loaded_libstdcxx() if sys.platform.startswith("linux") else None
    if libstdcxx:
        args.append(libstdcxx)
    return args


def make_extension(config: dict):
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    sources += sorted(glob.glob(os.path.join("csrc", "common", "*.cpp")))
    sources += sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    opt = ["-O0", "-g"] if config["debug"] else ["-O3"]
    cxx_flags = opt + ["-fopenmp", "-Wall", "-Wno-unknown-pragmas"]
    define_macros = [("CNNOPS_TORCH_VERSION", f'"{torch.__version__}"')]
    include_dirs = [os.path.join(ROOT, "csrc")]
    if config["use_cuda"]:
        sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        # No "arch" or -std flags of our own: torch adds -gencode flags from TORCH_CUDA_ARCH_LIST
        # and the C++ standard its headers need (C++17 up to torch 2.9, C++20 after).
        nvcc_flags = opt + ["--expt-relaxed-constexpr", "-Xcompiler", "-fopenmp"]
        if config["debug"]:
            nvcc_flags.append("-lineinfo")
        define_macros.append(("CNNOPS_WITH_CUDA", "1"))
        return cpp_extension.CUDAExtension(
            name="cnnops._C",
            sources=sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
            extra_link_args=link_args(),
        )
    return cpp_extension.CppExtension(
        name="cnnops._C",
        sources=sources,
        include_dirs=include_dirs,
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=link_args(),
    )


config = resolve_config()
if config["use_cuda"]:
    os.environ["CUDA_HOME"] = config["cuda_home"]
    os.environ["TORCH_CUDA_ARCH_LIST"] = config["arch_list"]
    cpp_extension.CUDA_HOME = config["cuda_home"]  # torch guessed it at import, from nvcc on PATH
print("cnnops build configuration:")
for key, value in config.items():
    print(f"  {key:14s} {value}")
write_build_config(config)

setup(
    ext_modules=[make_extension(config)],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
