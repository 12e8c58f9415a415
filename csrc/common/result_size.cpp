#include "common/result_size.h"

#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

#include <unistd.h>

namespace cnnops {

namespace {

// floor(a / b) for b > 0, whatever the sign of a, without overflow.
int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

// a + b into *out; whether it overflowed. Not c10::add_overflows: torch 2.5's has a uint64_t
// overload alone.
bool add_overflows(int64_t a, int64_t b, int64_t* out) {
  return __builtin_add_overflow(a, b, out);
}

uint64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return UINT64_MAX;  // unknown: no limit
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
}

}  // namespace

int64_t window_out_size(const char* op, int64_t in, int64_t kernel, int64_t pad_begin,
                        int64_t pad_end, int64_t stride, int64_t dilation, bool ceil_mode,
                        const char* padding_name, const char* dilation_name,
                        const char* stride_name) {
  int64_t padded = 0, extent = 0;
  TORCH_CHECK_VALUE(!add_overflows(in, pad_begin, &padded) &&
                        !add_overflows(padded, pad_end, &padded),
                    op, ": argument '", padding_name, "' (", pad_begin, " + ", pad_end,
                    ") is too large: the padded input extent ", in, " + padding does not fit "
                    "in int64");
  TORCH_CHECK_VALUE(!c10::mul_overflows(dilation, kernel - 1, &extent), op, ": argument '",
                    dilation_name, "' (", dilation, ") is too large for a kernel of extent ",
                    kernel, ": dilation * (kernel - 1) does not fit in int64");
  // padded, extent in [0, INT64_MAX]: the difference cannot overflow
  int64_t span = padded - extent - 1;
  if (ceil_mode) {
    TORCH_CHECK_VALUE(!add_overflows(span, stride - 1, &span), op, ": argument '",
                      stride_name, "' (", stride, ") is too large for ceil_mode: the output "
                      "size arithmetic does not fit in int64");
  }
  return floor_div(span, stride) + 1;
}

void check_result_size(const char* op, const char* source, c10::IntArrayRef sizes,
                       c10::ScalarType dtype, c10::DeviceType device) {
  int64_t numel = 1, bytes = 0;
  bool overflows = false;
  for (int64_t s : sizes) overflows = overflows || c10::mul_overflows(numel, s, &numel);
  overflows = overflows ||
              c10::mul_overflows(numel, static_cast<int64_t>(c10::elementSize(dtype)), &bytes);
  TORCH_CHECK_VALUE(!overflows, op, ": the result would have shape ", sizes,
                    ", more elements than int64 can count; its size comes from ", source);
  if (device != c10::DeviceType::CPU) return;  // other devices' allocators refuse by themselves
  const uint64_t memory = physical_memory_bytes();
  TORCH_CHECK_VALUE(static_cast<uint64_t>(bytes) <= memory, op, ": the result would have shape ",
                    sizes, " (", bytes, " bytes), more than this machine's memory (", memory,
                    " bytes); its size comes from ", source);
}

}  // namespace cnnops
