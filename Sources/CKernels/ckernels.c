// Kernel dispatch, format tables, conversions, and the thread pool.
#include "ckernels.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define CK_X86 1
#else
#define CK_X86 0
#endif

// MARK: half-precision conversion

static float ck_fp16_table[65536];
/// GELU (tanh form, in f32 through libm's tanhf) of every f16 value, rounded to f16: the table
/// llama.cpp's CPU backend computes GELU with.
static float ck_gelu_f16_table[65536];
static pthread_once_t ck_init_once = PTHREAD_ONCE_INIT;

static float ck_fp16_compute(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1F;
    uint32_t mantissa = h & 0x3FF;
    uint32_t bits;
    if (exponent == 0x1F) {
        bits = sign | 0x7F800000u | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {
        // Subnormal: value = mantissa · 2^-24.
        float magnitude = (float)mantissa * 5.9604644775390625e-8f;
        memcpy(&bits, &magnitude, 4);
        bits |= sign;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float ck_half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return ck_fp16_table[h];
}

float ck_fp16_to_f32(uint16_t h) { return ck_fp16_compute(h); }

uint16_t ck_f32_to_fp16(float f) {
    // Round to nearest even, with overflow to infinity and gradual underflow.
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t abs = x & 0x7FFFFFFF;
    if (abs > 0x7F800000) return (uint16_t)(sign | 0x7E00);  // NaN
    if (abs >= 0x477FF000) return (uint16_t)(sign | 0x7C00); // rounds to ≥ 65520: infinity
    if (abs < 0x38800000) {
        // Result is subnormal (or zero): scale into the 10-bit mantissa and round.
        float magnitude;
        memcpy(&magnitude, &abs, 4);
        float scaled = magnitude * 16777216.0f;  // 2^24
        uint32_t m = (uint32_t)lrintf(scaled);
        return (uint16_t)(sign | m);
    }
    uint32_t mantissa = abs & 0x7FFFFF;
    uint32_t exponent = (abs >> 23) - 112;
    uint32_t result = (exponent << 10) | (mantissa >> 13);
    uint32_t remainder = mantissa & 0x1FFF;
    if (remainder > 0x1000 || (remainder == 0x1000 && (result & 1))) result += 1;
    return (uint16_t)(sign | result);
}

float ck_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// Q4_K / Q5_K pack eight 6-bit scales and eight 6-bit minimums into 12 bytes. Read as three
// little-endian words w0 w1 w2: sub-blocks 0–3 take the low 6 bits of w0's bytes (scales) and
// of w1's (minimums); sub-blocks 4–7 take the low (scale) or high (minimum) nibble of w2's
// bytes, topped with the two high bits of w0's (scale) or w1's (minimum) byte. Word operations
// unpack all sixteen at once.
static inline void ck_kquant_scales_mins(const uint8_t *packed, uint8_t scales[8], uint8_t mins[8]) {
    uint32_t w0, w1, w2;
    memcpy(&w0, packed, 4);
    memcpy(&w1, packed + 4, 4);
    memcpy(&w2, packed + 8, 4);
    uint32_t scales_low = w0 & 0x3F3F3F3Fu, mins_low = w1 & 0x3F3F3F3Fu;
    uint32_t scales_high = (w2 & 0x0F0F0F0Fu) | (((w0 >> 6) & 0x03030303u) << 4);
    uint32_t mins_high = ((w2 >> 4) & 0x0F0F0F0Fu) | (((w1 >> 6) & 0x03030303u) << 4);
    memcpy(scales, &scales_low, 4);
    memcpy(scales + 4, &scales_high, 4);
    memcpy(mins, &mins_low, 4);
    memcpy(mins + 4, &mins_high, 4);
}

// MARK: the variants

/// Formats whose scales cover 16 values (two per 32-value block).
static inline int ck_half_block_scales(int type) { return type == CK_Q6_K; }

#define CK_SUFFIX scalar
#define CK_TARGET
#define CK_VARIANT_AVX2 0
#define CK_VARIANT_AVX512 0
#include "kernels_body.h"
#undef CK_SUFFIX
#undef CK_TARGET
#undef CK_VARIANT_AVX2
#undef CK_VARIANT_AVX512

#if CK_X86
#define CK_SUFFIX avx2
#define CK_TARGET __attribute__((target("avx2,fma,f16c")))
#define CK_VARIANT_AVX2 1
#define CK_VARIANT_AVX512 0
#include "kernels_body.h"
#undef CK_SUFFIX
#undef CK_TARGET
#undef CK_VARIANT_AVX2
#undef CK_VARIANT_AVX512

#define CK_SUFFIX avx512
#define CK_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define CK_VARIANT_AVX2 0
#define CK_VARIANT_AVX512 1
#include "kernels_body.h"
#undef CK_SUFFIX
#undef CK_TARGET
#undef CK_VARIANT_AVX2
#undef CK_VARIANT_AVX512
#endif

typedef struct {
    int (*dequantize_row)(int, const void *, float *, int64_t);
    void (*quantize_q8)(const float *, ck_q8_block *, int64_t, int, int32_t *);
    float (*vec_dot)(int, const void *, const float *, int64_t);
    void (*(*group_kernel)(int, int *))(const uint8_t *, int64_t, const ck_q8_block *, const int32_t *, int64_t, int64_t, float *, int64_t);
    float (*dot_f32)(const float *, const float *, int64_t);
    void (*axpy_f32)(float, const float *, float *, int64_t);
    void (*round_to_half)(float *, int64_t);
    void (*f32_to_f16_row)(const float *, uint16_t *, int64_t);
    void (*f16_to_f32_row)(const uint16_t *, float *, int64_t);
    int (*unpack_row)(int, const uint8_t *, int64_t, int8_t *, float *, float *);
    void (*dot_unpacked)(const int8_t *, const float *, const float *, int, int, int64_t, const ck_q8_block *, int64_t, float *, int64_t);
    void (*attention_scores)(const float *, int64_t, int64_t, const void *, int, const int32_t *, int64_t, int64_t, int64_t, float *, int64_t);
    void (*attention_mix)(const float *, int64_t, int64_t, const void *, int, const int32_t *, int64_t, int64_t, int64_t, float *, int64_t);
    void (*geglu_f16_table)(float *, const float *, int64_t);
    float (*dot_f32_f16)(const float *, const uint16_t *, int64_t);
    void (*axpy_f16)(float, const uint16_t *, float *, int64_t);
    int64_t (*argmax_f32)(const float *, int64_t);
    void (*rms_norm)(float *, const float *, int64_t, int64_t, float, float);
} ck_variant;

static const ck_variant ck_variants[3] = {
    {dequantize_row_scalar, quantize_q8_scalar, vec_dot_scalar, group_kernel_scalar, dot_f32_scalar, axpy_f32_scalar, round_to_half_scalar, f32_to_f16_row_scalar, f16_to_f32_row_scalar, unpack_row_scalar, dot_unpacked_scalar, attention_scores_scalar, attention_mix_scalar, geglu_f16_table_scalar, dot_f32_f16_scalar, axpy_f16_scalar, argmax_f32_scalar, rms_norm_scalar},
#if CK_X86
    {dequantize_row_avx2, quantize_q8_avx2, vec_dot_avx2, group_kernel_avx2, dot_f32_avx2, axpy_f32_avx2, round_to_half_avx2, f32_to_f16_row_avx2, f16_to_f32_row_avx2, unpack_row_avx2, dot_unpacked_avx2, attention_scores_avx2, attention_mix_avx2, geglu_f16_table_avx2, dot_f32_f16_avx2, axpy_f16_avx2, argmax_f32_avx2, rms_norm_avx2},
    {dequantize_row_avx512, quantize_q8_avx512, vec_dot_avx512, group_kernel_avx512, dot_f32_avx512, axpy_f32_avx512, round_to_half_avx512, f32_to_f16_row_avx512, f16_to_f32_row_avx512, unpack_row_avx512, dot_unpacked_avx512, attention_scores_avx512, attention_mix_avx512, geglu_f16_table_avx512, dot_f32_f16_avx512, axpy_f16_avx512, argmax_f32_avx512, rms_norm_avx512},
#else
    {dequantize_row_scalar, quantize_q8_scalar, vec_dot_scalar, group_kernel_scalar, dot_f32_scalar, axpy_f32_scalar, round_to_half_scalar, f32_to_f16_row_scalar, f16_to_f32_row_scalar, unpack_row_scalar, dot_unpacked_scalar, attention_scores_scalar, attention_mix_scalar, geglu_f16_table_scalar, dot_f32_f16_scalar, axpy_f16_scalar, argmax_f32_scalar, rms_norm_scalar},
    {dequantize_row_scalar, quantize_q8_scalar, vec_dot_scalar, group_kernel_scalar, dot_f32_scalar, axpy_f32_scalar, round_to_half_scalar, f32_to_f16_row_scalar, f16_to_f32_row_scalar, unpack_row_scalar, dot_unpacked_scalar, attention_scores_scalar, attention_mix_scalar, geglu_f16_table_scalar, dot_f32_f16_scalar, axpy_f16_scalar, argmax_f32_scalar, rms_norm_scalar},
#endif
};

static int ck_best;
static _Atomic int ck_active;

static int ck_detect_isa(void) {
#if CK_X86
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return CK_ISA_SCALAR;
    int osxsave = (ecx >> 27) & 1, fma = (ecx >> 12) & 1, f16c = (ecx >> 29) & 1;
    if (!osxsave) return CK_ISA_SCALAR;
    // The OS must save the YMM (and for AVX-512, the ZMM and mask) registers.
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    int ymm_saved = (xcr0_lo & 0x6) == 0x6;
    int zmm_saved = (xcr0_lo & 0xE6) == 0xE6;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return CK_ISA_SCALAR;
    int avx2 = (ebx >> 5) & 1;
    int avx512f = (ebx >> 16) & 1, avx512bw = (ebx >> 30) & 1, avx512vl = (ebx >> 31) & 1;
    int avx512vnni = (ecx >> 11) & 1;
    if (avx2 && fma && f16c && ymm_saved) {
        if (avx512f && avx512bw && avx512vl && avx512vnni && zmm_saved) return CK_ISA_AVX512;
        return CK_ISA_AVX2;
    }
#endif
    return CK_ISA_SCALAR;
}

static void ck_initialize(void) {
    for (uint32_t h = 0; h < 65536; h++) ck_fp16_table[h] = ck_fp16_compute((uint16_t)h);
    for (uint32_t h = 0; h < 65536; h++) {
        float x = ck_fp16_table[h];
        float gelu = 0.5f * x * (1.0f + tanhf(0.79788456080286535587989211986876f * x * (1.0f + 0.044715f * x * x)));
        ck_gelu_f16_table[h] = ck_fp16_table[ck_f32_to_fp16(gelu)];
    }
    ck_best = ck_detect_isa();
    const char *forced = getenv("GEMMA_KERNEL_ISA");  // "scalar" or "avx2": test a slower path
    int chosen = ck_best;
    if (forced && strcmp(forced, "scalar") == 0) chosen = CK_ISA_SCALAR;
    if (forced && strcmp(forced, "avx2") == 0 && ck_best >= CK_ISA_AVX2) chosen = CK_ISA_AVX2;
    atomic_store(&ck_active, chosen);
}

static inline const ck_variant *ck_current(void) {
    pthread_once(&ck_init_once, ck_initialize);
    return &ck_variants[atomic_load_explicit(&ck_active, memory_order_relaxed)];
}

int ck_active_isa(void) { ck_current(); return atomic_load(&ck_active); }
int ck_best_isa(void) { ck_current(); return ck_best; }
int ck_select_isa(int isa) {
    ck_current();
    if (isa < CK_ISA_SCALAR || isa > ck_best) return 0;
    atomic_store(&ck_active, isa);
    return 1;
}

// MARK: formats

int64_t ck_block_elements(int type) {
    switch (type) {
    case CK_F32: case CK_F16: case CK_BF16: return 1;
    case CK_Q4_0: case CK_Q4_1: case CK_Q5_0: case CK_Q5_1: case CK_Q8_0: return 32;
    case CK_Q4_K: case CK_Q5_K: case CK_Q6_K: return 256;
    default: return 0;
    }
}

int64_t ck_block_bytes(int type) {
    switch (type) {
    case CK_F32: return 4;
    case CK_F16: case CK_BF16: return 2;
    case CK_Q4_0: return 18;
    case CK_Q4_1: return 20;
    case CK_Q5_0: return 22;
    case CK_Q5_1: return 24;
    case CK_Q8_0: return 34;
    case CK_Q4_K: return 144;
    case CK_Q5_K: return 176;
    case CK_Q6_K: return 210;
    default: return 0;
    }
}

int64_t ck_row_bytes(int type, int64_t n) {
    int64_t elements = ck_block_elements(type);
    if (elements == 0 || n < 0 || n % elements != 0) return 0;
    return n / elements * ck_block_bytes(type);
}

int ck_uses_q8_activations(int type) { return ck_block_elements(type) > 1; }

// MARK: single-row entry points

int ck_dequantize_row(int type, const void *src, float *dst, int64_t n) {
    if (ck_row_bytes(type, n) == 0 && n != 0) return 0;
    return ck_current()->dequantize_row(type, src, dst, n);
}

void ck_quantize_q8(const float *x, ck_q8_block *dst, int64_t n, int mode) { ck_current()->quantize_q8(x, dst, n, mode, NULL); }

int ck_activation_mode(int type) {
    return (type == CK_Q4_K || type == CK_Q5_K || type == CK_Q6_K) ? CK_ACT_Q8_K : CK_ACT_Q8_0;
}

float ck_vec_dot(int type, const void *row, const float *x, const ck_q8_block *xq, int64_t n) {
    const ck_variant *variant = ck_current();
    if (!ck_uses_q8_activations(type)) return variant->vec_dot(type, row, x, n);
    if (ck_row_bytes(type, n) == 0) return 0;
    // The arithmetic of every quantized product (kernels_body.h, `dot_unpacked`).
    int64_t nb = n / 32;
    int8_t *q = malloc((size_t)n);
    float *scales = malloc((size_t)nb * 2 * sizeof(float)), *mins = malloc((size_t)nb * sizeof(float));
    float y = 0;
    if (q && scales && mins) {
        int has_min = variant->unpack_row(type, (const uint8_t *)row, n, q, scales, mins);
        variant->dot_unpacked(q, scales, mins, has_min, ck_half_block_scales(type), nb, xq, 1, &y, 1);
    }
    free(q);
    free(scales);
    free(mins);
    return y;
}

float ck_dot_f32(const float *a, const float *b, int64_t n) { return ck_current()->dot_f32(a, b, n); }
void ck_axpy_f32(float a, const float *x, float *y, int64_t n) { ck_current()->axpy_f32(a, x, y, n); }
float ck_dot_f32_f16(const float *a, const uint16_t *b, int64_t n) { return ck_current()->dot_f32_f16(a, b, n); }
void ck_axpy_f16(float a, const uint16_t *x, float *y, int64_t n) { ck_current()->axpy_f16(a, x, y, n); }
int64_t ck_argmax_f32(const float *x, int64_t n) { return ck_current()->argmax_f32(x, n); }
void ck_rms_norm(float *x, const float *weight, int64_t width, int64_t rows, float eps, float offset) {
    ck_current()->rms_norm(x, weight, width, rows, eps, offset);
}
void ck_attention_scores(const float *q, int64_t queries, int64_t q_stride, const void *base, int half, const int32_t *slots,
                         int64_t stride, int64_t keys, int64_t n, float *scores, int64_t s_stride) {
    ck_current()->attention_scores(q, queries, q_stride, base, half, slots, stride, keys, n, scores, s_stride);
}
void ck_attention_mix(const float *s, int64_t queries, int64_t s_stride, const void *base, int half, const int32_t *slots,
                      int64_t stride, int64_t keys, int64_t n, float *out, int64_t o_stride) {
    ck_current()->attention_mix(s, queries, s_stride, base, half, slots, stride, keys, n, out, o_stride);
}
void ck_geglu_f16_table(float *gate, const float *up, int64_t n) { ck_current()->geglu_f16_table(gate, up, n); }
void ck_round_to_half(float *x, int64_t n) { ck_current()->round_to_half(x, n); }
void ck_f32_to_f16_row(const float *x, uint16_t *y, int64_t n) { ck_current()->f32_to_f16_row(x, y, n); }
void ck_f16_to_f32_row(const uint16_t *x, float *y, int64_t n) { ck_current()->f16_to_f32_row(x, y, n); }

// MARK: thread pool

/// The tasks a thread has left in the current batch, `[front, back)` packed into one word (front
/// in the low half) so that the owner (taking from the front) and a thief (from the back) claim
/// with one compare-and-swap. Each thread starts with a contiguous share, so the rows it reads
/// follow on from one task to the next and its prefetches run ahead into its own next task; a
/// thread that runs dry (or one whose peer was preempted) takes the far end of another's share.
typedef struct {
    _Alignas(64) _Atomic uint64_t tasks;
} ck_pool_range;

struct ck_pool_worker_start {
    struct ck_pool *pool;
    int index;
};

struct ck_pool {
    int threads;
    pthread_t *workers;
    pthread_mutex_t mutex;
    pthread_cond_t start;
    pthread_cond_t finished;
    _Atomic uint64_t generation;  // bumped for every batch; workers wait for a change
    _Atomic int stopping;
    _Atomic int busy_workers;     // workers still running the current batch
    _Atomic int sleepers;         // workers blocked on `start` (or about to be)
    uint64_t spin_ns;             // polling time before blocking
    void (*task)(void *, int64_t);
    void *context;
    ck_pool_range *ranges;        // per thread (0: the caller): the tasks it has left
    struct ck_pool_worker_start *starts;
};

/// How long a waiting thread polls before it blocks: `GEMMA_POOL_SPIN_US` microseconds
/// (default `CK_SPIN_MICROSECONDS`; 0 blocks at once). A decode step runs ~75 short batches with
/// main-thread work of tens of microseconds between them, and a futex wake-up per batch cost
/// more than that: on a quiet 2-core machine decode went from 50–52 to 58 tok/s with polling.
/// The bound is in time, not rounds, so that on an oversubscribed machine a waiter gives its
/// core back after at most that long.
enum { CK_SPIN_MICROSECONDS = 150 };

static inline uint64_t ck_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static inline void ck_cpu_relax(void) {
#if CK_X86
    _mm_pause();
#endif
}

/// Claims the next task of `range` (the front for its owner, the back for a thief), or −1.
static inline int64_t ck_pool_claim(ck_pool_range *range, int owner) {
    uint64_t tasks = atomic_load_explicit(&range->tasks, memory_order_relaxed);
    for (;;) {
        uint64_t front = tasks & 0xffffffffu, back = tasks >> 32;
        if (front >= back) return -1;
        uint64_t claimed = owner ? tasks + 1 : ((back - 1) << 32 | front);
        if (atomic_compare_exchange_weak_explicit(&range->tasks, &tasks, claimed, memory_order_relaxed,
                                                  memory_order_relaxed))
            return owner ? (int64_t)front : (int64_t)(back - 1);
    }
}

/// Runs thread `self`'s share of the batch, then what is left of the others'.
static void ck_pool_drain(ck_pool *pool, int self) {
    for (int k = 0; k < pool->threads; k++) {
        int victim = (self + k) % pool->threads;
        for (int64_t index; (index = ck_pool_claim(&pool->ranges[victim], k == 0)) >= 0;)
            pool->task(pool->context, index);
    }
}

static void *ck_pool_worker(void *argument) {
    ck_pool *pool = ((struct ck_pool_worker_start *)argument)->pool;
    const int self = ((struct ck_pool_worker_start *)argument)->index;
    uint64_t seen = 0;
    for (;;) {
        uint64_t now = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (now == seen && pool->spin_ns > 0) {
            uint64_t deadline = ck_now_ns() + pool->spin_ns;
            for (int spin = 1; now == seen && !atomic_load_explicit(&pool->stopping, memory_order_relaxed); spin++) {
                ck_cpu_relax();
                now = atomic_load_explicit(&pool->generation, memory_order_acquire);
                if ((spin & 63) == 0 && ck_now_ns() > deadline) break;
            }
        }
        if (now == seen) {
            // Announce the sleep before the last look (the caller bumps the generation, then
            // reads `sleepers`: sequentially consistent, so one of the two sees the other).
            pthread_mutex_lock(&pool->mutex);
            atomic_fetch_add(&pool->sleepers, 1);
            while (!atomic_load(&pool->stopping) && (now = atomic_load(&pool->generation)) == seen)
                pthread_cond_wait(&pool->start, &pool->mutex);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->mutex);
        }
        if (atomic_load(&pool->stopping)) break;
        seen = now;
        ck_pool_drain(pool, self);
        if (atomic_fetch_sub_explicit(&pool->busy_workers, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool->mutex);
            pthread_cond_signal(&pool->finished);
            pthread_mutex_unlock(&pool->mutex);
        }
    }
    return NULL;
}

ck_pool *ck_pool_create(int threads) {
    if (threads < 1) threads = 1;
    ck_pool *pool = calloc(1, sizeof(ck_pool));
    if (!pool) return NULL;
    pool->threads = threads;
    // Unset, empty (as `systemd-socket-activate -E` passes an unset name) or not a number:
    // the default.
    const char *spin = getenv("GEMMA_POOL_SPIN_US");
    char *end = NULL;
    long microseconds = spin && *spin ? strtol(spin, &end, 10) : CK_SPIN_MICROSECONDS;
    if (spin && *spin && *end != '\0') microseconds = CK_SPIN_MICROSECONDS;
    pool->spin_ns = microseconds > 0 ? (uint64_t)microseconds * 1000u : 0;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->start, NULL);
    pthread_cond_init(&pool->finished, NULL);
    pool->workers = calloc((size_t)threads, sizeof(pthread_t));
    pool->starts = calloc((size_t)threads, sizeof(struct ck_pool_worker_start));
    pool->ranges = aligned_alloc(_Alignof(ck_pool_range), (size_t)threads * sizeof(ck_pool_range));
    if (!pool->workers || !pool->starts || !pool->ranges) {
        pool->threads = 1;
        ck_pool_destroy(pool);
        return NULL;
    }
    for (int i = 0; i < threads; i++) atomic_init(&pool->ranges[i].tasks, 0);
    for (int i = 0; i < threads - 1; i++) {
        pool->starts[i] = (struct ck_pool_worker_start){pool, i + 1};
        if (pthread_create(&pool->workers[i], NULL, ck_pool_worker, &pool->starts[i]) != 0) {
            pool->threads = i + 1;
            ck_pool_destroy(pool);
            return NULL;
        }
    }
    return pool;
}

void ck_pool_destroy(ck_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->stopping, 1);
    pthread_cond_broadcast(&pool->start);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 0; i < pool->threads - 1; i++) pthread_join(pool->workers[i], NULL);
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->start);
    pthread_cond_destroy(&pool->finished);
    free(pool->workers);
    free(pool->starts);
    free(pool->ranges);
    free(pool);
}

int ck_pool_threads(const ck_pool *pool) { return pool ? pool->threads : 1; }

void ck_pool_run(ck_pool *pool, void (*task)(void *, int64_t), void *context, int64_t count) {
    if (count <= 0) return;
    if (!pool || pool->threads == 1 || count == 1) {
        for (int64_t i = 0; i < count; i++) task(context, i);
        return;
    }
    if (count > INT32_MAX) abort();  // documented limit: shares are packed into 32-bit halves
    pool->task = task;
    pool->context = context;
    // Contiguous shares, thread i's from i·count/threads (counts fit the 32-bit halves).
    for (int i = 0; i < pool->threads; i++) {
        uint64_t front = (uint64_t)(count * i / pool->threads), back = (uint64_t)(count * (i + 1) / pool->threads);
        atomic_store_explicit(&pool->ranges[i].tasks, back << 32 | front, memory_order_relaxed);
    }
    atomic_store_explicit(&pool->busy_workers, pool->threads - 1, memory_order_relaxed);
    atomic_fetch_add(&pool->generation, 1);  // publishes the fields above
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_broadcast(&pool->start);
        pthread_mutex_unlock(&pool->mutex);
    }
    ck_pool_drain(pool, 0);
    if (pool->spin_ns > 0) {
        uint64_t deadline = ck_now_ns() + pool->spin_ns;
        for (int spin = 1; atomic_load_explicit(&pool->busy_workers, memory_order_acquire) > 0; spin++) {
            ck_cpu_relax();
            if ((spin & 63) == 0 && ck_now_ns() > deadline) break;
        }
        if (atomic_load_explicit(&pool->busy_workers, memory_order_acquire) == 0) return;
    }
    pthread_mutex_lock(&pool->mutex);
    while (atomic_load(&pool->busy_workers) > 0) pthread_cond_wait(&pool->finished, &pool->mutex);
    pthread_mutex_unlock(&pool->mutex);
}

/// Up to `CK_MATVEC_GROUP_MAX` jobs of one task function in a single pass of the pool (one
/// wake-up): pool task `index` runs task `index − first_task[m]` of job m.
typedef struct {
    void (*task)(void *, int64_t);
    void *jobs[CK_MATVEC_GROUP_MAX];
    int64_t first_task[CK_MATVEC_GROUP_MAX + 1];
} ck_job_group;

static void ck_job_group_task(void *context, int64_t index) {
    const ck_job_group *group = (const ck_job_group *)context;
    int m = 0;
    while (index >= group->first_task[m + 1]) m++;
    group->task(group->jobs[m], index - group->first_task[m]);
}

// MARK: matrix kernels

typedef struct {
    const ck_variant *variant;
    int type;
    const uint8_t *weights;
    int64_t rows, cols, row_stride, rows_per_task;
    const float *x;
    const ck_q8_block *xq;
    const int32_t *xsum;  // Σ qs per activation half-block, two per block (offset corrections)
    int64_t count;        // input vectors
    float *y;
} ck_matvec_job;

/// Rows per task: enough tasks to balance threads, each a multiple of 16 rows (the widest
/// kernel's group).
static int64_t ck_rows_per_task(ck_pool *pool, int64_t rows) {
    int64_t tasks = (int64_t)ck_pool_threads(pool) * 8;
    int64_t per = (rows + tasks - 1) / tasks;
    per = (per + 15) / 16 * 16;
    return per < 16 ? 16 : per;
}

static void ck_matvec_task(void *context, int64_t index) {
    ck_matvec_job *job = (ck_matvec_job *)context;
    int64_t first = index * job->rows_per_task;
    int64_t end = first + job->rows_per_task;
    if (end > job->rows) end = job->rows;
    if (job->xq) {
        // Groups of rows read in place where the variant has a kernel for the format; the
        // rest unpacked one row at a time (the same arithmetic).
        int group = 0;
        void (*group_kernel)(const uint8_t *, int64_t, const ck_q8_block *, const int32_t *, int64_t, int64_t, float *, int64_t) =
            job->variant->group_kernel(job->type, &group);
        if (group_kernel)
            for (; first + group <= end; first += group)
                group_kernel(job->weights + first * job->row_stride, job->row_stride, job->xq, job->xsum, job->cols / 32, job->count,
                            job->y + first, job->rows);
        if (first >= end) return;
        int64_t nb = job->cols / 32;
        int8_t *q = malloc((size_t)job->cols);
        float *scales = malloc((size_t)nb * 2 * sizeof(float));
        float *mins = malloc((size_t)nb * sizeof(float));
        if (!q || !scales || !mins) abort();
        int halves = ck_half_block_scales(job->type);
        for (int64_t r = first; r < end; r++) {
            int has_min = job->variant->unpack_row(job->type, job->weights + r * job->row_stride, job->cols, q, scales, mins);
            job->variant->dot_unpacked(q, scales, mins, has_min, halves, nb, job->xq, job->count, job->y + r, job->rows);
        }
        free(q);
        free(scales);
        free(mins);
        return;
    }
    for (int64_t r = first; r < end; r++) {
        const uint8_t *row = job->weights + r * job->row_stride;
        for (int64_t v = 0; v < job->count; v++)
            job->y[v * job->rows + r] = job->variant->vec_dot(job->type, row, job->x + v * job->cols, job->cols);
    }
}


// MARK: AVX-512 tiled int8 products

#if CK_X86
#define CK_AVX512_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

/// The tiled kernel keeps one weight row per int32 lane: a group of 16 rows is laid out per
/// 32-column block as eight 64-byte chunks (chunk c holds values 4c…4c+3 of each of the 16
/// rows, so a vpdpbusd with four activation bytes broadcast adds them into each row's lane),
/// then `corr[2][16]` (−128 · Σ q over the low and high 16 values, or over all 32 in [0] when a
/// block has one scale; this undoes the +128 that makes activations unsigned), `lo[16]`,
/// `hi[16]` (scales) and `mins[16]`. A lane's integer sum is the exact block sum, so each row
/// goes through exactly `dot_unpacked`'s chain with no horizontal reduction and three float
/// operations per block for 16 rows. Preparing the layout costs more than the in-place kernels'
/// register transposes, so it pays from `CK_TILED_MIN_VECTORS` vectors.
enum { CK_GROUP_ROWS = 16, CK_GROUP_BLOCK_BYTES = 8 * 64 + 2 * 64 + 3 * 64 };

/// Activations for the tiled kernel: per vector and block, values as unsigned bytes (x + 128),
/// the scale and the scaled sum. Vectors are padded with zeros to a multiple of 4.
typedef struct {
    int64_t blocks;   // 32-column blocks per vector
    uint8_t *ux;      // vectors × blocks × 32
    float *d, *s;     // vectors × blocks
} ck_x_tiles;

/// Scratch memory of the calling pool thread, kept between calls (the pool's threads live as
/// long as the model), so large batches do not fault in fresh pages for every matrix.
static _Thread_local uint8_t *ck_scratch_memory;
static _Thread_local size_t ck_scratch_capacity;

static void *ck_thread_scratch(size_t bytes) {
    if (bytes > ck_scratch_capacity) {
        free(ck_scratch_memory);
        ck_scratch_memory = aligned_alloc(64, (bytes + 63) / 64 * 64);
        ck_scratch_capacity = ck_scratch_memory ? bytes : 0;
    }
    return ck_scratch_memory;
}

/// `groups` (1 or 2) row groups × 4 vectors from `v0`: `out[g][v]` gets 16 rows' results.
static inline __attribute__((always_inline)) CK_AVX512_TARGET void ck_tile_avx512(
    const uint8_t *w, int64_t group_stride, const int groups, const int halves, int has_min, const ck_x_tiles *x, int64_t v0,
    __m512 out[2][4]) {
    int64_t nb = x->blocks;
    for (int g = 0; g < groups; g++)
        for (int v = 0; v < 4; v++) out[g][v] = _mm512_setzero_ps();
    const uint8_t *ux[4];
    for (int v = 0; v < 4; v++) ux[v] = x->ux + (v0 + v) * nb * 32;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb[2];
        __m512i lo_sum[2][4], hi_sum[2][4];
        for (int g = 0; g < groups; g++) {
            wb[g] = w + g * group_stride + b * CK_GROUP_BLOCK_BYTES;
            __m512i corr_lo = _mm512_loadu_si512(wb[g] + 512), corr_hi = _mm512_loadu_si512(wb[g] + 576);
            for (int v = 0; v < 4; v++) { lo_sum[g][v] = corr_lo; hi_sum[g][v] = corr_hi; }
        }
        for (int c = 0; c < 8; c++) {
            __m512i chunk[2];
            for (int g = 0; g < groups; g++) chunk[g] = _mm512_loadu_si512(wb[g] + 64 * c);
            for (int v = 0; v < 4; v++) {
                int32_t four;
                memcpy(&four, ux[v] + 32 * b + 4 * c, 4);
                __m512i xs = _mm512_set1_epi32(four);
                for (int g = 0; g < groups; g++) {
                    if (halves && c >= 4) hi_sum[g][v] = _mm512_dpbusd_epi32(hi_sum[g][v], xs, chunk[g]);
                    else lo_sum[g][v] = _mm512_dpbusd_epi32(lo_sum[g][v], xs, chunk[g]);
                }
            }
        }
        for (int g = 0; g < groups; g++) {
            __m512 lo = _mm512_loadu_ps(wb[g] + 640), hi = _mm512_loadu_ps(wb[g] + 704), mins = _mm512_loadu_ps(wb[g] + 768);
            for (int v = 0; v < 4; v++) {
                __m512 d = _mm512_set1_ps(x->d[(v0 + v) * nb + b]);
                out[g][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo_sum[g][v]), _mm512_mul_ps(lo, d), out[g][v]);
                if (halves) out[g][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi_sum[g][v]), _mm512_mul_ps(hi, d), out[g][v]);
                if (has_min) out[g][v] = _mm512_fmadd_ps(mins, _mm512_set1_ps(x->s[(v0 + v) * nb + b]), out[g][v]);
            }
        }
    }
}

/// Prepares `rows` (at most 16) consecutive weight rows into one group of the tiled layout.
/// Returns whether the format has minimum terms.
static CK_AVX512_TARGET int ck_prepare_group_avx512(int type, const uint8_t *src, int64_t row_stride, int rows, int64_t cols,
                                                     uint8_t *group, uint8_t *scratch) {
    int64_t nb = cols / 32;
    int8_t *q = (int8_t *)scratch;
    float *scales = (float *)(scratch + nb * 32), *mins = scales + 2 * nb;
    int has_min = 0, halves = ck_half_block_scales(type);
    for (int r = 0; r < CK_GROUP_ROWS; r++) {
        if (r < rows) {
            has_min = unpack_row_avx512(type, src + r * row_stride, cols, q, scales, mins) > 0;
        } else {
            memset(q, 0, (size_t)nb * 32);
            memset(scales, 0, (size_t)nb * 3 * sizeof(float));
        }
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *wb = group + b * CK_GROUP_BLOCK_BYTES;
            const int8_t *qb = q + 32 * b;
            for (int c = 0; c < 8; c++) memcpy(wb + 64 * c + 4 * r, qb + 4 * c, 4);
            int32_t lo = 0, hi = 0;
            for (int k = 0; k < 16; k++) { lo += qb[k]; hi += qb[16 + k]; }
            int32_t corr_lo = halves ? -128 * lo : -128 * (lo + hi), corr_hi = -128 * hi;
            memcpy(wb + 512 + 4 * r, &corr_lo, 4);
            memcpy(wb + 576 + 4 * r, &corr_hi, 4);
            memcpy(wb + 640 + 4 * r, &scales[2 * b], 4);
            memcpy(wb + 704 + 4 * r, &scales[2 * b + 1], 4);
            memcpy(wb + 768 + 4 * r, &mins[b], 4);
        }
    }
    return has_min;
}

typedef struct {
    int type;
    const uint8_t *weights;
    int64_t rows, cols, row_stride, rows_per_task, count;
    const ck_x_tiles *x;
    float *y;
} ck_tiled_job;

static CK_AVX512_TARGET void ck_tiled_task(void *context, int64_t index) {
    ck_tiled_job *job = (ck_tiled_job *)context;
    int64_t first = index * job->rows_per_task;
    int64_t end = first + job->rows_per_task;
    if (end > job->rows) end = job->rows;
    int64_t groups = (end - first + CK_GROUP_ROWS - 1) / CK_GROUP_ROWS, nb = job->x->blocks;
    int64_t group_stride = nb * CK_GROUP_BLOCK_BYTES;
    // Prepare every row of the task once (sized to stay in L2), then sweep vectors four at a
    // time (their activations stay in L1) across pairs of row groups.
    size_t prepared = (size_t)(groups * group_stride);
    uint8_t *memory = ck_thread_scratch(prepared + (size_t)(nb * 32 + nb * 3 * 4));
    if (!memory) abort();
    int has_min = 0, halves = ck_half_block_scales(job->type);
    for (int64_t g = 0; g < groups; g++) {
        int64_t row0 = first + CK_GROUP_ROWS * g;
        int rows = (int)(end - row0 < CK_GROUP_ROWS ? end - row0 : CK_GROUP_ROWS);
        has_min = ck_prepare_group_avx512(job->type, job->weights + row0 * job->row_stride, job->row_stride, rows, job->cols,
                                        memory + g * group_stride, memory + prepared);
    }
    __m512 out[2][4];
    for (int64_t v0 = 0; v0 < job->count; v0 += 4) {
        int vectors = (int)(job->count - v0 < 4 ? job->count - v0 : 4);
        // Formats with 16-wide scales need two sums per lane: one group at a time keeps
        // every accumulator in a register.
        int64_t step = halves ? 1 : 2;
        for (int64_t g = 0; g < groups; g += step) {
            const uint8_t *w = memory + g * group_stride;
            int pair = g + 1 < groups && step == 2;
            // Constant group counts and `halves` in each call keep branches out of the loop.
            if (halves) ck_tile_avx512(w, group_stride, 1, 1, has_min, job->x, v0, out);
            else if (pair) ck_tile_avx512(w, group_stride, 2, 0, has_min, job->x, v0, out);
            else ck_tile_avx512(w, group_stride, 1, 0, has_min, job->x, v0, out);
            for (int k = 0; k < (pair ? 2 : 1); k++) {
                int64_t row0 = first + CK_GROUP_ROWS * (g + k);
                int rows = (int)(end - row0 < CK_GROUP_ROWS ? end - row0 : CK_GROUP_ROWS);
                __mmask16 mask = (__mmask16)((1u << rows) - 1);
                for (int v = 0; v < vectors; v++) _mm512_mask_storeu_ps(job->y + (v0 + v) * job->rows + row0, mask, out[k][v]);
            }
        }
    }
}

typedef struct {
    const float *x;
    int64_t cols, count;
    int type;
    ck_x_tiles *tiles;
} ck_repack_job;

/// Quantizes activation vector `v` (zeros past the last vector) into the tiles.
static CK_AVX512_TARGET void ck_repack_task(void *context, int64_t v) {
    ck_repack_job *job = (ck_repack_job *)context;
    int64_t nb = job->tiles->blocks;
    ck_q8_block *blocks = ck_thread_scratch((size_t)nb * sizeof(ck_q8_block));
    if (!blocks) abort();
    if (v < job->count) {
        quantize_q8_avx512(job->x + v * job->cols, blocks, job->cols, ck_activation_mode(job->type), NULL);
    } else {
        memset(blocks, 0, (size_t)nb * sizeof(ck_q8_block));
    }
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb; b++) {
        __m256i qs = _mm256_loadu_si256((const __m256i *)blocks[b].qs);
        _mm256_storeu_si256((__m256i *)(job->tiles->ux + (v * nb + b) * 32), _mm256_xor_si256(qs, flip));  // x + 128
        job->tiles->d[v * nb + b] = blocks[b].d;
        job->tiles->s[v * nb + b] = blocks[b].s;
    }
}

/// The AVX-512 path of `ck_matmul_group` for large batches: `n` matrices that read the same
/// `count` vectors `x` with the same activation scheme (and column count) share one
/// quantization and repacking of `x` and one pass of the pool.
static CK_AVX512_TARGET int ck_tiled_avx512(ck_pool *pool, int n, const ck_matrix *m, const float *x, int64_t count,
                                            float *const *y) {
    int64_t cols = m[0].cols, nb = cols / 32, padded = (count + 3) / 4 * 4;
    ck_x_tiles tiles = {nb, malloc((size_t)(padded * nb * 32)), malloc((size_t)(padded * nb) * sizeof(float)),
                        malloc((size_t)(padded * nb) * sizeof(float))};
    if (!tiles.ux || !tiles.d || !tiles.s) {
        free(tiles.ux); free(tiles.d); free(tiles.s);
        return 0;
    }
    ck_repack_job repack = {x, cols, count, m[0].type, &tiles};
    ck_pool_run(pool, ck_repack_task, &repack, padded);
    ck_tiled_job jobs[CK_MATVEC_GROUP_MAX];
    ck_job_group group = {ck_tiled_task, {0}, {0}};
    for (int i = 0; i < n; i++) {
        // Rows per task: prepared rows (52 bytes per 32 columns) within ~256 KiB, whole pairs
        // of row groups, and at least four tasks per thread when the matrix allows.
        int64_t pair = 2 * CK_GROUP_ROWS;
        int64_t per = (256 * 1024) / (nb * CK_GROUP_BLOCK_BYTES / CK_GROUP_ROWS);
        int64_t balanced = (m[i].rows + 4 * ck_pool_threads(pool) - 1) / (4 * ck_pool_threads(pool));
        if (balanced < per) per = balanced;
        per = per < pair ? pair : per / pair * pair;
        jobs[i] = (ck_tiled_job){m[i].type, m[i].weights, m[i].rows, cols, m[i].row_stride, per, count, &tiles, y[i]};
        group.jobs[i] = &jobs[i];
        group.first_task[i + 1] = group.first_task[i] + (m[i].rows + per - 1) / per;
    }
    ck_pool_run(pool, ck_job_group_task, &group, group.first_task[n]);
    free(tiles.ux); free(tiles.d); free(tiles.s);
    return 1;
}
#endif

/// `y[m] = x · matrices[m]ᵀ` for `vectors` inputs through the in-place group kernels (or
/// unpacked rows), every matrix in one pass of the pool. Matrices that read `x` alike (same
/// columns, same activation scheme) share one quantization of it.
static int ck_run_group(ck_pool *pool, int count, const ck_matrix *matrices, const float *x, int64_t vectors, float *const *y) {
    const ck_variant *variant = ck_current();
    ck_matvec_job jobs[CK_MATVEC_GROUP_MAX];
    ck_job_group group = {ck_matvec_task, {0}, {0}};
    ck_q8_block *quantized[CK_MATVEC_GROUP_MAX] = {0};
    int32_t *xsum[CK_MATVEC_GROUP_MAX] = {0};
    int owned[CK_MATVEC_GROUP_MAX] = {0}, ok = 1;
    for (int m = 0; m < count && ok; m++) {
        const ck_matrix *w = &matrices[m];
        if (ck_uses_q8_activations(w->type)) {
            int mode = ck_activation_mode(w->type);
            for (int k = 0; k < m && !quantized[m]; k++)
                if (quantized[k] && matrices[k].cols == w->cols && ck_activation_mode(matrices[k].type) == mode) {
                    quantized[m] = quantized[k];
                    xsum[m] = xsum[k];
                }
            if (!quantized[m]) {
                int64_t nb = w->cols / 32;
                quantized[m] = malloc((size_t)(vectors * nb) * sizeof(ck_q8_block));
                xsum[m] = malloc((size_t)(2 * vectors * nb) * sizeof(int32_t));
                owned[m] = 1;
                if (!quantized[m] || !xsum[m]) { ok = 0; break; }
                for (int64_t v = 0; v < vectors; v++)
                    variant->quantize_q8(x + v * w->cols, quantized[m] + v * nb, w->cols, mode, xsum[m] + 2 * v * nb);
            }
        }
        jobs[m] = (ck_matvec_job){variant, w->type, w->weights, w->rows, w->cols, w->row_stride,
                                  ck_rows_per_task(pool, w->rows), x, quantized[m], xsum[m], vectors, y[m]};
        group.jobs[m] = &jobs[m];
        group.first_task[m + 1] = group.first_task[m] + (w->rows + jobs[m].rows_per_task - 1) / jobs[m].rows_per_task;
    }
    if (ok) ck_pool_run(pool, ck_job_group_task, &group, group.first_task[count]);
    for (int m = 0; m < count; m++)
        if (owned[m]) { free(quantized[m]); free(xsum[m]); }
    return ok;
}

/// From this many vectors the AVX-512 tiled kernel, which lays rows out once per call, beats
/// the in-place group kernels, which transpose them once per four vectors (measured on the
/// 270M's and 1B's matrices: in-place ahead up to 16–32 vectors, tiled 1.4–1.9× ahead at 256).
enum { CK_TILED_MIN_VECTORS = 32 };

int ck_matmul_group(ck_pool *pool, int count, const ck_matrix *matrices, const float *x, int64_t vectors, float *const *y) {
    if (count < 1 || count > CK_MATVEC_GROUP_MAX || vectors < 0) return 0;
    int quantized = 1;
    for (int m = 0; m < count; m++) {
        if (ck_row_bytes(matrices[m].type, matrices[m].cols) == 0 || matrices[m].rows < 0) return 0;
        quantized &= ck_uses_q8_activations(matrices[m].type);
    }
    if (vectors == 0) return 1;
#if CK_X86
    if (quantized && vectors >= CK_TILED_MIN_VECTORS && atomic_load_explicit(&ck_active, memory_order_relaxed) == CK_ISA_AVX512) {
        // One quantization of x and one pool pass for the matrices that read it alike.
        int shared = 1;
        for (int i = 1; i < count; i++)
            shared &= matrices[i].cols == matrices[0].cols && ck_activation_mode(matrices[i].type) == ck_activation_mode(matrices[0].type);
        if (shared) return ck_tiled_avx512(pool, count, matrices, x, vectors, y);
        for (int i = 0; i < count; i++)
            if (!ck_tiled_avx512(pool, 1, &matrices[i], x, vectors, &y[i])) return 0;
        return 1;
    }
#endif
    return ck_run_group(pool, count, matrices, x, vectors, y);
}

int ck_matvec_multi(ck_pool *pool, int type, const void *weights, int64_t rows, int64_t cols,
                    int64_t row_stride, const float *x, int64_t count, float *y) {
    ck_matrix matrix = {type, weights, rows, cols, row_stride};
    return ck_matmul_group(pool, 1, &matrix, x, count, &y);
}

int ck_matvec(ck_pool *pool, int type, const void *weights, int64_t rows, int64_t cols,
              int64_t row_stride, const float *x, float *y) {
    return ck_matvec_multi(pool, type, weights, rows, cols, row_stride, x, 1, y);
}

typedef struct {
    const ck_variant *variant;
    int type;
    const uint8_t *weights;
    int64_t rows, cols, row_stride, rows_per_task;
    float *dst;
} ck_dequantize_job;

static void ck_dequantize_task(void *context, int64_t index) {
    ck_dequantize_job *job = (ck_dequantize_job *)context;
    int64_t first = index * job->rows_per_task;
    int64_t end = first + job->rows_per_task;
    if (end > job->rows) end = job->rows;
    for (int64_t r = first; r < end; r++)
        job->variant->dequantize_row(job->type, job->weights + r * job->row_stride, job->dst + r * job->cols, job->cols);
}

int ck_dequantize_rows(ck_pool *pool, int type, const void *weights, int64_t rows, int64_t cols,
                       int64_t row_stride, float *dst) {
    if (ck_row_bytes(type, cols) == 0 || rows < 0) return 0;
    ck_dequantize_job job = {ck_current(), type, weights, rows, cols, row_stride, ck_rows_per_task(pool, rows), dst};
    ck_pool_run(pool, ck_dequantize_task, &job, (rows + job.rows_per_task - 1) / job.rows_per_task);
    return 1;
}

// MARK: memory bandwidth

typedef struct {
    const uint8_t *buffer;
    int64_t chunk;
    _Atomic uint64_t checksum;
} ck_stream_job;

#if CK_X86
static CK_AVX512_TARGET uint64_t ck_stream_chunk_avx512(const uint8_t *p, int64_t bytes) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < bytes; i += 256) {
        a0 = _mm512_xor_si512(a0, _mm512_load_si512((const void *)(p + i)));
        a1 = _mm512_xor_si512(a1, _mm512_load_si512((const void *)(p + i + 64)));
        a2 = _mm512_xor_si512(a2, _mm512_load_si512((const void *)(p + i + 128)));
        a3 = _mm512_xor_si512(a3, _mm512_load_si512((const void *)(p + i + 192)));
    }
    __m512i all = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
    return (uint64_t)_mm512_reduce_add_epi64(all);
}
#endif

static uint64_t ck_stream_chunk_plain(const uint8_t *p, int64_t bytes) {
    uint64_t a[8] = {0};
    for (int64_t i = 0; i < bytes; i += 64)
        for (int j = 0; j < 8; j++) {
            uint64_t v;
            memcpy(&v, p + i + 8 * j, 8);
            a[j] ^= v;
        }
    return a[0] ^ a[1] ^ a[2] ^ a[3] ^ a[4] ^ a[5] ^ a[6] ^ a[7];
}

static void ck_stream_task(void *context, int64_t index) {
    ck_stream_job *job = (ck_stream_job *)context;
    const uint8_t *p = job->buffer + index * job->chunk;
    uint64_t sum;
#if CK_X86
    if (atomic_load_explicit(&ck_active, memory_order_relaxed) == CK_ISA_AVX512)
        sum = ck_stream_chunk_avx512(p, job->chunk);
    else
#endif
        sum = ck_stream_chunk_plain(p, job->chunk);
    atomic_fetch_xor_explicit(&job->checksum, sum, memory_order_relaxed);
}

uint64_t ck_stream_read(ck_pool *pool, const void *buffer, int64_t bytes) {
    ck_current();
    // 256 KiB chunks: contiguous streams for the hardware prefetchers, many tasks to balance.
    int64_t chunk = 256 * 1024;
    while (chunk > 4096 && bytes % chunk != 0) chunk /= 2;
    ck_stream_job job = {(const uint8_t *)buffer, chunk, 0};
    ck_pool_run(pool, ck_stream_task, &job, bytes / chunk);
    return atomic_load(&job.checksum);
}
