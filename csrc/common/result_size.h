// Host-side guards on sizes, shared by every operator: output-size arithmetic that cannot
// wrap around int64, and a refusal of results no machine could hold, before anything is
// allocated (so that a huge size gets a message naming the argument, not an allocator
// failure, an overflowed storage size or a wrong shape).
#pragma once

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>

#include <cstdint>

namespace cnnops {

// The output extent of a sliding window along one axis, torch's formula
//   floor((in + pad_begin + pad_end - dilation * (kernel - 1) - 1 [+ stride - 1]) / stride) + 1
// (the bracket with ceil_mode), computed without int64 overflow: when a term does not fit,
// refuses naming `padding_name`, `dilation_name` or `stride_name`. May return <= 0 when the
// window does not fit (callers check). in, kernel >= 0, pads >= 0, stride, dilation >= 1.
int64_t window_out_size(const char* op, int64_t in, int64_t kernel, int64_t pad_begin,
                        int64_t pad_end, int64_t stride, int64_t dilation, bool ceil_mode,
                        const char* padding_name = "padding",
                        const char* dilation_name = "dilation",
                        const char* stride_name = "stride");

// Refuses a result of `sizes` whose element count or size in bytes does not fit int64, or
// which on the CPU is larger than the machine's physical memory. `source` names the
// arguments the size comes from, e.g. "'input' and 'output_size'".
void check_result_size(const char* op, const char* source, c10::IntArrayRef sizes,
                       c10::ScalarType dtype, c10::DeviceType device);

}  // namespace cnnops
