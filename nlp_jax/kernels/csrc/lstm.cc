// CPU kernel for ops.recurrent's fused LSTM layer over whole sequences (float32): the T steps of the
// recurrence, forward and backward, in one call each instead of one XLA while-loop iteration (a dozen
// small kernels) per step. The gates are stacked as (f, g, i, o) along the last axis, as in
// ops.recurrent.lstm_fused_step; x_proj = x W + b for all steps is computed outside, by XLA.
//
// Forward, step t (h, c of shape (B, H)):
//   z = x_proj[:, t] + h U;  f, i, o = sigmoid(z_f, z_i, z_o);  g = tanh(z_g)
//   c = g i + c f;  h = o tanh(c)                 -> hs, cs (B, T, H), acts = (f, g, i, o) (B, T, 4H)
// Backward, t = T-1 .. 0, with dh = dhs[:, t] + dh_next and dc = dc_next (+ dc_T at the last step):
//   dc += dh o (1 - tanh(c)^2);  dz_o = dh tanh(c) o (1 - o);  dz_f = dc c_prev f (1 - f)
//   dz_i = dc g i (1 - i);  dz_g = dc i (1 - g^2);  dc_next = dc f;  dh_next = dz U^T
// returning dz (= d x_proj), dh_0 and dc_0; dU = sum_t h_{t-1}^T dz_t is one large product left to XLA.
// The step products run through the Gemm of cpu_kernels.h; within a step, blocks of kLanes hidden units
// (forward: their 4 kLanes columns of z, then their cell updates) are spread over XLA's intra-op thread pool,
// the threads meeting at step boundaries (StagedParallelFor).
#include <vector>

#include "cpu_kernels.h"

namespace {

using namespace nlp_jax;  // NOLINT: the shared vector helpers and Gemm


inline Vec Sigmoid(Vec x) { return 1.f / (1.f + Exp(-x)); }
inline Vec Tanh(Vec x) {  // tanh |x| = -expm1(-2|x|) / (2 + expm1(-2|x|)), sign restored
  const Vec ax = x < 0.f ? -x : x;
  const Vec e = Expm1(-2.f * ax);
  const Vec t = -e / (2.f + e);
  return x < 0.f ? -t : t;
}

struct Dims {
  int64_t b, t, h, blocks, hp;  // blocks: groups of kLanes hidden units; hp: H rounded up to kLanes
};

constexpr int64_t kPanel = 4 * kLanes;  // one block of kLanes units: its f, g, i, o columns side by side
constexpr int64_t kBlocksPerTask = 2;
constexpr int64_t kChunk = 2 * kLanes;  // backward: columns of dh_next = dz U^T per task

Dims DimsOf(int64_t b, int64_t t, int64_t h) { return Dims{b, t, h, (h + kLanes - 1) / kLanes, RoundUp(h, kLanes)}; }

// U (H, 4H) regrouped by unit block: panel p (H rows of 64 floats, contiguous) holds the (f, g, i, o)
// columns of units 16p .. 16p+15, zero past H, so one panel of z = h U has everything the block's cell
// update needs, and the product streams it from one run of memory.
std::vector<float> PackByBlock(const float* u, const Dims& d) {
  std::vector<float> out(d.blocks * d.h * kPanel, 0.f);
  for (int64_t r = 0; r < d.h; ++r)
    for (int64_t gate = 0; gate < 4; ++gate)
      for (int64_t j = 0; j < d.h; ++j)
        out[(j / kLanes * d.h + r) * kPanel + gate * kLanes + j % kLanes] = u[r * 4 * d.h + gate * d.h + j];
  return out;
}

// U^T (4H, H) in chunks of kChunk columns, each chunk 4H contiguous rows of kChunk floats, zero past H.
std::vector<float> PackTransposed(const float* u, const Dims& d) {
  std::vector<float> out(RoundUp(d.h, kChunk) * 4 * d.h, 0.f);
  for (int64_t r = 0; r < d.h; ++r)
    for (int64_t k = 0; k < 4 * d.h; ++k) out[(r / kChunk * 4 * d.h + k) * kChunk + r % kChunk] = u[r * 4 * d.h + k];
  return out;
}

// Forward step t for unit blocks [p0, p1): z = h_{t-1} U on their panels, then the cell update.
// h_prev and c_prev: (B, H) rows `ar` floats apart (h0/c0, or step t - 1 of hs/cs).
void ForwardBlocks(const float* xp, const std::vector<float>& up, const float* h_prev, const float* c_prev,
                   int64_t ar, float* z, float* hs, float* cs, float* acts, const Dims& d, int64_t t, int64_t p0,
                   int64_t p1) {
  const int64_t ld = d.blocks * kPanel, h = d.h;
  for (int64_t p = p0; p < p1; ++p)
    Gemm(h_prev, ar, 1, up.data() + p * h * kPanel, kPanel, d.b, z + p * kPanel, ld, false,
         [&](int64_t, int) { return Range{0, h, kPanel}; });
  for (int64_t b = 0; b < d.b; ++b) {
    const int64_t row = b * d.t + t;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t j = p * kLanes, n = std::min(kLanes, h - j);
      const float *x = xp + row * 4 * h + j, *zr = z + b * ld + p * kPanel;
      auto pre = [&](int gate) { return Load(zr + gate * kLanes) + LoadN(x + gate * h, n); };
      const Vec f = Sigmoid(pre(0)), g = Tanh(pre(1)), i = Sigmoid(pre(2)), o = Sigmoid(pre(3));
      const Vec c = g * i + LoadN(c_prev + b * ar + j, n) * f;
      float* ar = acts + row * 4 * h + j;
      StoreN(cs + row * h + j, c, n), StoreN(hs + row * h + j, o * Tanh(c), n);
      StoreN(ar, f, n), StoreN(ar + h, g, n), StoreN(ar + 2 * h, i, n), StoreN(ar + 3 * h, o, n);
    }
  }
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> xp, ffi::Buffer<ffi::F32> u,
                       ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0, ffi::ResultBuffer<ffi::F32> hs,
                       ffi::ResultBuffer<ffi::F32> cs, ffi::ResultBuffer<ffi::F32> acts) {
  auto xd = xp.dimensions();
  if (xd.size() != 3 || xd[2] % 4 != 0 || u.element_count() != static_cast<size_t>(xd[2] / 4 * xd[2]) ||
      h0.element_count() != static_cast<size_t>(xd[0] * xd[2] / 4) || c0.element_count() != h0.element_count())
    return ffi::Error::InvalidArgument("lstm_forward: x_proj (B, T, 4H), U (H, 4H), h0 and c0 (B, H)");
  const int64_t h = xd[2] / 4;
  const Dims d = DimsOf(xd[0], xd[1], h);
  const std::vector<float> up = PackByBlock(u.typed_data(), d);
  std::vector<float> z(d.b * d.blocks * kPanel);
  float *hsp = hs->typed_data(), *csp = cs->typed_data(), *zp = z.data();
  const int64_t tasks = (d.blocks + kBlocksPerTask - 1) / kBlocksPerTask;
  StagedParallelFor(pool, d.t, tasks, [&](int64_t t, int64_t task) {
    const float* h_prev = t == 0 ? h0.typed_data() : hsp + (t - 1) * h;
    const float* c_prev = t == 0 ? c0.typed_data() : csp + (t - 1) * h;
    const int64_t ar = t == 0 ? h : d.t * h;
    ForwardBlocks(xp.typed_data(), up, h_prev, c_prev, ar, zp, hsp, csp, acts->typed_data(), d, t,
                  task * kBlocksPerTask, std::min(d.blocks, (task + 1) * kBlocksPerTask));
  });
  return ffi::Error::Success();
}

// Backward step t, the cell part, for unit blocks [p0, p1): dz (into dxp) and dc_next.
void BackwardCells(const float* acts, const float* cs, const float* c0, const float* dhs, const float* dh_next,
                   float* dc_next, float* dxp, const Dims& d, int64_t t, int64_t p0, int64_t p1) {
  const int64_t h = d.h;
  for (int64_t b = 0; b < d.b; ++b) {
    const int64_t row = b * d.t + t;
    const float *a = acts + row * 4 * h, *c_now = cs + row * h, *dh_in = dhs + row * h;
    const float* c_prev = t == 0 ? c0 + b * h : cs + (row - 1) * h;
    float *dzr = dxp + row * 4 * h, *dcr = dc_next + b * h;
    for (int64_t j = p0 * kLanes; j < std::min(h, p1 * kLanes); j += kLanes) {
      const int64_t n = std::min(kLanes, h - j);
      const Vec f = LoadN(a + j, n), g = LoadN(a + h + j, n), i = LoadN(a + 2 * h + j, n), o = LoadN(a + 3 * h + j, n);
      const Vec tc = Tanh(LoadN(c_now + j, n)), dh = LoadN(dh_in + j, n) + LoadN(dh_next + b * d.hp + j, n);
      const Vec dc = LoadN(dcr + j, n) + dh * o * (1.f - tc * tc);
      StoreN(dzr + j, dc * LoadN(c_prev + j, n) * f * (1.f - f), n);
      StoreN(dzr + h + j, dc * i * (1.f - g * g), n);
      StoreN(dzr + 2 * h + j, dc * g * i * (1.f - i), n);
      StoreN(dzr + 3 * h + j, dh * tc * o * (1.f - o), n);
      StoreN(dcr + j, dc * f, n);
    }
  }
}

ffi::Error BackwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> u, ffi::Buffer<ffi::F32> acts,
                        ffi::Buffer<ffi::F32> cs, ffi::Buffer<ffi::F32> c0, ffi::Buffer<ffi::F32> dhs,
                        ffi::Buffer<ffi::F32> dc_last, ffi::ResultBuffer<ffi::F32> dxp, ffi::ResultBuffer<ffi::F32> dh0,
                        ffi::ResultBuffer<ffi::F32> dc0) {
  auto cd = cs.dimensions();
  if (cd.size() != 3 || acts.element_count() != 4 * cs.element_count() || dhs.element_count() != cs.element_count() ||
      u.element_count() != static_cast<size_t>(4 * cd[2] * cd[2]) ||
      c0.element_count() != static_cast<size_t>(cd[0] * cd[2]) || dc_last.element_count() != c0.element_count())
    return ffi::Error::InvalidArgument("lstm_backward: acts (B, T, 4H), cs and dhs (B, T, H), U (H, 4H), c0, dc (B, H)");
  const int64_t h = cd[2];
  const Dims d = DimsOf(cd[0], cd[1], h);
  const std::vector<float> ut = PackTransposed(u.typed_data(), d);
  std::vector<float> dh_next(d.b * d.hp, 0.f), dc_next(dc_last.typed_data(), dc_last.typed_data() + d.b * h);
  float *dz = dxp->typed_data(), *dhn = dh_next.data(), *dcn = dc_next.data();
  const int64_t cell_tasks = (d.blocks + kBlocksPerTask - 1) / kBlocksPerTask;
  const int64_t col_tasks = (d.hp + kChunk - 1) / kChunk;
  // Two stages per step, last step first: the cells (dz, dc_next), then dh_next = dz_t U^T.
  StagedParallelFor(pool, 2 * d.t, std::max(cell_tasks, col_tasks), [&](int64_t stage, int64_t task) {
    const int64_t t = d.t - 1 - stage / 2;
    if (stage % 2 == 0 && task < cell_tasks) {
      BackwardCells(acts.typed_data(), cs.typed_data(), c0.typed_data(), dhs.typed_data(), dhn, dcn, dz, d, t,
                    task * kBlocksPerTask, std::min(d.blocks, (task + 1) * kBlocksPerTask));
    } else if (stage % 2 == 1 && task < col_tasks) {
      const int64_t j = task * kChunk;
      Gemm(dz + t * 4 * h, d.t * 4 * h, 1, ut.data() + j * 4 * h, kChunk, d.b, dhn + j, d.hp, false,
           [&](int64_t, int) { return Range{0, 4 * h, std::min(kChunk, d.hp - j)}; });
    }
  });
  for (int64_t b = 0; b < d.b; ++b) {
    std::copy(dhn + b * d.hp, dhn + b * d.hp + h, dh0->typed_data() + b * h);
    std::copy(dcn + b * h, dcn + (b + 1) * h, dc0->typed_data() + b * h);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x_proj (B, T, 4H)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // U (H, 4H)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0 (B, H)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c0 (B, H)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // hs (B, T, H)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // cs (B, T, H)
                                  .Ret<ffi::Buffer<ffi::F32>>());  // acts (B, T, 4H)

XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // U
                                  .Arg<ffi::Buffer<ffi::F32>>()  // acts
                                  .Arg<ffi::Buffer<ffi::F32>>()  // cs
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c0
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dhs (B, T, H), the final h's cotangent included
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dc_T (B, H)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d x_proj (B, T, 4H)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dh0
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dc0
