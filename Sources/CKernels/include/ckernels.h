#pragma once
// Quantized and f32 kernels for GGUF block formats, with a persistent thread pool.
//
// Every entry point picks, once per process, the best implementation the CPU supports
// (AVX-512 with VNNI, AVX2 with FMA, or portable C) by cpuid. Weight rows are read in their
// stored block format; nothing is dequantized wholesale.

#include <stddef.h>
#include <stdint.h>
#include "vision_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/// Storage formats, numbered as ggml numbers them (`enum ggml_type`).
enum {
    CK_F32 = 0, CK_F16 = 1, CK_Q4_0 = 2, CK_Q4_1 = 3, CK_Q5_0 = 6, CK_Q5_1 = 7,
    CK_Q8_0 = 8, CK_Q4_K = 12, CK_Q5_K = 13, CK_Q6_K = 14, CK_BF16 = 30
};

/// Instruction sets an implementation may be chosen for.
enum { CK_ISA_SCALAR = 0, CK_ISA_AVX2 = 1, CK_ISA_AVX512 = 2 };

/// An activation block: 32 values as `d · qs[i]`, and `s = d · Σ qs[i]` (used by formats with
/// an additive minimum). Activations are quantized into these before quantized dot products.
typedef struct {
    float d;
    float s;
    int8_t qs[32];
} ck_q8_block;

/// Elements per block of `type` (1 for float formats), or 0 for an unknown type.
int64_t ck_block_elements(int type);
/// Bytes per block of `type`, or 0 for an unknown type.
int64_t ck_block_bytes(int type);
/// Bytes of a row of `n` elements; 0 if `type` is unknown or `n` is not a whole number of blocks.
int64_t ck_row_bytes(int type, int64_t n);
/// True when dot products on `type` quantize the activation to `ck_q8_block`s first.
int ck_uses_q8_activations(int type);

/// The implementation in use (`CK_ISA_*`).
int ck_active_isa(void);
/// Instruction sets this CPU supports, best first: the best one's id.
int ck_best_isa(void);
/// Selects an implementation (tests use this to compare them). Returns 0 if the CPU lacks it.
int ck_select_isa(int isa);

/// IEEE half and bfloat16 conversions.
float ck_fp16_to_f32(uint16_t h);
uint16_t ck_f32_to_fp16(float f);
float ck_bf16_to_f32(uint16_t h);

/// Decodes `n` elements (whole blocks) of one row into f32. Returns 0 on an unknown type or a
/// partial block, 1 on success.
int ck_dequantize_row(int type, const void *src, float *dst, int64_t n);

/// Activation quantization schemes, as ggml pairs them with weight formats.
enum { CK_ACT_Q8_0 = 0, CK_ACT_Q8_K = 1 };
/// The scheme used with weights of `type`: Q8_K for the K-quants, Q8_0 otherwise.
int ck_activation_mode(int type);

/// Quantizes `n` floats into `n / 32` activation blocks with scheme `mode` (`n` a multiple of
/// 32, or of 256 for `CK_ACT_Q8_K`).
void ck_quantize_q8(const float *x, ck_q8_block *dst, int64_t n, int mode);

/// Dot product of one stored row of `n` elements with an activation vector. `x` (f32) is read
/// for float formats, `xq` (from `ck_quantize_q8`) for quantized formats; the other may be NULL.
float ck_vec_dot(int type, const void *row, const float *x, const ck_q8_block *xq, int64_t n);

/// Converts `n` floats to f16 bits (round to nearest even) / f16 bits to floats.
void ck_f32_to_f16_row(const float *x, uint16_t *y, int64_t n);
void ck_f16_to_f32_row(const uint16_t *x, float *y, int64_t n);

/// Rounds `n` floats to the nearest f16 value (ties to even), in place.
void ck_round_to_half(float *x, int64_t n);

/// f32 helpers for attention.
float ck_dot_f32(const float *a, const float *b, int64_t n);
/// y += a · x (x and y must not overlap)
void ck_axpy_f32(float a, const float *x, float *y, int64_t n);
/// `ck_dot_f32` and `ck_axpy_f32` with the second operand stored as f16 (an f16 KV cache read
/// in place): bit-identical to widening it first.
float ck_dot_f32_f16(const float *a, const uint16_t *b, int64_t n);
void ck_axpy_f16(float a, const uint16_t *x, float *y, int64_t n);
/// Index of the first largest of `n` values (what the scan `if x[i] > x[best] { best = i }`
/// gives, NaNs passed over unless x[0] is NaN); 0 when `n` is 0.
int64_t ck_argmax_f32(const float *x, int64_t n);
/// RMSNorm of `rows` rows of `width` values in place: x / sqrt(mean(x²) + eps) · (offset + w),
/// the sum of squares in double (eight lanes, the same on every ISA).
void ck_rms_norm(float *x, const float *weight, int64_t width, int64_t rows, float eps, float offset);

/// Attention products, bit-identical to per-pair `ck_dot_f32` (`ck_dot_f32_f16`) calls and
/// per-key `ck_axpy_f32` (`ck_axpy_f16`) runs (in key order, skipping zero weights), only faster:
/// `scores[t][j] = q_t · k_j` for `queries` × `keys` pairs of `n`-element rows, and
/// `out[t] = Σ_j s[t][j] · v_j` (out rows overwritten). Key (value) row j is `slots[j] · stride`
/// elements from `base` — a KV cache's slots read in place — or `j · stride` when `slots` is
/// NULL (a contiguous run); elements are f16 with `half`, else f32.
void ck_attention_scores(const float *q, int64_t queries, int64_t q_stride, const void *base, int half, const int32_t *slots,
                         int64_t stride, int64_t keys, int64_t n, float *scores, int64_t s_stride);
void ck_attention_mix(const float *s, int64_t queries, int64_t s_stride, const void *base, int half, const int32_t *slots,
                      int64_t stride, int64_t keys, int64_t n, float *out, int64_t o_stride);

/// gate[i] ← GELU(gate[i]) · up[i] with llama.cpp's CPU numerics (GELU looked up in a table of
/// f16 inputs and f16-rounded outputs; 0 below −10, identity above 10).
void ck_geglu_f16_table(float *gate, const float *up, int64_t n);

// MARK: thread pool

/// A fixed set of worker threads that run batches of tasks; the calling thread takes part.
/// A pool must be driven by one caller thread at a time.
typedef struct ck_pool ck_pool;
/// Creates a pool that runs work on `threads` threads in total (the caller plus threads − 1
/// workers). Returns NULL if threads cannot be created.
ck_pool *ck_pool_create(int threads);
void ck_pool_destroy(ck_pool *pool);
int ck_pool_threads(const ck_pool *pool);
/// Runs `task(context, i)` for every i in [0, count) across the pool and returns when all are
/// done (`count` ≤ INT32_MAX). A NULL pool runs everything on the calling thread. Each thread
/// starts on a contiguous share of the indices and takes from the others' when its own runs out.
void ck_pool_run(ck_pool *pool, void (*task)(void *context, int64_t index), void *context,
                 int64_t count);

// MARK: matrix kernels

/// `y[r] = row_r · x` for `rows` rows of `cols` elements, rows `row_stride` bytes apart,
/// split across the pool. Quantized formats quantize `x` once to q8 blocks; every quantized
/// product is the chain of exact integer block sums documented in kernels_body.h
/// (`dot_unpacked`), so a (row, vector) result depends on that row and vector alone — not on
/// the batch, the kernel, the thread count or the instruction set.
/// Returns 0 on an unknown type or `cols` not a whole number of blocks.
int ck_matvec(ck_pool *pool, int type, const void *weights, int64_t rows, int64_t cols,
              int64_t row_stride, const float *x, float *y);

/// Like `ck_matvec` for `count` input vectors (`x` is count×cols, `y` is count×rows): weight
/// rows are read in place once per 4 vectors (AVX-512: from 32 vectors, laid out once per call
/// for a tiled kernel); every vector's result equals its own `ck_matvec` exactly.
int ck_matvec_multi(ck_pool *pool, int type, const void *weights, int64_t rows, int64_t cols,
                    int64_t row_stride, const float *x, int64_t count, float *y);

/// A stored matrix for `ck_matmul_group`.
typedef struct {
    int type;
    const void *weights;
    int64_t rows, cols, row_stride;
} ck_matrix;

enum { CK_MATVEC_GROUP_MAX = 4 };

/// `y[m] = x · matrices[m]ᵀ` for `vectors` input rows (`ck_matvec_multi` per matrix, results
/// identical) for up to `CK_MATVEC_GROUP_MAX` matrices reading the same `x`, in one pool pass.
int ck_matmul_group(ck_pool *pool, int count, const ck_matrix *matrices, const float *x, int64_t vectors,
                    float *const *y);

/// Dequantizes `rows` rows into a dense f32 `rows × cols` matrix, split across the pool.
int ck_dequantize_rows(ck_pool *pool, int type, const void *weights, int64_t rows,
                       int64_t cols, int64_t row_stride, float *dst);

// MARK: memory bandwidth

/// Reads `bytes` of `buffer` (64-byte aligned, `bytes` a multiple of 4096) once, split into
/// page-sized chunks across the pool, with the widest loads the CPU has; returns a value that
/// depends on every byte (so the reads cannot be elided). For a streaming-read bandwidth figure,
/// time it on a buffer much larger than the last-level cache.
uint64_t ck_stream_read(ck_pool *pool, const void *buffer, int64_t bytes);

#ifdef __cplusplus
}
#endif
