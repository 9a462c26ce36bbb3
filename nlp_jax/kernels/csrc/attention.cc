// CPU kernel for ops.attention_cpu: causal self-attention, forward and backward, float32.
//
// Layout as ops.scaled_dot_product_attention takes it: q, k, v, o, dO of shape (..., T, H, D), every
// leading dimension a batch dimension. The forward pass also returns lse (..., H, T), the log-sum-exp of
// each query's scaled scores, from which the backward pass recomputes the probabilities instead of
// storing them (Dao et al. 2022, "FlashAttention").
//
// Per (batch, head), query rows are cut into blocks of kBlock. A block scores its queries against the
// keys up to its own last row only -- the key blocks above the diagonal are never touched -- and takes
// the softmax of whole rows: a block's rows (kBlock x T floats) stay in cache for the lengths this is
// built for, so no online rescaling is needed. Backward, per block, with delta_i = dO_i . O_i:
//
//   P = exp(Q K^T / sqrt(d) - lse),  dP = dO V^T,  dS = P * (dP - delta),
//   dQ = dS K / sqrt(d),  dK += dS^T Q / sqrt(d),  dV += P^T dO.
//
// Every product runs through the register-tiled micro-kernel of cpu_kernels.h; the (batch, head) pairs
// are spread over XLA's intra-op thread pool.
#include <cmath>
#include <tuple>
#include <utility>
#include <vector>

#include "cpu_kernels.h"

namespace {

using namespace nlp_jax;  // NOLINT: the shared vector helpers, Tile and ParallelFor

constexpr int64_t kBlock = 64;  // query rows per block

struct Shape {
  int64_t t, h, d, dp, tp;  // dp, tp: d and t rounded up to kLanes (padded strides of the packed copies)
  float scale;              // 1 / sqrt(d)
  int64_t ld() const { return h * d; }  // distance between a head's consecutive rows in (T, H, D)
  bool direct() const { return d == dp; }  // rows of whole vectors: B operands and outputs used in place
};

// One head's rows transposed into dst (D x tp), zero padded.
void PackColumns(const float* src, const Shape& s, float* dst) {
  for (int64_t e = 0; e < s.d; ++e) {
    float* col = dst + e * s.tp;
    for (int64_t i = 0; i < s.t; ++i) col[i] = src[i * s.ld() + e];
    std::fill(col + s.t, col + s.tp, 0.f);
  }
}

// A head (T x D) as a product's B operand or output: in place when its rows are whole vectors, else a
// zero-padded T x dp copy in buf (made now if `copy`).
struct View {
  float* data;
  int64_t ld;
};
View HeadView(const float* src, const Shape& s, std::vector<float>& buf, bool copy) {
  if (s.direct()) return {const_cast<float*>(src), s.ld()};
  Fit(buf, s.t * s.dp);
  for (int64_t i = 0; copy && i < s.t; ++i) {
    std::copy(src + i * s.ld(), src + i * s.ld() + s.d, buf.data() + i * s.dp);
    std::fill(buf.data() + i * s.dp + s.d, buf.data() + (i + 1) * s.dp, 0.f);
  }
  return {buf.data(), s.dp};
}

// dst's first m head rows = the view's, times mul (or times row_mul[i] per row); in place when direct.
void WriteRows(const View& v, float* dst, const Shape& s, int64_t m, const float* row_mul, float mul) {
  for (int64_t i = 0; i < m; ++i) {
    const float f = row_mul ? row_mul[i] : mul;
    for (int64_t e = 0; e < s.d; ++e) dst[i * s.ld() + e] = v.data[i * v.ld + e] * f;
  }
}

struct Scratch {  // one per thread and direction, reused across calls
  std::vector<float> q, k, kt, v, vt, dout, dk, dv, p, ds, out, row;
};

// Softmax of the scaled row x * scale over its first `valid` entries, in place, unnormalised:
// x_j = exp(x_j scale - max) there, 0 up to `width`; returns {log-sum-exp, 1 / sum}.
std::pair<float, float> RowSoftmax(float* x, int64_t valid, int64_t width, float scale) {
  Vec mv = Splat(-INFINITY);
  for (int64_t j = 0; j < width; j += kLanes) {
    const Vec xv = Load(x + j) * scale;
    mv = Below(j, valid) & (xv > mv) ? xv : mv;
  }
  const float m = Max(mv);
  Vec sv = Splat(0.f);
  for (int64_t j = 0; j < width; j += kLanes) {
    const Vec e = Below(j, valid) ? Exp(Load(x + j) * scale - m) : Splat(0.f);
    Store(x + j, e);
    sv += e;
  }
  const float sum = Sum(sv);
  return {m + std::log(sum), 1.f / sum};
}

// The columns a row tile [i, i + r) of block a needs (keys up to its last row), capped at width.
inline int64_t CausalCols(int64_t a, int64_t i, int r, int64_t width) {
  return std::min(width, RoundUp(a + i + r, kLanes));
}

// q is read in place as the A operand of Q K^T (the 1 / sqrt(d) goes into the softmax); K is transposed.
void ForwardHead(const float* q, const float* k, const float* v, float* o, float* lse, const Shape& s) {
  thread_local Scratch w;
  Fit(w.kt, s.d * s.tp), Fit(w.p, kBlock * s.tp), Fit(w.row, kBlock);
  PackColumns(k, s, w.kt.data());
  const View vb = HeadView(v, s, w.v, true), out = HeadView(o, s, w.out, false);
  for (int64_t a = 0; a < s.t; a += kBlock) {
    const int64_t m = std::min(kBlock, s.t - a), width = RoundUp(a + m, kLanes);
    Gemm(q + a * s.ld(), s.ld(), 1, w.kt.data(), s.tp, m, w.p.data(), s.tp, false,
         [&](int64_t i, int r) { return Range{0, s.d, CausalCols(a, i, r, width)}; });
    for (int64_t i = 0; i < m; ++i)
      std::tie(lse[a + i], w.row[i]) = RowSoftmax(w.p.data() + i * s.tp, a + i + 1, width, s.scale);
    const View blk{out.data + a * out.ld, out.ld};
    Gemm(w.p.data(), s.tp, 1, vb.data, vb.ld, m, blk.data, blk.ld, false,
         [&](int64_t i, int r) { return Range{0, a + i + r, s.dp}; });
    WriteRows(blk, o + a * s.ld(), s, m, w.row.data(), 1.f);
  }
}

// Rows of P = exp(S scale - lse) and dS = P * (dP - delta) for block a, in place of S and dP.
void ScoreGradients(Scratch& w, const float* lse, const Shape& s, int64_t a, int64_t m, int64_t width) {
  for (int64_t i = 0; i < m; ++i) {
    float *p = w.p.data() + i * s.tp, *ds = w.ds.data() + i * s.tp;
    const int64_t valid = a + i + 1;
    const float l = lse[a + i], delta = w.row[a + i];
    for (int64_t j = 0; j < width; j += kLanes) {
      const IVec keep = Below(j, valid);
      const Vec pv = keep ? Exp(Load(p + j) * s.scale - l) : Splat(0.f);
      Store(p + j, pv);
      Store(ds + j, keep ? pv * (Load(ds + j) - delta) : Splat(0.f));
    }
  }
}

void BackwardHead(const float* q, const float* k, const float* v, const float* o, const float* lse, const float* dout,
                  float* dq, float* dk, float* dv, const Shape& s) {
  thread_local Scratch w;
  Fit(w.kt, s.d * s.tp), Fit(w.vt, s.d * s.tp), Fit(w.row, s.t);
  Fit(w.p, kBlock * s.tp), Fit(w.ds, kBlock * s.tp);
  PackColumns(k, s, w.kt.data()), PackColumns(v, s, w.vt.data());
  const View qb = HeadView(q, s, w.q, true), kb = HeadView(k, s, w.k, true), db = HeadView(dout, s, w.dout, true);
  const View dqv = HeadView(dq, s, w.out, false), dkv = HeadView(dk, s, w.dk, false), dvv = HeadView(dv, s, w.dv, false);
  for (int64_t i = 0; i < s.t; ++i) {
    float delta = 0.f;
    for (int64_t e = 0; e < s.d; ++e) delta += dout[i * s.ld() + e] * o[i * s.ld() + e];
    w.row[i] = delta;
    std::fill(dkv.data + i * dkv.ld, dkv.data + i * dkv.ld + s.dp, 0.f);
    std::fill(dvv.data + i * dvv.ld, dvv.data + i * dvv.ld + s.dp, 0.f);
  }
  for (int64_t a = 0; a < s.t; a += kBlock) {
    const int64_t m = std::min(kBlock, s.t - a), width = RoundUp(a + m, kLanes);
    auto causal = [&](int64_t i, int r) { return Range{0, s.d, CausalCols(a, i, r, width)}; };
    Gemm(q + a * s.ld(), s.ld(), 1, w.kt.data(), s.tp, m, w.p.data(), s.tp, false, causal);
    Gemm(dout + a * s.ld(), s.ld(), 1, w.vt.data(), s.tp, m, w.ds.data(), s.tp, false, causal);
    ScoreGradients(w, lse, s, a, m, width);
    const View blk{dqv.data + a * dqv.ld, dqv.ld};
    Gemm(w.ds.data(), s.tp, 1, kb.data, kb.ld, m, blk.data, blk.ld, false,
         [&](int64_t i, int r) { return Range{0, a + i + r, s.dp}; });
    WriteRows(blk, dq + a * s.ld(), s, m, nullptr, s.scale);
    // Keys j < a + m; key j receives gradient from the block's queries at or after it.
    auto below = [&](int64_t j, int) { return Range{std::max<int64_t>(0, j - a), m, s.dp}; };
    Gemm(w.ds.data(), 1, s.tp, qb.data + a * qb.ld, qb.ld, a + m, dkv.data, dkv.ld, true, below);
    Gemm(w.p.data(), 1, s.tp, db.data + a * db.ld, db.ld, a + m, dvv.data, dvv.ld, true, below);
  }
  WriteRows(dkv, dk, s, s.t, nullptr, s.scale), WriteRows(dvv, dv, s, s.t, nullptr, 1.f);
}

// Shape of (..., T, H, D) -> (batch, {t, h, d, dp, tp, scale}); false unless rank >= 3.
bool ShapeOf(ffi::Buffer<ffi::F32>& x, int64_t* batch, Shape* s) {
  auto dims = x.dimensions();
  if (dims.size() < 3) return false;
  *batch = 1;
  for (size_t i = 0; i + 3 < dims.size(); ++i) *batch *= dims[i];
  const int64_t t = dims[dims.size() - 3], h = dims[dims.size() - 2], d = dims[dims.size() - 1];
  *s = Shape{t, h, d, RoundUp(d, kLanes), RoundUp(t, kLanes), 1.f / std::sqrt(static_cast<float>(d))};
  return true;
}

// Offset of element (b, 0, head, 0) for task = b * H + head.
inline int64_t HeadOffset(int64_t task, const Shape& s) { return task / s.h * s.t * s.h * s.d + task % s.h * s.d; }

bool SameDims(ffi::Buffer<ffi::F32>& a, ffi::Buffer<ffi::F32>& b) {
  auto x = a.dimensions(), y = b.dimensions();
  return x.size() == y.size() && std::equal(x.begin(), x.end(), y.begin());
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                       ffi::Buffer<ffi::F32> v, ffi::ResultBuffer<ffi::F32> o, ffi::ResultBuffer<ffi::F32> lse) {
  int64_t batch;
  Shape s;
  if (!ShapeOf(q, &batch, &s) || !SameDims(q, k) || !SameDims(q, v))
    return ffi::Error::InvalidArgument("causal_attention: q, k, v must share one shape (..., T, H, D)");
  ParallelFor(pool, batch * s.h, [&](int64_t task) {
    const int64_t at = HeadOffset(task, s);
    ForwardHead(q.typed_data() + at, k.typed_data() + at, v.typed_data() + at, o->typed_data() + at,
                lse->typed_data() + task * s.t, s);
  });
  return ffi::Error::Success();
}

ffi::Error BackwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                        ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::F32> o, ffi::Buffer<ffi::F32> lse,
                        ffi::Buffer<ffi::F32> dout, ffi::ResultBuffer<ffi::F32> dq, ffi::ResultBuffer<ffi::F32> dk,
                        ffi::ResultBuffer<ffi::F32> dv) {
  int64_t batch;
  Shape s;
  if (!ShapeOf(q, &batch, &s) || !SameDims(q, k) || !SameDims(q, v) || !SameDims(q, o) || !SameDims(q, dout) ||
      static_cast<int64_t>(lse.element_count()) != batch * s.h * s.t)
    return ffi::Error::InvalidArgument("causal_attention_backward: q, k, v, o, dout (..., T, H, D), lse (..., H, T)");
  ParallelFor(pool, batch * s.h, [&](int64_t task) {
    const int64_t at = HeadOffset(task, s);
    BackwardHead(q.typed_data() + at, k.typed_data() + at, v.typed_data() + at, o.typed_data() + at,
                 lse.typed_data() + task * s.t, dout.typed_data() + at, dq->typed_data() + at,
                 dk->typed_data() + at, dv->typed_data() + at, s);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CausalAttentionForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // q
                                  .Arg<ffi::Buffer<ffi::F32>>()  // k
                                  .Arg<ffi::Buffer<ffi::F32>>()  // v
                                  .Ret<ffi::Buffer<ffi::F32>>()  // o
                                  .Ret<ffi::Buffer<ffi::F32>>());  // lse

XLA_FFI_DEFINE_HANDLER_SYMBOL(CausalAttentionBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // q
                                  .Arg<ffi::Buffer<ffi::F32>>()  // k
                                  .Arg<ffi::Buffer<ffi::F32>>()  // v
                                  .Arg<ffi::Buffer<ffi::F32>>()  // o
                                  .Arg<ffi::Buffer<ffi::F32>>()  // lse
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dout
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dq
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dk
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dv
