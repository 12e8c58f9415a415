// Scratch buffers that stay with the thread that used them, from one kernel call to the next.
//
// A fresh buffer of a few megabytes comes from mmap, and the kernel then pages it in and
// zeroes it, page by page, on every call: for the Winograd filter transform of a 512 -> 512
// 3x3 layer that was most of its time. A slot keeps its memory (up to kKeepBytes) for the
// next call on the same thread; bigger requests are allocated and freed per call.
//
// Slots are per thread and must not be held twice at once on one thread: a kernel uses
// slots kOperands and kInput for what its calling thread allocates before at::parallel_for,
// and the other slots inside the parallel region (where the calling thread is one of the
// workers).
// The memory is uninitialised and starts on a 64-byte boundary.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

namespace cnnops::cpu {

enum ScratchSlot : int {
  kOperands = 0, kInput = 1, kPanelB = 2, kTile = 3, kResult = 4,
  kIntermediate = 5,  // a whole-tensor result that one operator passes between its stages
  kRows = 6,          // inside a parallel region: a tile's rows (beside kTile)
  kScratchSlots = 7
};

namespace detail {

// Memory aligned to a cache line: the micro-kernels load whole 64-byte vectors from packed
// panels, and a panel that starts off a line boundary (malloc gives 16 bytes) splits every
// such load across two lines.
constexpr std::align_val_t kLineAlignment{64};

struct FreeAligned {
  void operator()(void* p) const { ::operator delete(p, kLineAlignment); }
};
using AlignedBytes = std::unique_ptr<void, FreeAligned>;

inline AlignedBytes allocate_aligned(size_t bytes) {
  return AlignedBytes(::operator new(bytes, kLineAlignment));
}

struct KeptBuffer {
  AlignedBytes data;
  size_t bytes = 0;
};

// One set of slots per thread, shared by every element type.
inline std::array<KeptBuffer, kScratchSlots>& kept_buffers() {
  thread_local std::array<KeptBuffer, kScratchSlots> slots;
  return slots;
}

}  // namespace detail

template <typename T>
class Scratch {
 public:
  Scratch(ScratchSlot slot, int64_t count) {
    const size_t bytes = static_cast<size_t>(count) * sizeof(T);
    if (bytes > kKeepBytes) {
      owned_ = detail::allocate_aligned(bytes);
      data_ = static_cast<T*>(owned_.get());
      return;
    }
    detail::KeptBuffer& kept = detail::kept_buffers()[slot];
    if (kept.bytes < bytes) {
      kept.data.reset();  // free first: the old and new buffers need not coexist
      kept.data = detail::allocate_aligned(bytes);
      kept.bytes = bytes;
    }
    data_ = static_cast<T*>(kept.data.get());
  }

  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  T* get() const { return data_; }

 private:
  static constexpr size_t kKeepBytes = size_t{64} << 20;

  detail::AlignedBytes owned_;
  T* data_ = nullptr;
};

}  // namespace cnnops::cpu
