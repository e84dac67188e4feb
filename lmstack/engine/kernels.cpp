// Quantised matrix products for CPUs with AVX2, the way llama.cpp computes them there: the
// activations are rounded to int8 in blocks of 32, and each block of weights meets them in integer
// dot products (maddubs: 32 byte-by-byte multiply-adds per instruction), scaled back once per block.
// PyTorch's own int4 kernel multiplies in bfloat16, which CPUs without AVX-512 BF16 emulate. The
// same kernel serves a batch of decode steps and a prefill: each tile of weights, read once, meets
// the activation rows 4 at a time from the L1 cache (bench/matmul_kernels.py --rows N times it).
//
// Weights are stored in tiles of 8 output rows, interleaved 4 inputs at a time, so that one 32-byte
// register holds 4 weights of each of the 8 rows: multiplied by 4 activations broadcast to every
// lane, each 32-bit lane sums one row's products, and a block's 8 row sums land in one register that
// its 8 scales multiply at once (no horizontal sums, no per-row scalar work). Layouts, made by
// lmstack/engine/kernels.py (t: tile of rows 8t..8t+7, b: block of inputs 32b..32b+31):
//   q4: uint8 (N/8, K/32, 160): 128 bytes of weights 0..15, byte 32c + 4r + k holding row r's input
//       8c + k in its low nibble and 8c + 4 + k in its high one; then the 8 rows' scales and the 8
//       rows' minimums as float16: weight = scale * q + minimum (GGUF Q4_1's form).
//   q8: int8 (N/8, K/32, 256), byte 32c + 4r + k = row r's input 4c + k, -127..127; one float32
//       scale per row: weight = scale[n] * q.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

constexpr int64_t kBlock = 32;    // inputs per block (one scale each)
constexpr int64_t kRows = 8;      // weight rows per tile
constexpr int64_t kQ4Bytes = 160; // one tile's block in q4: 128 bytes of nibbles, 8 + 8 float16
constexpr int64_t kQ8Bytes = 256; // one tile's block in q8

struct Acts {  // activations rounded to int8 per block of 32
  const int8_t* q;       // (M, K)
  const float *d, *ds;   // (M, K/32): each block's scale, and scale * the sum of its int8 values (for q4's minimum)
  int64_t K, nb;
};

// Rounds x into `q` and `d` (resized): a decode step's rows go to this thread's scratch memory, kept
// from call to call (allocating it took 5% of a step), a prefill's to the caller's own buffers.
Acts quantize_rows(const at::Tensor& x, std::vector<int8_t>& q, std::vector<float>& d) {
  const int64_t M = x.size(0), K = x.size(1), nb = K / kBlock;
  q.resize(M * K);
  d.resize(2 * M * nb);
  const float* xp = x.data_ptr<float>();
  float *dp = d.data(), *dsp = d.data() + M * nb;
  for (int64_t i = 0; i < M * nb; ++i) {
    const float* v = xp + i * kBlock;
    float amax = 0.f;
    for (int j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float inv = amax > 0.f ? 127.f / amax : 0.f;
    int sum = 0;
    for (int j = 0; j < kBlock; ++j) {
      const int t = static_cast<int>(std::nearbyint(v[j] * inv));
      q[i * kBlock + j] = static_cast<int8_t>(t);
      sum += t;
    }
    dp[i] = amax / 127.f;
    dsp[i] = dp[i] * static_cast<float>(sum);
  }
  return {q.data(), dp, dsp, K, nb};
}

template <typename Product>
at::Tensor with_rounded_rows(const at::Tensor& x, Product product) {
  thread_local std::vector<int8_t> small_q;
  thread_local std::vector<float> small_d;
  if (x.numel() <= (1 << 16)) return product(quantize_rows(x, small_q, small_d));
  std::vector<int8_t> q;
  std::vector<float> d;
  return product(quantize_rows(x, q, d));
}

inline __m256i four_acts(const int8_t* p) {  // activations p[0..3] in every 32-bit lane
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// y[m0 .. m0+MT, n0 .. n0+8]: one tile of q4 weights against MT activation rows.
template <int MT>
void q4_tile(const uint8_t* w, const Acts& x, int64_t m0, int64_t n0, float* y, int64_t N) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256 acc[MT], acc_min[MT];
  for (int m = 0; m < MT; ++m) acc[m] = acc_min[m] = _mm256_setzero_ps();
  for (int64_t b = 0; b < x.nb; ++b, w += kQ4Bytes) {
    __m256i sums[MT];  // 8 products of at most 2 * 15 * 127 per 16-bit lane: no overflow
    for (int m = 0; m < MT; ++m) sums[m] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32 * c));
      const __m256i lo = _mm256_and_si256(raw, low4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
      for (int m = 0; m < MT; ++m) {
        const int8_t* xb = x.q + (m0 + m) * x.K + b * kBlock + 8 * c;
        sums[m] = _mm256_add_epi16(sums[m], _mm256_maddubs_epi16(lo, four_acts(xb)));
        sums[m] = _mm256_add_epi16(sums[m], _mm256_maddubs_epi16(hi, four_acts(xb + 4)));
      }
    }
    const __m256 scale = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 128)));
    const __m256 minimum = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 144)));
    for (int m = 0; m < MT; ++m) {
      const int64_t i = (m0 + m) * x.nb + b;
      const __m256 dots = _mm256_cvtepi32_ps(_mm256_madd_epi16(sums[m], ones));
      acc[m] = _mm256_fmadd_ps(_mm256_mul_ps(scale, _mm256_set1_ps(x.d[i])), dots, acc[m]);
      acc_min[m] = _mm256_fmadd_ps(minimum, _mm256_set1_ps(x.ds[i]), acc_min[m]);
    }
  }
  for (int m = 0; m < MT; ++m) _mm256_storeu_ps(y + (m0 + m) * N + n0, _mm256_add_ps(acc[m], acc_min[m]));
}

template <int MT>
void q8_tile(const int8_t* w, const float* s, const Acts& x, int64_t m0, int64_t n0, float* y, int64_t N) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[MT];
  for (int m = 0; m < MT; ++m) acc[m] = _mm256_setzero_ps();
  for (int64_t b = 0; b < x.nb; ++b, w += kQ8Bytes) {
    __m256i sums[MT];
    for (int m = 0; m < MT; ++m) sums[m] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32 * c));
      const __m256i wabs = _mm256_sign_epi8(wv, wv);  // |w| as unsigned bytes, its sign moved onto x
      for (int m = 0; m < MT; ++m) {
        const __m256i xv = _mm256_sign_epi8(four_acts(x.q + (m0 + m) * x.K + b * kBlock + 4 * c), wv);
        sums[m] = _mm256_add_epi32(sums[m], _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, xv), ones));
      }
    }
    for (int m = 0; m < MT; ++m)
      acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[m]), _mm256_set1_ps(x.d[(m0 + m) * x.nb + b]), acc[m]);
  }
  const __m256 scale = _mm256_loadu_ps(s + n0);
  for (int m = 0; m < MT; ++m) _mm256_storeu_ps(y + (m0 + m) * N + n0, _mm256_mul_ps(acc[m], scale));
}

// Every tile of 8 weight rows against the activation rows 4 at a time (then the remainder), in
// parallel over the tiles. tile(rows, m0, t) computes rows m0..m0+rows of tile t, where `rows` is a
// std::integral_constant (1 to 4), so each row count runs its own unrolled instance.
template <typename TileFn>
void for_tiles(int64_t M, int64_t N, TileFn tile) {
  at::parallel_for(0, N / kRows, 8, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t m0 = 0; m0 < M; m0 += 4) switch (std::min<int64_t>(4, M - m0)) {
          case 1: tile(std::integral_constant<int, 1>{}, m0, t); break;
          case 2: tile(std::integral_constant<int, 2>{}, m0, t); break;
          case 3: tile(std::integral_constant<int, 3>{}, m0, t); break;
          default: tile(std::integral_constant<int, 4>{}, m0, t);
        }
  });
}

int64_t check(const at::Tensor& x, const at::Tensor& w, at::ScalarType wt, int64_t block_bytes) {  // -> N
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(), "x must be contiguous float (M, K)");
  TORCH_CHECK(x.size(1) % kBlock == 0, "K must be a multiple of 32");
  TORCH_CHECK(w.scalar_type() == wt && w.is_contiguous() && w.dim() == 3 && w.size(1) * kBlock == x.size(1) &&
              w.size(2) == block_bytes, "weights do not match K or are not in the kernel's layout");
  return w.size(0) * kRows;
}

// One row's block of 32 float weights as q4: values 0..15 from the block's minimum in steps of
// (max - min) / 15, written into the tile layout at row r of the tile block `out`.
void q4_block(const float* v, int r, uint8_t* out) {
  float lo = v[0], hi = v[0];
  for (int j = 1; j < kBlock; ++j) lo = std::min(lo, v[j]), hi = std::max(hi, v[j]);
  const float scale = std::max((hi - lo) / 15.f, 1e-12f);
  uint8_t q[kBlock];
  for (int j = 0; j < kBlock; ++j) q[j] = static_cast<uint8_t>(std::clamp(std::nearbyint((v[j] - lo) / scale), 0.f, 15.f));
  for (int c = 0; c < 4; ++c)
    for (int k = 0; k < 4; ++k) out[32 * c + 4 * r + k] = q[8 * c + k] | (q[8 * c + 4 + k] << 4);
  reinterpret_cast<uint16_t*>(out + 128)[r] = _cvtss_sh(scale, 0);
  reinterpret_cast<uint16_t*>(out + 144)[r] = _cvtss_sh(lo, 0);
}

}  // namespace

// float weights (N, K) -> q4 in the tile layout (N/8, K/32, 160): what pack_q4 in kernels.py makes from
// the same rounding, without its temporaries (a model loads several times faster).
at::Tensor q4_quantize(const at::Tensor& w) {
  TORCH_CHECK(w.dim() == 2 && w.scalar_type() == at::kFloat && w.is_contiguous() && w.size(0) % kRows == 0 &&
              w.size(1) % kBlock == 0, "weights must be contiguous float (N, K), N a multiple of 8, K of 32");
  const int64_t N = w.size(0), K = w.size(1), nb = K / kBlock;
  at::Tensor out = at::empty({N / kRows, nb, kQ4Bytes}, w.options().dtype(at::kByte));
  const float* wp = w.data_ptr<float>();
  uint8_t* op = out.data_ptr<uint8_t>();
  at::parallel_for(0, N / kRows, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t b = 0; b < nb; ++b)
        for (int r = 0; r < kRows; ++r) q4_block(wp + (t * kRows + r) * K + b * kBlock, r, op + (t * nb + b) * kQ4Bytes);
  });
  return out;
}


// x float (M, K) @ q4 weights (N, K).T -> float (M, N).
at::Tensor q4_mm(const at::Tensor& x, const at::Tensor& w) {
  const int64_t N = check(x, w, at::kByte, kQ4Bytes), M = x.size(0);
  at::Tensor y = at::empty({M, N}, x.options());
  const uint8_t* wp = w.data_ptr<uint8_t>();
  float* yp = y.data_ptr<float>();
  return with_rounded_rows(x, [&](const Acts& a) {
    for_tiles(M, N, [&](auto rows, int64_t m0, int64_t t) {
      q4_tile<decltype(rows)::value>(wp + t * a.nb * kQ4Bytes, a, m0, t * kRows, yp, N);
    });
    return y;
  });
}

// x float (M, K) @ q8 weights (N, K).T -> float (M, N), s: one float32 scale per weight row.
at::Tensor q8_mm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& s) {
  const int64_t N = check(x, w, at::kChar, kQ8Bytes), M = x.size(0);
  TORCH_CHECK(s.scalar_type() == at::kFloat && s.is_contiguous() && s.numel() == N, "q8 scales do not match N");
  at::Tensor y = at::empty({M, N}, x.options());
  const int8_t* wp = w.data_ptr<int8_t>();
  const float* sp = s.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  return with_rounded_rows(x, [&](const Acts& a) {
    for_tiles(M, N, [&](auto rows, int64_t m0, int64_t t) {
      q8_tile<decltype(rows)::value>(wp + t * a.nb * kQ8Bytes, sp, a, m0, t * kRows, yp, N);
    });
    return y;
  });
}

TORCH_LIBRARY(lmstack, m) {
  m.def("q4_mm(Tensor x, Tensor w) -> Tensor");
  m.def("q8_mm(Tensor x, Tensor w, Tensor s) -> Tensor");
  m.def("q4_quantize(Tensor w) -> Tensor");
}

TORCH_LIBRARY_IMPL(lmstack, CPU, m) {
  m.impl("q4_mm", &q4_mm);
  m.impl("q8_mm", &q8_mm);
  m.impl("q4_quantize", &q4_quantize);
}
