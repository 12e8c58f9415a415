// The plain functions the Python side needs, bound with pybind11. Operators need no
// bindings: TORCH_LIBRARY registers them when this library is loaded.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "common/kernel_version.h"
#include "cpu/gemm.h"
#include "cpu/peak.h"

#ifndef CNNOPS_TORCH_VERSION
#define CNNOPS_TORCH_VERSION "unknown"
#endif

namespace py = pybind11;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "cnnops compiled kernels (operators live in torch.ops.cnnops)";
  m.def("torch_version", [] { return std::string(CNNOPS_TORCH_VERSION); },
        "The torch version this library was compiled against.");
  m.def("with_cuda", [] {
#ifdef CNNOPS_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "Whether the CUDA kernels were compiled in.");
  m.def("cpu_isa", [] { return std::string(cnnops::cpu::cpu_isa()); },
        "The instruction set the CPU kernels run with: 'avx512', 'avx2+fma' or 'portable'.");
  m.def("cpu_best_isa", [] { return std::string(cnnops::cpu::cpu_best_isa()); },
        "The widest instruction set this CPU supports, whatever CNNOPS_CPU_ISA says.");
  m.def("set_kernel_version", &cnnops::set_kernel_version, py::arg("family"), py::arg("version"),
        "Pin the numbered kernel version of an op family (0 = automatic, 1 = reference).");
  m.def("get_kernel_version", &cnnops::get_kernel_version, py::arg("family"));
  m.def("cpu_fma_peak_gflops", &cnnops::cpu::fma_peak_gflops, py::arg("double_precision"),
        py::arg("min_seconds") = 0.2, py::call_guard<py::gil_scoped_release>(),
        "Measured GFLOP/s of float (or double) FMAs on all threads with the ISA in use.");
  m.def("cpu_copy_bandwidth_gbs", &cnnops::cpu::copy_bandwidth_gbs, py::arg("bytes"),
        py::arg("min_seconds") = 0.2, py::call_guard<py::gil_scoped_release>(),
        "Measured GB/s (read + written) of a parallel copy of `bytes` bytes.");
}
