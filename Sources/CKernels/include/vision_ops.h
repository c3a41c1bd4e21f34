#pragma once
// Row-wise f32 kernels for the vision tower (SigLIP): softmax numerators, bias + GELU, bias +
// LayerNorm, row scaling. Each works on a range of rows on the calling thread (callers split
// rows across their threads) and uses the best instruction set the CPU has (AVX-512, AVX2 with
// FMA, or portable C), chosen once by cpuid and following `ck_select_isa` for tests.

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// For each of `rows` rows (length `length`, rows `stride` floats apart): x ← e^(x − max(x)),
/// and `inverse_sums[r]` ← 1 / Σ x. (Softmax with the division left to the caller.)
void ckv_exp_rows(float *x, int64_t rows, int64_t length, int64_t stride, float *inverse_sums);

/// x[r][i] ← gelu_tanh(x[r][i] + bias[i]) for `rows` rows of `width` (bias may be NULL).
/// gelu_tanh(v) = 0.5·v·(1 + tanh(√(2/π)·(v + 0.044715·v³))), evaluated as v / (1 + e^(−2u)).
void ckv_bias_gelu_rows(float *x, const float *bias, int64_t rows, int64_t width);

/// For `rows` rows of `width`: x[r] += add (when `add` is not NULL), then
/// out[r] = (x[r] − mean) / √(var + eps) · weight + bias (biased variance, as PyTorch).
/// `out` may equal `x` (then only the normalized row remains).
void ckv_add_layer_norm_rows(float *x, const float *add, float *out, const float *weight,
                             const float *bias, int64_t rows, int64_t width, float eps);

/// x[r][i] ← x[r][i] · scales[r] for `rows` rows of `width`, rows `stride` floats apart.
void ckv_scale_rows(float *x, const float *scales, int64_t rows, int64_t width, int64_t stride);

/// out[r][i] ← bias[i] for `rows` rows of `width`, rows `stride` floats apart.
void ckv_fill_rows(float *out, const float *bias, int64_t rows, int64_t width, int64_t stride);

/// Floats of workspace `ckv_attention_head` needs for blocks of `rows` query rows, `n` keys and
/// head dimension `hd` (64-byte alignment included).
int64_t ckv_attention_workspace(int64_t rows, int64_t n, int64_t hd);

/// One head's attention: out[r] = softmax(scale · q[r] · Kᵀ) · V for all `n` query rows, with q,
/// k, v rows `ld` floats apart (each pointing at the head's first column), head dimension `hd`,
/// out rows `ldo` apart. K and V are repacked once into the workspace; queries go in blocks of
/// `block_rows` whose score block stays in cache through scores (8×32 register tiles), e^(s − max)
/// and mixing (4×80 tiles). AVX-512 only: returns 0 without doing anything when the CPU lacks it
/// (or `ck_select_isa` chose less) or `hd` > 80, so that the caller uses its general path.
int ckv_attention_head(const float *q, const float *k, const float *v, int64_t ld, int64_t n, int64_t hd,
                       float scale, float *out, int64_t ldo, int64_t block_rows, float *workspace);

/// e^x as the kernels compute it (for tests).
float ckv_exp(float x);

/// Atomically adds 1 to *counter and returns the previous value (work sharing between threads).
int64_t ckv_fetch_increment(int64_t *counter);

#ifdef __cplusplus
}
#endif
