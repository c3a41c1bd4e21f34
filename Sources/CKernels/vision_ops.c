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
