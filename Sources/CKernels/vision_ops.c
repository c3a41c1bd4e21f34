// Row-wise f32 kernels for the vision tower; see include/vision_ops.h.
//
// Each kernel is written once as plain loops in an always-inlined body and instantiated three
// times: inside a function with an AVX-512 target attribute, one with AVX2+FMA, and one with
// no target. The compiler vectorizes each body for its instruction set; the reductions (max,
// sums) are written with 16 independent lanes and `fp reassociate` so they vectorize too.
// The exponential avoids libm: x = n·ln2 + r with n rounded by the 1.5·2^23 trick, e^r by a
// degree-6 polynomial (relative error ~2e-7), 2^n built in the exponent field.

#include "vision_ops.h"
#include "ckernels.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define CKV_X86 1
#else
#define CKV_X86 0
#endif

#define CKV_INLINE static inline __attribute__((always_inline))
#define CKV_LANES 16

CKV_INLINE float ckv_exp_body(float input) {
    float x = input < -87.0f ? -87.0f : (input > 88.0f ? 88.0f : input);
    float shifted = x * 1.44269504f + 12582912.0f;
    float n = shifted - 12582912.0f;
    float r = x - n * 0.693359375f - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float poly = p * (r * r) + r + 1.0f;
    uint32_t bits;
    memcpy(&bits, &shifted, 4);
    bits = (bits - 0x4B400000u + 127u) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return poly * scale;
}

CKV_INLINE void exp_rows_body(float *x, int64_t rows, int64_t length, int64_t stride, float *inverse_sums) {
#pragma clang fp reassociate(on)
    for (int64_t row = 0; row < rows; row++) {
        float *restrict v = x + row * stride;
        float m[CKV_LANES];
        for (int l = 0; l < CKV_LANES; l++) m[l] = -INFINITY;
        int64_t i = 0;
        for (; i + CKV_LANES <= length; i += CKV_LANES)
            for (int l = 0; l < CKV_LANES; l++) m[l] = v[i + l] > m[l] ? v[i + l] : m[l];
        float maximum = -INFINITY;
        for (int l = 0; l < CKV_LANES; l++) maximum = m[l] > maximum ? m[l] : maximum;
        for (; i < length; i++) maximum = v[i] > maximum ? v[i] : maximum;
        float s[CKV_LANES] = {0};
        i = 0;
        for (; i + CKV_LANES <= length; i += CKV_LANES)
            for (int l = 0; l < CKV_LANES; l++) {
                float e = ckv_exp_body(v[i + l] - maximum);
                v[i + l] = e;
                s[l] += e;
            }
        float sum = 0;
        for (; i < length; i++) {
            float e = ckv_exp_body(v[i] - maximum);
            v[i] = e;
            sum += e;
        }
        for (int l = 0; l < CKV_LANES; l++) sum += s[l];
        inverse_sums[row] = 1.0f / sum;
    }
}

CKV_INLINE void bias_gelu_rows_body(float *x, const float *bias, int64_t rows, int64_t width) {
    for (int64_t row = 0; row < rows; row++) {
        float *restrict v = x + row * width;
        for (int64_t i = 0; i < width; i++) {
            float a = bias ? v[i] + bias[i] : v[i];
            float u = (a + a * a * a * 0.044715f) * 0.7978845608028654f;
            v[i] = a / (1.0f + ckv_exp_body(-2.0f * u));
        }
    }
}

CKV_INLINE void add_layer_norm_rows_body(float *x, const float *add, float *out, const float *weight,
                                         const float *bias, int64_t rows, int64_t width, float eps) {
#pragma clang fp reassociate(on)
    for (int64_t row = 0; row < rows; row++) {
        float *v = x + row * width;
        float *o = out + row * width;
        float s[CKV_LANES] = {0};
        int64_t i = 0;
        if (add) {
            for (; i + CKV_LANES <= width; i += CKV_LANES)
                for (int l = 0; l < CKV_LANES; l++) {
                    float a = v[i + l] + add[i + l];
                    v[i + l] = a;
                    s[l] += a;
                }
            for (; i < width; i++) { v[i] += add[i]; s[0] += v[i]; }
        } else {
            for (; i + CKV_LANES <= width; i += CKV_LANES)
                for (int l = 0; l < CKV_LANES; l++) s[l] += v[i + l];
            for (; i < width; i++) s[0] += v[i];
        }
        float sum = 0;
        for (int l = 0; l < CKV_LANES; l++) sum += s[l];
        float mean = sum / (float)width;
        float q[CKV_LANES] = {0};
        i = 0;
        for (; i + CKV_LANES <= width; i += CKV_LANES)
            for (int l = 0; l < CKV_LANES; l++) {
                float d = v[i + l] - mean;
                q[l] += d * d;
            }
        for (; i < width; i++) { float d = v[i] - mean; q[0] += d * d; }
        float squares = 0;
        for (int l = 0; l < CKV_LANES; l++) squares += q[l];
        float inverse = 1.0f / sqrtf(squares / (float)width + eps);
        for (i = 0; i < width; i++) o[i] = (v[i] - mean) * inverse * weight[i] + bias[i];
    }
}

CKV_INLINE void scale_rows_body(float *x, const float *scales, int64_t rows, int64_t width, int64_t stride) {
    for (int64_t row = 0; row < rows; row++) {
        float *restrict v = x + row * stride;
        float s = scales[row];
        for (int64_t i = 0; i < width; i++) v[i] *= s;
    }
}

#define CKV_DEFINE(suffix, target)                                                                       \
    static target void exp_rows_##suffix(float *x, int64_t rows, int64_t length, int64_t stride,         \
                                         float *inverse_sums) {                                          \
        exp_rows_body(x, rows, length, stride, inverse_sums);                                            \
    }                                                                                                    \
    static target void bias_gelu_rows_##suffix(float *x, const float *bias, int64_t rows, int64_t width) { \
        bias_gelu_rows_body(x, bias, rows, width);                                                       \
    }                                                                                                    \
    static target void add_layer_norm_rows_##suffix(float *x, const float *add, float *out,              \
                                                    const float *weight, const float *bias,              \
                                                    int64_t rows, int64_t width, float eps) {            \
        add_layer_norm_rows_body(x, add, out, weight, bias, rows, width, eps);                           \
    }                                                                                                    \
    static target void scale_rows_##suffix(float *x, const float *scales, int64_t rows, int64_t width,   \
                                           int64_t stride) {                                             \
        scale_rows_body(x, scales, rows, width, stride);                                                 \
    }

CKV_DEFINE(scalar, )
#if CKV_X86
CKV_DEFINE(avx2, __attribute__((target("avx2,fma"))))
CKV_DEFINE(avx512, __attribute__((target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl"))))
#endif

// ck_active_isa() follows cpuid (and ck_select_isa in tests); its AVX-512 level also needs
// VNNI, which every AVX-512 CPU with our other requirements in practice has.
#if CKV_X86
#define CKV_DISPATCH(name, ...)                                                 \
    do {                                                                        \
        int isa = ck_active_isa();                                              \
        if (isa == CK_ISA_AVX512) name##_avx512(__VA_ARGS__);                   \
        else if (isa == CK_ISA_AVX2) name##_avx2(__VA_ARGS__);                  \
        else name##_scalar(__VA_ARGS__);                                        \
    } while (0)
#else
#define CKV_DISPATCH(name, ...) name##_scalar(__VA_ARGS__)
#endif

void ckv_exp_rows(float *x, int64_t rows, int64_t length, int64_t stride, float *inverse_sums) {
    CKV_DISPATCH(exp_rows, x, rows, length, stride, inverse_sums);
}

void ckv_bias_gelu_rows(float *x, const float *bias, int64_t rows, int64_t width) {
    CKV_DISPATCH(bias_gelu_rows, x, bias, rows, width);
}

void ckv_add_layer_norm_rows(float *x, const float *add, float *out, const float *weight, const float *bias,
                             int64_t rows, int64_t width, float eps) {
    CKV_DISPATCH(add_layer_norm_rows, x, add, out, weight, bias, rows, width, eps);
}

void ckv_scale_rows(float *x, const float *scales, int64_t rows, int64_t width, int64_t stride) {
    CKV_DISPATCH(scale_rows, x, scales, rows, width, stride);
}

void ckv_fill_rows(float *out, const float *bias, int64_t rows, int64_t width, int64_t stride) {
    for (int64_t row = 0; row < rows; row++) memcpy(out + row * stride, bias, (size_t)width * sizeof(float));
}

float ckv_exp(float x) { return ckv_exp_body(x); }

int64_t ckv_fetch_increment(int64_t *counter) { return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED); }

// MARK: attention block (AVX-512)

#define CKV_KP 32   // key columns per packed K panel (two zmm)
#define CKV_VP 80   // packed V row width (five zmm): head dimensions up to 80
#define CKV_JB 128  // keys per block of the mixing loop (a 40 KB slice of packed V)

static int64_t ckv_round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

int64_t ckv_attention_workspace(int64_t rows, int64_t n, int64_t hd) {
    if (rows > n) rows = n;
    int64_t n32 = ckv_round_up(n, CKV_KP);
    return n32 * hd            // packed K panels
         + (rows + 1) * (n32 + 16) // scores (+ a dummy row for partial row tiles)
         + n * CKV_VP          // packed V
         + (rows + 4) * CKV_VP // output accumulators (+ dummy rows)
         + ckv_round_up(rows, 16)
         + 6 * 16;             // alignment
}

#if CKV_X86
#include <immintrin.h>
#define CKV_AVX512 __attribute__((target("avx2,fma,avx512f,avx512dq,avx512bw,avx512vl")))

#ifdef CKV_PROFILE
#include <time.h>
double ckv_prof[5]; static double ckv_prof_last;
static double ckv_now(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
#define CKV_PROF(i) { double t = ckv_now(); if (i) ckv_prof[i] += t - ckv_prof_last; else ckv_prof[4] += t - ckv_prof_last; ckv_prof_last = t; }
#else
#define CKV_PROF(i)
#endif

static float *ckv_align(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

// s[r][j0 .. j0+32) = scale · q_r · K[j0 .. j0+32)ᵀ for 8 rows (row pointers given).
static inline CKV_AVX512 void ckv_scores_tile(const float *const *qr, const float *kp, int64_t hd, float scale,
                                              float *const *sr) {
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    __m512 a40 = a00, a41 = a00, a50 = a00, a51 = a00, a60 = a00, a61 = a00, a70 = a00, a71 = a00;
    const float *q0 = qr[0], *q1 = qr[1], *q2 = qr[2], *q3 = qr[3], *q4 = qr[4], *q5 = qr[5], *q6 = qr[6], *q7 = qr[7];
    for (int64_t c = 0; c < hd; c++) {
        __m512 k0 = _mm512_load_ps(kp + c * CKV_KP), k1 = _mm512_load_ps(kp + c * CKV_KP + 16);
        __m512 b;
        b = _mm512_set1_ps(q0[c]); a00 = _mm512_fmadd_ps(b, k0, a00); a01 = _mm512_fmadd_ps(b, k1, a01);
        b = _mm512_set1_ps(q1[c]); a10 = _mm512_fmadd_ps(b, k0, a10); a11 = _mm512_fmadd_ps(b, k1, a11);
        b = _mm512_set1_ps(q2[c]); a20 = _mm512_fmadd_ps(b, k0, a20); a21 = _mm512_fmadd_ps(b, k1, a21);
        b = _mm512_set1_ps(q3[c]); a30 = _mm512_fmadd_ps(b, k0, a30); a31 = _mm512_fmadd_ps(b, k1, a31);
        b = _mm512_set1_ps(q4[c]); a40 = _mm512_fmadd_ps(b, k0, a40); a41 = _mm512_fmadd_ps(b, k1, a41);
        b = _mm512_set1_ps(q5[c]); a50 = _mm512_fmadd_ps(b, k0, a50); a51 = _mm512_fmadd_ps(b, k1, a51);
        b = _mm512_set1_ps(q6[c]); a60 = _mm512_fmadd_ps(b, k0, a60); a61 = _mm512_fmadd_ps(b, k1, a61);
        b = _mm512_set1_ps(q7[c]); a70 = _mm512_fmadd_ps(b, k0, a70); a71 = _mm512_fmadd_ps(b, k1, a71);
    }
    __m512 sc = _mm512_set1_ps(scale);
#define CKV_ST(r, x0, x1) _mm512_store_ps(sr[r], _mm512_mul_ps(x0, sc)); _mm512_store_ps(sr[r] + 16, _mm512_mul_ps(x1, sc));
    CKV_ST(0, a00, a01) CKV_ST(1, a10, a11) CKV_ST(2, a20, a21) CKV_ST(3, a30, a31)
    CKV_ST(4, a40, a41) CKV_ST(5, a50, a51) CKV_ST(6, a60, a61) CKV_ST(7, a70, a71)
#undef CKV_ST
}

// acc[r] (80 floats each, 4 rows) += Σ_j p_r[j] · vp[j] for j in [j0, j1).
static inline CKV_AVX512 void ckv_mix_tile(const float *const *pr, const float *vp, int64_t j0, int64_t j1,
                                           float *const *acc) {
#define CKV_LD(r) __m512 r##0 = _mm512_load_ps(acc[r] + 0), r##1 = _mm512_load_ps(acc[r] + 16), \
    r##2 = _mm512_load_ps(acc[r] + 32), r##3 = _mm512_load_ps(acc[r] + 48), r##4 = _mm512_load_ps(acc[r] + 64);
    enum { A = 0, B = 1, C = 2, D = 3 };
    CKV_LD(A) CKV_LD(B) CKV_LD(C) CKV_LD(D)
#undef CKV_LD
    const float *p0 = pr[0], *p1 = pr[1], *p2 = pr[2], *p3 = pr[3];
    for (int64_t j = j0; j < j1; j++) {
        const float *row = vp + j * CKV_VP;
        __m512 v0 = _mm512_load_ps(row), v1 = _mm512_load_ps(row + 16), v2 = _mm512_load_ps(row + 32);
        __m512 v3 = _mm512_load_ps(row + 48), v4 = _mm512_load_ps(row + 64);
        __m512 b;
#define CKV_FMA(r, p) b = _mm512_set1_ps(p[j]); r##0 = _mm512_fmadd_ps(b, v0, r##0); r##1 = _mm512_fmadd_ps(b, v1, r##1); \
    r##2 = _mm512_fmadd_ps(b, v2, r##2); r##3 = _mm512_fmadd_ps(b, v3, r##3); r##4 = _mm512_fmadd_ps(b, v4, r##4);
        CKV_FMA(A, p0) CKV_FMA(B, p1) CKV_FMA(C, p2) CKV_FMA(D, p3)
#undef CKV_FMA
    }
#define CKV_SV(r) _mm512_store_ps(acc[r] + 0, r##0); _mm512_store_ps(acc[r] + 16, r##1); \
    _mm512_store_ps(acc[r] + 32, r##2); _mm512_store_ps(acc[r] + 48, r##3); _mm512_store_ps(acc[r] + 64, r##4);
    CKV_SV(A) CKV_SV(B) CKV_SV(C) CKV_SV(D)
#undef CKV_SV
}

static CKV_AVX512 void ckv_attention_head_avx512(const float *q, const float *k, const float *v, int64_t ld,
                                                 int64_t n, int64_t hd, float scale, float *out, int64_t ldo,
                                                 int64_t block_rows, float *workspace) {
    int64_t n32 = ckv_round_up(n, CKV_KP);
    int64_t lds = n32 + 16;  // not a multiple of 4 KB: rows of a tile fall in different cache sets
    int64_t block = block_rows < n ? block_rows : n;
    float *kp = ckv_align(workspace);
    float *s = ckv_align(kp + n32 * hd);
    float *dummy_s = s + block * lds;
    float *vp = ckv_align(dummy_s + lds);
    float *acc = ckv_align(vp + n * CKV_VP);
    float *dummy_acc = acc + block * CKV_VP;
    float *sums = ckv_align(dummy_acc + 4 * CKV_VP);
#ifdef CKV_PROFILE
    ckv_prof_last = ckv_now();
#endif
    // Pack K once per head: panel p holds keys [32p, 32p+32) as hd rows of 32 (zeros past n).
    for (int64_t p = 0; p < n32 / CKV_KP; p++) {
        float *panel = kp + p * hd * CKV_KP;
        for (int64_t jj = 0; jj < CKV_KP; jj++) {
            int64_t j = p * CKV_KP + jj;
            const float *key = k + j * ld;
            for (int64_t c = 0; c < hd; c++) panel[c * CKV_KP + jj] = j < n ? key[c] : 0.0f;
        }
    }
    // Pack V once per head as rows of 80 (zeros past hd).
    for (int64_t j = 0; j < n; j++) {
        float *row = vp + j * CKV_VP;
        const float *value = v + j * ld;
        int64_t c = 0;
        for (; c < hd; c++) row[c] = value[c];
        for (; c < CKV_VP; c++) row[c] = 0;
    }
    CKV_PROF(0)
    for (int64_t row0 = 0; row0 < n; row0 += block) {
        int64_t rows = n - row0 < block ? n - row0 : block;
        const float *qb = q + row0 * ld;
        // Scores, panel by panel (the panel stays in L1 while the block's rows pass over it).
        for (int64_t p = 0; p < n32 / CKV_KP; p++) {
            const float *panel = kp + p * hd * CKV_KP;
            for (int64_t r0 = 0; r0 < rows; r0 += 8) {
                const float *qr[8];
                float *sr[8];
                for (int r = 0; r < 8; r++) {
                    int live = r0 + r < rows;
                    qr[r] = qb + (live ? r0 + r : r0) * ld;
                    sr[r] = (live ? s + (r0 + r) * lds : dummy_s) + p * CKV_KP;
                }
                ckv_scores_tile(qr, panel, hd, scale, sr);
            }
        }
        CKV_PROF(1)
        exp_rows_avx512(s, rows, n, lds, sums);
        CKV_PROF(2)
        memset(acc, 0, (size_t)(rows + 4) * CKV_VP * sizeof(float));
        for (int64_t j0 = 0; j0 < n; j0 += CKV_JB) {
            int64_t j1 = j0 + CKV_JB < n ? j0 + CKV_JB : n;
            for (int64_t r0 = 0; r0 < rows; r0 += 4) {
                const float *pr[4];
                float *ar[4];
                for (int r = 0; r < 4; r++) {
                    int live = r0 + r < rows;
                    pr[r] = s + (live ? r0 + r : r0) * lds;
                    ar[r] = live ? acc + (r0 + r) * CKV_VP : dummy_acc + r * CKV_VP;
                }
                ckv_mix_tile(pr, vp, j0, j1, ar);
            }
        }
        for (int64_t r = 0; r < rows; r++) {
            const float *a = acc + r * CKV_VP;
            float *o = out + (row0 + r) * ldo, inv = sums[r];
            for (int64_t c = 0; c < hd; c++) o[c] = a[c] * inv;
        }
        CKV_PROF(3)
    }
}
#endif

int ckv_attention_head(const float *q, const float *k, const float *v, int64_t ld, int64_t n, int64_t hd,
                       float scale, float *out, int64_t ldo, int64_t block_rows, float *workspace) {
#if CKV_X86
    if (ck_active_isa() == CK_ISA_AVX512 && hd <= CKV_VP && hd > 0 && n > 0 && block_rows > 0) {
        ckv_attention_head_avx512(q, k, v, ld, n, hd, scale, out, ldo, block_rows, workspace);
        return 1;
    }
#endif
    (void)q; (void)k; (void)v; (void)ld; (void)n; (void)hd; (void)scale; (void)out; (void)ldo; (void)block_rows;
    (void)workspace;
    return 0;
}
