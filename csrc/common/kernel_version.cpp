#include "common/kernel_version.h"

#include <c10/util/Exception.h>

#include <array>
#include <atomic>

namespace cnnops {

namespace {

constexpr std::array<const char*, static_cast<int>(OpFamily::count)> kFamilyNames = {
    "conv2d", "pool", "depthwise"};

std::array<std::atomic<int>, static_cast<int>(OpFamily::count)> g_versions{};

int family_index(const std::string& family) {
  for (size_t i = 0; i < kFamilyNames.size(); ++i) {
    if (family == kFamilyNames[i]) return static_cast<int>(i);
  }
  TORCH_CHECK_VALUE(false, "unknown op family '", family,
                    "'; expected one of 'conv2d', 'pool', 'depthwise'");
}

}  // namespace

int kernel_version(OpFamily family) {
  return g_versions[static_cast<int>(family)].load(std::memory_order_relaxed);
}

void set_kernel_version(const std::string& family, int version) {
  TORCH_CHECK_VALUE(version >= 0, "kernel version must be >= 0, got ", version);
  g_versions[family_index(family)].store(version, std::memory_order_relaxed);
}

int get_kernel_version(const std::string& family) {
  return g_versions[family_index(family)].load(std::memory_order_relaxed);
}

}  // namespace cnnops
