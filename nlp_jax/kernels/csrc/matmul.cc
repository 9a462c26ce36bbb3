// CPU kernel for ops.matmul_cpu: C = op(A) op(B) in float32, op the identity or the transpose (ops.dense
// uses x W and dy W^T), for the shapes of small models, where XLA's CPU dot runs at 100-170 GFLOP/s on
// this project's machine (BENCHMARKS.md).
//
// C (M x N) is cut into blocks of kBlockRows x kBlockCols, one task each on XLA's intra-op thread pool.
// Within a block, each 64-column panel of op(B) is swept by row tiles of 6 (Tile<6, 4> of cpu_kernels.h:
// 24 accumulators; per step of k, 4 vector loads and 6 broadcasts feed 24 fused multiply-adds). When
// op(B) = B^T or its width is not a multiple of 64, it is first copied once into contiguous, zero-padded
// k x 64 panels (transposed as needed); otherwise the tiles read B's rows in place. A is read in place
// through its strides. Columns of a last, partial vector go through a small buffer.
#include "cpu_kernels.h"

namespace {

using namespace nlp_jax;  // NOLINT: the shared vector helpers, Tile and ParallelFor

constexpr int64_t kBlockRows = 96, kBlockCols = 256;  // multiples of kRows and of kPanel
constexpr int64_t kPanel = kMaxVecs * kLanes;         // columns per panel

struct Problem {
  const float* a;
  int64_t ar, ak;  // A[i, k] = a[i * ar + k * ak]
  const float* b;  // columns [j, j + 64) of op(B) start at b + j * col_stride, rows ldb floats apart
  int64_t col_stride, ldb;
  float* c;
  int64_t m, n, k;
};

// Columns [j, j + 64) of op(B) as k contiguous rows of kPanel floats, zero beyond n; B is stored (k, n),
// or (n, k) when transposed.
void PackPanel(const float* b, bool trans, int64_t k, int64_t n, int64_t j, float* panel) {
  const int64_t width = std::min(kPanel, n - j);
  if (width < kPanel) std::fill(panel, panel + k * kPanel, 0.f);
  if (trans) {
    for (int64_t x = 0; x < width; ++x)
      for (int64_t r = 0; r < k; ++r) panel[r * kPanel + x] = b[(j + x) * k + r];
  } else {
    for (int64_t r = 0; r < k; ++r) std::memcpy(panel + r * kPanel, b + r * n + j, width * sizeof(float));
  }
}

void Block(const Problem& p, int64_t i0, int64_t j0) {
  float tail[kRows * kLanes];
  const int64_t i1 = std::min(p.m, i0 + kBlockRows), j1 = std::min(p.n, j0 + kBlockCols);
  for (int64_t j = j0; j < j1; j += kPanel) {
    const int64_t width = std::min(kPanel, j1 - j);
    const int full = static_cast<int>(width / kLanes);
    const float* panel = p.b + j * p.col_stride;
    for (int64_t i = i0; i < i1; i += kRows) {
      const int r = static_cast<int>(std::min<int64_t>(kRows, i1 - i));
      const float* a = p.a + i * p.ar;
      if (full > 0) RunTile(r, full, a, p.ar, p.ak, panel, p.ldb, 0, p.k, p.c + i * p.n + j, p.n, false);
      if (width % kLanes) {  // the last columns, through a buffer
        RunTile(r, 1, a, p.ar, p.ak, panel + full * kLanes, p.ldb, 0, p.k, tail, kLanes, false);
        for (int x = 0; x < r; ++x)
          std::memcpy(p.c + (i + x) * p.n + j + full * kLanes, tail + x * kLanes, (width % kLanes) * sizeof(float));
      }
    }
  }
}

ffi::Error MatmulImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                      ffi::ResultBuffer<ffi::F32> c, int64_t trans_a, int64_t trans_b) {
  auto ad = a.dimensions(), bd = b.dimensions(), cd = c->dimensions();
  if (ad.size() != 2 || bd.size() != 2 || cd.size() != 2)
    return ffi::Error::InvalidArgument("matmul: a, b and the result must be matrices");
  const int64_t m = trans_a ? ad[1] : ad[0], k = trans_a ? ad[0] : ad[1];
  const int64_t n = trans_b ? bd[0] : bd[1];
  if ((trans_b ? bd[1] : bd[0]) != k || cd[0] != m || cd[1] != n)
    return ffi::Error::InvalidArgument("matmul: op(a) (m, k) and op(b) (k, n) do not match, or c is not (m, n)");
  Problem p{a.typed_data(), trans_a ? 1 : k, trans_a ? m : 1, b.typed_data(), 1, n, c->typed_data(), m, n, k};
  if (trans_b || n % kPanel != 0) {  // else B's rows are read in place: every panel is whole
    const int64_t panels = (n + kPanel - 1) / kPanel;
    thread_local std::vector<float> packed;  // the caller's; reused across calls (no allocation, no page faults)
    Fit(packed, panels * k * kPanel);
    float* const bp = packed.data();  // (the lambdas run on other threads too: name the buffer, not the variable)
    ParallelFor(pool, panels, [&](int64_t q) {
      PackPanel(b.typed_data(), trans_b != 0, k, n, q * kPanel, bp + q * k * kPanel);
    });
    p.b = bp, p.col_stride = k, p.ldb = kPanel;
  }
  const int64_t row_blocks = (m + kBlockRows - 1) / kBlockRows, col_blocks = (n + kBlockCols - 1) / kBlockCols;
  ParallelFor(pool, row_blocks * col_blocks, [&](int64_t task) {
    Block(p, task / col_blocks * kBlockRows, task % col_blocks * kBlockCols);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(Matmul, MatmulImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // a
                                  .Arg<ffi::Buffer<ffi::F32>>()  // b
                                  .Ret<ffi::Buffer<ffi::F32>>()  // c
                                  .Attr<int64_t>("trans_a")
                                  .Attr<int64_t>("trans_b"));
