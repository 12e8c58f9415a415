// The GEMM micro- and macro-kernel, written once over a vector-ISA traits type `V` and
// compiled twice: by gemm_avx2.cpp (V = 256-bit AVX2 vectors with FMA) and by
// gemm_portable.cpp (V = GCC/Clang generic vectors). See gemm.h for the packed layouts.
//
// This header includes nothing: the AVX2 translation unit compiles everything after its
// `#pragma GCC target` with AVX2 enabled, and must not pull in shared inline code.
#pragma once

namespace cnnops::cpu::detail {

// V provides: scalar, vec, width, zero(), load(p), broadcast(x), fma(a, b, acc) = a*b + acc,
// add(a, b), store(p, v). Loads and stores are unaligned.
template <typename V, int MR, int NV>
inline void micro_kernel(long K, const typename V::scalar* __restrict a,
                         const typename V::scalar* __restrict b, typename V::scalar* c,
                         long rs_c, long cs_c, int m_valid, int n_valid) {
  using T = typename V::scalar;
  using vec = typename V::vec;
  constexpr int W = V::width;
  constexpr int NR = NV * W;

  vec acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();
  }

  for (long k = 0; k < K; ++k) {
    vec bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = V::load(b + k * NR + v * W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const vec ai = V::broadcast(a[k * MR + i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = V::fma(ai, bv[v], acc[i][v]);
    }
  }

  if (m_valid == MR && n_valid == NR && cs_c == 1) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        T* dst = c + i * rs_c + v * W;
        V::store(dst, V::add(V::load(dst), acc[i][v]));
      }
    }
    return;
  }
  // Edge tile or strided columns (channels_last output): go through a scalar copy.
  T tile[MR][NR];
  for (int i = 0; i < MR; ++i) {
    for (int v = 0; v < NV; ++v) V::store(&tile[i][v * W], acc[i][v]);
  }
  for (int i = 0; i < m_valid; ++i) {
    for (int j = 0; j < n_valid; ++j) c[i * rs_c + j * cs_c] += tile[i][j];
  }
}

// Walks C in MR x NR blocks: each B panel (K x NR) stays in L1 while all A panels pass by.
template <typename V, int MR, int NV>
void gemm_packed(long M, long N, long K, const typename V::scalar* a,
                 const typename V::scalar* b, typename V::scalar* c, long rs_c, long cs_c) {
  constexpr int NR = NV * V::width;
  for (long j = 0; j < N; j += NR) {
    const int n_valid = static_cast<int>(N - j < NR ? N - j : NR);
    const typename V::scalar* b_panel = b + (j / NR) * K * NR;
    for (long i = 0; i < M; i += MR) {
      const int m_valid = static_cast<int>(M - i < MR ? M - i : MR);
      micro_kernel<V, MR, NV>(K, a + (i / MR) * K * MR, b_panel, c + i * rs_c + j * cs_c, rs_c,
                              cs_c, m_valid, n_valid);
    }
  }
}

}  // namespace cnnops::cpu::detail
