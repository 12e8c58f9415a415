// Which numbered kernel version each op family runs, so that tests and benchmarks can pin
// the simple reference kernel or one fast version and compare them (llm.c's habit).
//
//   version 0  automatic: the fastest kernel that applies (the default)
//   version 1  the reference kernel: a plain loop, one output at a time
//   version 2+ the fast kernels, numbered per family in the kernel file's header comment
#pragma once

#include <string>

namespace cnnops {

enum class OpFamily : int { conv2d = 0, pool = 1, depthwise = 2, count = 3 };

int kernel_version(OpFamily family);

// By family name, for Python; an unknown name or a negative version raises ValueError.
void set_kernel_version(const std::string& family, int version);
int get_kernel_version(const std::string& family);

}  // namespace cnnops
