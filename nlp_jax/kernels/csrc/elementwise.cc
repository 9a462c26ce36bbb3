// CPU kernels for the exact GELU (ops.activations) and layer normalisation (ops.normalization),
// forward and backward, float32. XLA's CPU backend evaluates erf as a slow scalar chain and runs a
// normalisation as several small kernels of ~0.1-0.3 ms each (BENCHMARKS.md); here each is one pass over
// the data, in chunks spread over XLA's intra-op thread pool.
//
// Phi(x) = erfc(-x / sqrt 2) / 2 with erfc(a) = t exp(-a^2 + P(t)), t = 1 / (1 + a / 2), for a >= 0 and
// erfc(-a) = 2 - erfc(a): the Chebyshev fit of Numerical Recipes' erfcc (relative error below 1.2e-7).
// Layer norm: y = (x - mean) rstd scale + bias with rstd = 1 / sqrt(var + eps) over the last axis; the
// backward pass, with xhat = (x - mean) rstd and g = dy scale, is
//   dx = rstd (g - mean(g) - xhat mean(g xhat)),  dscale = sum_rows dy xhat,  dbias = sum_rows dy.
// Softmax cross-entropy with integer targets, per row of logits z: nll = lse(z) - z_target, and
// dz = g (softmax(z) - onehot(target)) with softmax(z) = exp(z - lse) recomputed from the saved lse.
#include <algorithm>
#include <vector>

#include "cpu_kernels.h"

namespace {

using namespace nlp_jax;  // NOLINT: the shared vector helpers and ParallelFor

constexpr int64_t kChunk = 16384;  // elements per GELU task
constexpr int64_t kRowsPerTask = 32;

inline Vec NormalCdf(Vec x) {
  const Vec a = (x < 0.f ? -x : x) * 0.70710678f;  // |x| / sqrt 2
  const Vec t = 1.f / (1.f + 0.5f * a);
  Vec p = Splat(0.17087277f);
  for (float c : {-0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f, -0.18628806f, 0.09678418f, 0.37409196f,
                  1.00002368f, -1.26551223f})
    p = p * t + c;
  const Vec half_erfc = 0.5f * t * Exp(p - a * a);  // erfc(|x| / sqrt 2) / 2
  return x < 0.f ? half_erfc : 1.f - half_erfc;
}

ffi::Error GeluForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::ResultBuffer<ffi::F32> y) {
  const int64_t n = x.element_count();
  const float* in = x.typed_data();
  float* out = y->typed_data();
  ParallelForChunks(pool, n, kChunk, [&](int64_t lo, int64_t hi) {
    ForVectors(hi - lo, [&](int64_t j, int64_t c) {
      const Vec v = LoadN(in + lo + j, c);
      StoreN(out + lo + j, v * NormalCdf(v), c);
    });
  });
  return ffi::Error::Success();
}

ffi::Error GeluBackwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                            ffi::ResultBuffer<ffi::F32> dx) {
  const int64_t n = x.element_count();
  if (static_cast<int64_t>(dy.element_count()) != n) return ffi::Error::InvalidArgument("gelu_backward: x, dy sizes");
  const float *in = x.typed_data(), *g = dy.typed_data();
  float* out = dx->typed_data();
  ParallelForChunks(pool, n, kChunk, [&](int64_t lo, int64_t hi) {
    ForVectors(hi - lo, [&](int64_t j, int64_t c) {
      const Vec v = LoadN(in + lo + j, c);
      const Vec pdf = 0.39894228f * Exp(-0.5f * v * v);  // phi(x)
      StoreN(out + lo + j, LoadN(g + lo + j, c) * (NormalCdf(v) + v * pdf), c);
    });
  });
  return ffi::Error::Success();
}

struct Rows {  // x viewed as (n, d)
  int64_t n, d;
};

bool RowsOf(ffi::Buffer<ffi::F32>& x, ffi::Buffer<ffi::F32>& scale, Rows* rows) {
  auto dims = x.dimensions();
  if (dims.size() < 1 || static_cast<int64_t>(scale.element_count()) != dims.back() || dims.back() == 0) return false;
  *rows = Rows{static_cast<int64_t>(x.element_count()) / dims.back(), dims.back()};
  return true;
}

ffi::Error LayerNormForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> scale,
                                ffi::Buffer<ffi::F32> bias, ffi::ResultBuffer<ffi::F32> y,
                                ffi::ResultBuffer<ffi::F32> mean, ffi::ResultBuffer<ffi::F32> rstd, float eps) {
  Rows s;
  if (!RowsOf(x, scale, &s) || bias.element_count() != scale.element_count())
    return ffi::Error::InvalidArgument("layer_norm: x (..., d) with d > 0, scale and bias (d,)");
  const float *in = x.typed_data(), *g = scale.typed_data(), *b = bias.typed_data();
  ParallelForChunks(pool, s.n, kRowsPerTask, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = in + r * s.d;
      Vec acc = Splat(0.f);
      ForVectors(s.d, [&](int64_t j, int64_t c) { acc += LoadN(xr + j, c); });
      const float mu = Sum(acc) / s.d;
      acc = Splat(0.f);
      ForVectors(s.d, [&](int64_t j, int64_t c) {
        const Vec centred = Below(0, c) ? LoadN(xr + j, c) - mu : Splat(0.f);
        acc += centred * centred;
      });
      const float rs = 1.f / std::sqrt(Sum(acc) / s.d + eps);
      float* yr = y->typed_data() + r * s.d;
      ForVectors(s.d, [&](int64_t j, int64_t c) {
        StoreN(yr + j, (LoadN(xr + j, c) - mu) * rs * LoadN(g + j, c) + LoadN(b + j, c), c);
      });
      mean->typed_data()[r] = mu, rstd->typed_data()[r] = rs;
    }
  });
  return ffi::Error::Success();
}

// One task's rows of dx; its partial sums of dy xhat and dy go to part (2 d floats).
void LayerNormBackwardRows(const float* x, const float* g, const float* mean, const float* rstd, const float* dy,
                           Rows s, int64_t r0, int64_t r1, float* dx, float* part) {
  std::fill(part, part + 2 * s.d, 0.f);
  for (int64_t r = r0; r < r1; ++r) {
    const float *xr = x + r * s.d, *dyr = dy + r * s.d;
    const float mu = mean[r], rs = rstd[r];
    Vec sum_g = Splat(0.f), sum_gx = Splat(0.f);
    ForVectors(s.d, [&](int64_t j, int64_t c) {
      const Vec xhat = (LoadN(xr + j, c) - mu) * rs, gj = LoadN(dyr + j, c) * LoadN(g + j, c);
      sum_g += gj, sum_gx += gj * xhat;  // padded lanes: gj = 0
    });
    const float m1 = Sum(sum_g) / s.d, m2 = Sum(sum_gx) / s.d;
    ForVectors(s.d, [&](int64_t j, int64_t c) {
      const Vec xhat = (LoadN(xr + j, c) - mu) * rs, dyj = LoadN(dyr + j, c);
      StoreN(dx + r * s.d + j, rs * (dyj * LoadN(g + j, c) - m1 - xhat * m2), c);
      StoreN(part + j, LoadN(part + j, c) + dyj * xhat, c);
      StoreN(part + s.d + j, LoadN(part + s.d + j, c) + dyj, c);
    });
  }
}

ffi::Error LayerNormBackwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> scale,
                                 ffi::Buffer<ffi::F32> mean, ffi::Buffer<ffi::F32> rstd, ffi::Buffer<ffi::F32> dy,
                                 ffi::ResultBuffer<ffi::F32> dx, ffi::ResultBuffer<ffi::F32> dscale,
                                 ffi::ResultBuffer<ffi::F32> dbias) {
  Rows s;
  if (!RowsOf(x, scale, &s) || dy.element_count() != x.element_count() ||
      static_cast<int64_t>(mean.element_count()) != s.n || static_cast<int64_t>(rstd.element_count()) != s.n)
    return ffi::Error::InvalidArgument("layer_norm_backward: x, dy (..., d), scale (d,), mean and rstd (...)");
  const int64_t tasks = (s.n + kRowsPerTask - 1) / kRowsPerTask;
  std::vector<float> parts(std::max<int64_t>(tasks, 1) * 2 * s.d);
  float* const part = parts.data();
  ParallelForChunks(pool, s.n, kRowsPerTask, [&](int64_t r0, int64_t r1) {
    LayerNormBackwardRows(x.typed_data(), scale.typed_data(), mean.typed_data(), rstd.typed_data(), dy.typed_data(),
                          s, r0, r1, dx->typed_data(), part + r0 / kRowsPerTask * 2 * s.d);
  });
  float *ds = dscale->typed_data(), *db = dbias->typed_data();
  std::fill(ds, ds + s.d, 0.f), std::fill(db, db + s.d, 0.f);
  for (int64_t t = 0; t < tasks; ++t)
    for (int64_t j = 0; j < s.d; ++j) ds[j] += part[t * 2 * s.d + j], db[j] += part[t * 2 * s.d + s.d + j];
  return ffi::Error::Success();
}

constexpr int64_t kXentRowsPerTask = 4;

ffi::Error XentForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> logits, ffi::Buffer<ffi::S32> targets,
                           ffi::ResultBuffer<ffi::F32> nll, ffi::ResultBuffer<ffi::F32> lse) {
  auto dims = logits.dimensions();
  if (dims.size() != 2 || dims[1] == 0 || static_cast<int64_t>(targets.element_count()) != dims[0])
    return ffi::Error::InvalidArgument("softmax_cross_entropy: logits (N, V) with V > 0, targets (N,)");
  const int64_t n = dims[0], v = dims[1];
  const int32_t* y = targets.typed_data();
  if (!std::all_of(y, y + n, [v](int32_t t) { return t >= 0 && t < v; }))
    return ffi::Error::InvalidArgument("softmax_cross_entropy: targets must lie in [0, V)");
  ParallelForChunks(pool, n, kXentRowsPerTask, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* z = logits.typed_data() + r * v;
      Vec mv = Splat(-INFINITY);
      ForVectors(v, [&](int64_t j, int64_t c) {
        const Vec zv = LoadN(z + j, c);
        mv = Below(0, c) & (zv > mv) ? zv : mv;
      });
      const float m = Max(mv);
      Vec sv = Splat(0.f);
      ForVectors(v, [&](int64_t j, int64_t c) { sv += Below(0, c) ? Exp(LoadN(z + j, c) - m) : Splat(0.f); });
      const float l = m + std::log(Sum(sv));
      lse->typed_data()[r] = l, nll->typed_data()[r] = l - z[y[r]];
    }
  });
  return ffi::Error::Success();
}

ffi::Error XentBackwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> logits, ffi::Buffer<ffi::S32> targets,
                            ffi::Buffer<ffi::F32> lse, ffi::Buffer<ffi::F32> g, ffi::ResultBuffer<ffi::F32> dlogits) {
  auto dims = logits.dimensions();
  const int64_t n = dims.size() == 2 ? dims[0] : -1, v = dims.size() == 2 ? dims[1] : 0;
  if (n < 0 || static_cast<int64_t>(targets.element_count()) != n || static_cast<int64_t>(lse.element_count()) != n ||
      static_cast<int64_t>(g.element_count()) != n)
    return ffi::Error::InvalidArgument("softmax_cross_entropy_backward: logits (N, V), targets, lse, g (N,)");
  const int32_t* y = targets.typed_data();
  ParallelForChunks(pool, n, kXentRowsPerTask, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float *z = logits.typed_data() + r * v, l = lse.typed_data()[r], gr = g.typed_data()[r];
      float* dz = dlogits->typed_data() + r * v;
      ForVectors(v, [&](int64_t j, int64_t c) { StoreN(dz + j, Exp(LoadN(z + j, c) - l) * gr, c); });
      if (y[r] >= 0 && y[r] < v) dz[y[r]] -= gr;
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(GeluForward, GeluForwardImpl,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<ffi::Buffer<ffi::F32>>().Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(GeluBackward, GeluBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dy
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dx

XLA_FFI_DEFINE_HANDLER_SYMBOL(LayerNormForward, LayerNormForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x (..., d)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // scale (d,)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // bias (d,)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // y
                                  .Ret<ffi::Buffer<ffi::F32>>()  // mean (...)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // rstd (...)
                                  .Attr<float>("eps"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(LayerNormBackward, LayerNormBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x
                                  .Arg<ffi::Buffer<ffi::F32>>()  // scale
                                  .Arg<ffi::Buffer<ffi::F32>>()  // mean
                                  .Arg<ffi::Buffer<ffi::F32>>()  // rstd
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dy
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dx
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dscale
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dbias

XLA_FFI_DEFINE_HANDLER_SYMBOL(XentForward, XentForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // logits (N, V)
                                  .Arg<ffi::Buffer<ffi::S32>>()  // targets (N,)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // nll (N,)
                                  .Ret<ffi::Buffer<ffi::F32>>());  // lse (N,)

XLA_FFI_DEFINE_HANDLER_SYMBOL(XentBackward, XentBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // logits
                                  .Arg<ffi::Buffer<ffi::S32>>()  // targets
                                  .Arg<ffi::Buffer<ffi::F32>>()  // lse
                                  .Arg<ffi::Buffer<ffi::F32>>()  // g: the nll's cotangent (N,)
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dlogits
