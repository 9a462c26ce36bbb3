// Building blocks shared by the package's CPU kernels (attention, matmul, elementwise, lstm): float vectors
// of one machine register written with GCC vector extensions (16 lanes with AVX-512, 8 otherwise: one AVX2
// register, two SSE or NEON ones), one register-tiled matrix-product micro-kernel sized to the register
// file, and parallel loops over XLA's intra-op thread pool.
#ifndef NLP_JAX_KERNELS_CPU_KERNELS_H_
#define NLP_JAX_KERNELS_CPU_KERNELS_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace nlp_jax {

namespace ffi = xla::ffi;

// The micro-tile: up to kRows rows x kMaxVecs vectors of the output held in registers while k runs: 24
// accumulators of AVX-512's 32 registers, 12 of AVX2's 16.
#ifdef __AVX512F__
constexpr int64_t kLanes = 16;
constexpr int kMaxVecs = 4;
#else
constexpr int64_t kLanes = 8;
constexpr int kMaxVecs = 2;
#endif
constexpr int kRows = 6;
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t IVec __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline Vec Load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void Store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }
inline Vec Splat(float x) { return Vec{} + x; }
inline int64_t RoundUp(int64_t n, int64_t m) { return (n + m - 1) / m * m; }
inline void Fit(std::vector<float>& buf, int64_t n) {  // grow a reused scratch buffer to n floats
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(n);
}
inline IVec Below(int64_t j, int64_t limit) {  // lanes j .. j + kLanes - 1 that are < limit
#ifdef __AVX512F__
  const IVec iota = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
#else
  const IVec iota = {0, 1, 2, 3, 4, 5, 6, 7};
#endif
  return iota < static_cast<int32_t>(limit - j);
}
// Horizontal max and sum by halving: lanes i and i + w combined for w = kLanes / 2, ..., 2, 1 (4 shuffles
// for 16 lanes, not 15 dependent scalar steps).
template <typename F>
inline float Reduce(Vec v, F op) {
#ifdef __AVX512F__
  v = op(v, __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
  v = op(v, __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11));
  v = op(v, __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
  v = op(v, __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));
#else
  v = op(v, __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3));
  v = op(v, __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5));
  v = op(v, __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6));
#endif
  return v[0];
}
inline float Max(Vec v) {
  return Reduce(v, [](Vec a, Vec b) { return a > b ? a : b; });
}
inline float Sum(Vec v) {
  return Reduce(v, [](Vec a, Vec b) { return a + b; });
}

// e^x = 2^n e^r: n = round(x / ln 2) and r = x - n ln 2 (|r| <= ln(2) / 2, ln 2 in two parts, Cody-Waite),
// for x clamped to [-88, 88]; returns 2^n, and r in *r.
inline Vec ExpReduce(Vec x, Vec* r) {
  const Vec c = x < -88.f ? Splat(-88.f) : (x > 88.f ? Splat(88.f) : x);
  const Vec n = (c * 1.44269504f + 12582912.f) - 12582912.f;  // round to nearest via 1.5 * 2^23
  *r = (c - n * 0.693359375f) - n * -2.12194440e-4f;
  const IVec bits = (__builtin_convertvector(n, IVec) + 127) << 23;
  Vec scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return scale;
}

// e^r - 1 for |r| <= ln(2) / 2 by its Taylor polynomial of degree 7 (truncation error below 1e-8
// relative), without the constant term, so it stays accurate as r -> 0.
inline Vec Expm1Reduced(Vec r) {
  Vec p = Splat(1.f / 5040);
  for (float coef : {1.f / 720, 1.f / 120, 1.f / 24, 1.f / 6, 0.5f, 1.f}) p = p * r + coef;
  return p * r;
}

// e^x; inputs below -87.3 give 0, as float32's exp nearly does.
inline Vec Exp(Vec x) {
  Vec r;
  const Vec scale = ExpReduce(x, &r);
  return x < -87.3f ? Splat(0.f) : scale * (Expm1Reduced(r) + 1.f);
}

// e^x - 1, accurate for small x too: 2^n (e^r - 1) + (2^n - 1).
inline Vec Expm1(Vec x) {
  Vec r;
  const Vec scale = ExpReduce(x, &r);
  return scale * Expm1Reduced(r) + (scale - 1.f);
}

inline Vec LoadN(const float* p, int64_t n) {  // n <= kLanes floats, zeros after
  if (n == kLanes) return Load(p);
  Vec v = Splat(0.f);
  std::memcpy(&v, p, n * sizeof(float));
  return v;
}
inline void StoreN(float* p, Vec v, int64_t n) {
  if (n == kLanes) return Store(p, v);
  std::memcpy(p, &v, n * sizeof(float));
}

// C[i, :] = (accumulate ? C[i, :] : 0) + sum_{k0 <= k < k1} A[i, k] B[k, :] for R rows and NV vectors of
// columns, where A[i, k] = a[i * ar + k * ak], B[k, :] starts at b + k * ldb and C[i, :] at c + i * ldc.
template <int R, int NV>
void Tile(const float* a, int64_t ar, int64_t ak, const float* b, int64_t ldb, int64_t k0, int64_t k1, float* c,
          int64_t ldc, bool accumulate) {
  Vec acc[R][NV];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = accumulate ? Load(c + i * ldc + v * kLanes) : Splat(0.f);
  for (int64_t k = k0; k < k1; ++k) {
    Vec bk[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bk[v] = Load(b + k * ldb + v * kLanes);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const float x = a[i * ar + k * ak];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] += x * bk[v];
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) Store(c + i * ldc + v * kLanes, acc[i][v]);
}

using TileFn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t, float*, int64_t,
                        bool);
template <int R, int... V>
constexpr std::array<TileFn, kMaxVecs> TilesOfRows(std::integer_sequence<int, V...>) {
  return {&Tile<R, V + 1>...};
}
template <int R>
constexpr std::array<TileFn, kMaxVecs> TilesOfRows() {
  return TilesOfRows<R>(std::make_integer_sequence<int, kMaxVecs>{});
}
constexpr std::array<std::array<TileFn, kMaxVecs>, kRows> kTiles = {
    TilesOfRows<1>(), TilesOfRows<2>(), TilesOfRows<3>(), TilesOfRows<4>(), TilesOfRows<5>(), TilesOfRows<6>()};

inline void RunTile(int r, int nv, const float* a, int64_t ar, int64_t ak, const float* b, int64_t ldb, int64_t k0,
             int64_t k1, float* c, int64_t ldc, bool accumulate) {
  kTiles[r - 1][nv - 1](a, ar, ak, b, ldb, k0, k1, c, ldc, accumulate);
}

struct Range {
  int64_t k0, k1, cols;  // the k range summed and the number of columns computed (a multiple of kLanes)
};

// C = / += A B for m rows, in tiles of kRows rows; range(i, r) gives the row tile [i, i + r) its k range
// and column count (which is how causal attention skips work).
template <typename F>
void Gemm(const float* a, int64_t ar, int64_t ak, const float* b, int64_t ldb, int64_t m, float* c, int64_t ldc,
          bool accumulate, F range) {
  for (int64_t i = 0; i < m; i += kRows) {
    const int r = static_cast<int>(std::min<int64_t>(kRows, m - i));
    const Range g = range(i, r);
    for (int64_t j = 0; j < g.cols; j += kMaxVecs * kLanes) {
      const int nv = static_cast<int>(std::min<int64_t>(kMaxVecs, (g.cols - j) / kLanes));
      RunTile(r, nv, a + i * ar, ar, ak, b + j, ldb, g.k0, g.k1, c + i * ldc + j, ldc, accumulate);
    }
  }
}

// fn(stage, task) for stages 0 .. stages-1 in order, `tasks` per stage, where a stage's tasks may only
// start once the previous stage's are all done (a recurrence: step t needs step t - 1). The caller and
// the pool's threads claim tasks in order from one counter and spin at stage boundaries, so there is one
// hand-off to the pool per call instead of one per step; a helper that starts late joins at the current
// stage, and the caller alone finishes everything if no helper ever starts.
template <typename F>
void StagedParallelFor(ffi::ThreadPool& pool, int64_t stages, int64_t tasks, const F& fn) {
  struct Counters {
    std::atomic<int64_t> next{0}, done{0};
  };
  auto state = std::make_shared<Counters>();
  const int64_t total = stages * tasks;
  auto run = [state, &fn, tasks, total] {
    for (int64_t g; (g = state->next.fetch_add(1)) < total;) {
      const int64_t stage = g / tasks;
      while (state->done.load(std::memory_order_acquire) < stage * tasks) {
      }
      fn(stage, g % tasks);
      state->done.fetch_add(1, std::memory_order_acq_rel);
    }
  };
  for (int64_t helper = 1; helper < std::min<int64_t>(pool.num_threads(), tasks); ++helper)
    pool.Schedule(decltype(run)(run));
  run();
  while (state->done.load(std::memory_order_acquire) < total) std::this_thread::yield();
}

// Runs fn(0 .. n-1) on the calling thread and the pool's; returns when all are done.
template <typename F>
void ParallelFor(ffi::ThreadPool& pool, int64_t n, const F& fn) {
  StagedParallelFor(pool, 1, n, [&fn](int64_t, int64_t i) { fn(i); });
}

// fn(lo, hi) over [0, n) in chunks of `chunk`, spread as ParallelFor.
template <typename F>
void ParallelForChunks(ffi::ThreadPool& pool, int64_t n, int64_t chunk, const F& fn) {
  ParallelFor(pool, (n + chunk - 1) / chunk, [&](int64_t task) { fn(task * chunk, std::min(n, (task + 1) * chunk)); });
}

// f(offset, count) over [0, n) in vectors; the last may be partial.
template <typename F>
inline void ForVectors(int64_t n, F f) {
  for (int64_t j = 0; j < n; j += kLanes) f(j, std::min(kLanes, n - j));
}

}  // namespace nlp_jax

#endif  // NLP_JAX_KERNELS_CPU_KERNELS_H_
