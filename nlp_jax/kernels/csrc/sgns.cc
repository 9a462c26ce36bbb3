// CPU kernel for ops.sgns: skip-gram / CBOW negative-sampling SGD, one example at a time.
//
// The XLA path (ops.sgns.skipgram_update / cbow_update) applies a whole batch of examples from one
// snapshot of the embeddings; this kernel applies them in order, each example seeing the rows its
// predecessors wrote (word2vec.c's sequential SGD). With threads > 1 the examples are split into
// contiguous ranges trained concurrently on the shared rows without locks (Hogwild, as word2vec.c and
// gensim do); results are then not bit-reproducible. With one thread, XLA batches of one example, and
// no word repeated among one example's negatives, the two paths compute the same updates (tested).
//
// Input: a chunk of the (subsampled) token stream -- tokens (m,), docs (m,) document ids, reach (m,) the
// sampled window of each centre -- and bounds (2,): the centres are positions bounds[0] .. bounds[1] - 1;
// the positions around them serve as context only. A context word lies within reach[i] of the centre,
// in the same document. Skip-gram trains one example per (centre, context) pair, CBOW one per centre.
// The learning rate falls linearly from lrs[0] at the first centre to lrs[1] after the last.
// Negatives: given as (m, 2 window, k) for skip-gram (one set per pair slot; slots are offsets -1..-window
// then +1..+window) or (m, k) for CBOW; or, when that array is empty, drawn here -- k = the `negative`
// attribute -- from the noise distribution given as an alias table (Walker/Vose: draw a word i
// uniformly, keep it with probability prob[i], else take alias[i]), with a splitmix64 stream per thread
// seeded from the `seed` scalar and the thread's first centre. The alias table is two (V,) arrays that
// stay in cache, unlike word2vec.c's 1e8-slot table.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Problem {
  float* w_in;
  float* w_out;
  int64_t dim, m, window, k, lo, hi;
  bool sg;
  const int32_t *tokens, *docs, *reach, *negatives;  // negatives: nullptr -> draw from the alias table
  float lr0, lr1;
  const float* noise_prob;
  const int32_t* noise_alias;
  int64_t vocab;
  uint64_t seed;
};

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

struct Noise {
  uint64_t state;
  int32_t Draw(const Problem& p) {  // high 32 bits pick the slot, the low 24 the coin
    state += 0x9e3779b97f4a7c15ULL;
    uint64_t z = SplitMix(state);
    auto slot = static_cast<int32_t>(((z >> 32) * static_cast<uint64_t>(p.vocab)) >> 32);
    float coin = static_cast<float>(z & 0xFFFFFFULL) * (1.f / 16777216.f);
    return coin < p.noise_prob[slot] ? slot : p.noise_alias[slot];
  }
};

inline float Dot(const float* a, const float* b, int64_t d) {
  float s = 0.f;
  for (int64_t i = 0; i < d; ++i) s += a[i] * b[i];
  return s;
}

inline void Axpy(float g, const float* x, float* y, int64_t d) {
  for (int64_t i = 0; i < d; ++i) y[i] += g * x[i];
}

// One example: h is the input vector, true_id the word to predict; accumulates -lr dL/dh into work and
// applies -lr dL/du to the output rows (the true word, then the negatives unequal to it).
// `neg` points at this example's k given negatives, or is nullptr to draw them.
inline void Predict(const Problem& p, const int32_t* neg, const float* h, int32_t true_id, float lr, float* work,
                    Noise& rng) {
  for (int64_t j = -1; j < p.k; ++j) {
    int32_t t = j < 0 ? true_id : (neg ? neg[j] : rng.Draw(p));
    if (j >= 0 && t == true_id) continue;
    float* u = p.w_out + static_cast<int64_t>(t) * p.dim;
    float f = Dot(h, u, p.dim);
    float g = ((j < 0 ? 1.f : 0.f) - 1.f / (1.f + std::exp(-f))) * lr;
    for (int64_t d = 0; d < p.dim; ++d) {  // work += g u; u += g h (one pass over u)
      work[d] += g * u[d];
      u[d] += g * h[d];
    }
  }
}

// The context position of slot s (offsets -1..-window, then +1..+window) of centre i, or -1.
inline int64_t Context(const Problem& p, int64_t i, int64_t s) {
  int64_t off = s < p.window ? -(s + 1) : s - p.window + 1;
  int64_t j = i + off;
  if (std::abs(off) > p.reach[i] || j < 0 || j >= p.m || p.docs[j] != p.docs[i]) return -1;
  return j;
}

void TrainRange(const Problem& p, int64_t begin, int64_t end) {
  std::vector<float> work(p.dim), mean(p.dim);
  Noise rng{SplitMix(p.seed ^ SplitMix(static_cast<uint64_t>(begin)))};
  const int64_t slots = 2 * p.window;
  for (int64_t i = begin; i < end; ++i) {
    float lr = p.lr0 + (p.lr1 - p.lr0) * static_cast<float>(i - p.lo) / static_cast<float>(p.hi - p.lo);
    if (p.sg) {  // skip-gram: the centre's input vector predicts each context word
      float* h = p.w_in + static_cast<int64_t>(p.tokens[i]) * p.dim;
      for (int64_t s = 0; s < slots; ++s) {
        int64_t j = Context(p, i, s);
        if (j < 0) continue;
        std::fill(work.begin(), work.end(), 0.f);
        Predict(p, p.negatives ? p.negatives + (i * slots + s) * p.k : nullptr, h, p.tokens[j], lr, work.data(), rng);
        Axpy(1.f, work.data(), h, p.dim);
      }
      continue;
    }
    std::fill(mean.begin(), mean.end(), 0.f);  // CBOW: the mean of the context vectors predicts the centre
    int count = 0;
    for (int64_t s = 0; s < slots; ++s) {
      int64_t j = Context(p, i, s);
      if (j < 0) continue;
      Axpy(1.f, p.w_in + static_cast<int64_t>(p.tokens[j]) * p.dim, mean.data(), p.dim);
      ++count;
    }
    if (count == 0) continue;
    for (auto& x : mean) x /= static_cast<float>(count);
    std::fill(work.begin(), work.end(), 0.f);
    Predict(p, p.negatives ? p.negatives + i * p.k : nullptr, mean.data(), p.tokens[i], lr, work.data(), rng);
    for (int64_t s = 0; s < slots; ++s) {
      int64_t j = Context(p, i, s);
      if (j >= 0) Axpy(1.f, work.data(), p.w_in + static_cast<int64_t>(p.tokens[j]) * p.dim, p.dim);
    }
  }
}

ffi::Error SgnsTrainImpl(ffi::Buffer<ffi::F32> w_in, ffi::Buffer<ffi::F32> w_out, ffi::Buffer<ffi::S32> tokens,
                         ffi::Buffer<ffi::S32> docs, ffi::Buffer<ffi::S32> reach, ffi::Buffer<ffi::S32> bounds,
                         ffi::Buffer<ffi::F32> lrs, ffi::Buffer<ffi::S32> negatives,
                         ffi::Buffer<ffi::F32> noise_prob, ffi::Buffer<ffi::S32> noise_alias,
                         ffi::Buffer<ffi::S32> seed, int64_t window, int64_t negative, int64_t sg, int64_t threads,
                         ffi::ResultBuffer<ffi::F32> w_in_new, ffi::ResultBuffer<ffi::F32> w_out_new) {
  auto wd = w_in.dimensions();
  int64_t m = static_cast<int64_t>(tokens.element_count());
  if (wd.size() != 2 || docs.element_count() != m || reach.element_count() != m || bounds.element_count() != 2 ||
      lrs.element_count() != 2)
    return ffi::Error::InvalidArgument("sgns_train: tokens, docs, reach must have equal sizes; bounds, lrs 2");
  bool draw = negatives.element_count() == 0;
  if (draw && (noise_prob.element_count() == 0 || noise_prob.element_count() != noise_alias.element_count()))
    return ffi::Error::InvalidArgument("sgns_train: noise_prob and noise_alias must be non-empty, equal sizes");
  const int64_t vocab = wd[0];
  auto in_vocab = [vocab](const int32_t* ids, int64_t n) {
    return std::all_of(ids, ids + n, [vocab](int32_t t) { return t >= 0 && t < vocab; });
  };
  if (w_out.dimensions()[0] != vocab || w_out.dimensions()[1] != wd[1] || !in_vocab(tokens.typed_data(), m) ||
      (!draw && !in_vocab(negatives.typed_data(), negatives.element_count())) ||
      (draw && (noise_prob.element_count() > vocab ||
                !in_vocab(noise_alias.typed_data(), noise_alias.element_count()))))
    return ffi::Error::InvalidArgument("sgns_train: w_in and w_out must have equal shapes and all ids lie in [0, V)");
  int64_t lo = std::max<int64_t>(0, bounds.typed_data()[0]), hi = std::min<int64_t>(m, bounds.typed_data()[1]);
  Problem p{w_in_new->typed_data(), w_out_new->typed_data(), wd[1], m, window, negative, lo, std::max(hi, lo + 1),
            sg != 0, tokens.typed_data(), docs.typed_data(), reach.typed_data(),
            draw ? nullptr : negatives.typed_data(), lrs.typed_data()[0], lrs.typed_data()[1],
            noise_prob.typed_data(), noise_alias.typed_data(), static_cast<int64_t>(noise_prob.element_count()),
            static_cast<uint64_t>(static_cast<uint32_t>(seed.typed_data()[0]))};
  if (p.w_in != w_in.typed_data()) std::memcpy(p.w_in, w_in.typed_data(), w_in.size_bytes());
  if (p.w_out != w_out.typed_data()) std::memcpy(p.w_out, w_out.typed_data(), w_out.size_bytes());
  int64_t n = hi - lo, t = std::max<int64_t>(1, std::min<int64_t>(threads, n));
  std::vector<std::thread> pool;
  for (int64_t r = 1; r < t; ++r) pool.emplace_back(TrainRange, std::cref(p), lo + n * r / t, lo + n * (r + 1) / t);
  if (n > 0) TrainRange(p, lo, lo + n / t);
  for (auto& th : pool) th.join();
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(SgnsTrain, SgnsTrainImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_in
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_out
                                  .Arg<ffi::Buffer<ffi::S32>>()  // tokens
                                  .Arg<ffi::Buffer<ffi::S32>>()  // docs
                                  .Arg<ffi::Buffer<ffi::S32>>()  // reach
                                  .Arg<ffi::Buffer<ffi::S32>>()  // bounds
                                  .Arg<ffi::Buffer<ffi::F32>>()  // lrs
                                  .Arg<ffi::Buffer<ffi::S32>>()  // negatives
                                  .Arg<ffi::Buffer<ffi::F32>>()  // noise_prob
                                  .Arg<ffi::Buffer<ffi::S32>>()  // noise_alias
                                  .Arg<ffi::Buffer<ffi::S32>>()  // seed
                                  .Attr<int64_t>("window")
                                  .Attr<int64_t>("negative")
                                  .Attr<int64_t>("sg")
                                  .Attr<int64_t>("threads")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
