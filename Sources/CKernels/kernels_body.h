// One instruction-set variant of the kernels. ckernels.c includes this file once per variant
// with CK_SUFFIX (name suffix) and CK_TARGET (a target attribute, or nothing) defined, so the
// same plain loops are compiled for each instruction set and auto-vectorized by the compiler;
// the int8 products have AVX2/AVX-512 intrinsics. Every variant performs the same arithmetic
// (exact integer lane sums, explicit fused multiply-adds in a fixed order), so all give
// bit-identical results; the portable variant emulates the AVX lane structure.
//
// Quantized products: activations become int8 blocks of 32 (`quantize_q8`, as ggml pairs
// Q8_0 or Q8_K with each weight format); a weight row is unpacked to int8 values with per-16
// scales (`unpack_row`) and dotted with each activation vector (`dot_unpacked`: the one
// arithmetic of every quantized product), or read in place by group kernels that compute
// exactly the same (`rows4_*` on AVX2, `rows16_*` on AVX-512; ckernels.c's tiled kernel for
// large batches).
//
// Block layouts follow ggml's definitions (ggml-common.h); values decode as:
//   Q8_0  d·q                       q int8
//   Q4_0  d·(q−8)                   q nibble; low nibbles are elements 0–15, high 16–31
//   Q4_1  d·q + m
//   Q5_0  d·(q−16)                  5th bit of element j is bit j of the 32-bit qh
//   Q5_1  d·q + m
//   Q4_K  d·sc_j·q − dmin·m_j       256 per block, 8 sub-blocks of 32 with 6-bit sc/m
//   Q5_K  as Q4_K with a 5th bit from qh
//   Q6_K  d·sc_j·(q−32)             256 per block, 16 sub-blocks of 16 with int8 sc

#define CK_CAT2(a, b) a##_##b
#define CK_CAT(a, b) CK_CAT2(a, b)
#define CK_NAME(name) CK_CAT(name, CK_SUFFIX)

// MARK: unpacking blocks into int8 values

static inline CK_TARGET void CK_NAME(unpack_q4_0)(const uint8_t *block, int8_t *q) {
    const uint8_t *qs = block + 2;
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)((qs[j] & 0x0F) - 8);
        q[j + 16] = (int8_t)((qs[j] >> 4) - 8);
    }
}

static inline CK_TARGET void CK_NAME(unpack_q4_1)(const uint8_t *block, int8_t *q) {
    const uint8_t *qs = block + 4;
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(qs[j] & 0x0F);
        q[j + 16] = (int8_t)(qs[j] >> 4);
    }
}

/// `offset` is 16 for Q5_0 (signed values) and 0 for Q5_1.
static inline CK_TARGET void CK_NAME(unpack_q5)(const uint8_t *qh_bytes, const uint8_t *qs, int offset, int8_t *q) {
    uint32_t qh;
    memcpy(&qh, qh_bytes, 4);
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(((qs[j] & 0x0F) | (((qh >> j) & 1) << 4)) - offset);
        q[j + 16] = (int8_t)(((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - offset);
    }
}

/// Q4_K: 256 unsigned nibbles; 64-element chunk c holds sub-block 2c in the low nibbles of 32
/// bytes and sub-block 2c+1 in their high nibbles.
static inline CK_TARGET void CK_NAME(unpack_q4_k)(const uint8_t *block, int8_t *q) {
    const uint8_t *qs = block + 16;
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = (int8_t)(qs[32 * c + l] & 0x0F);
            q[64 * c + 32 + l] = (int8_t)(qs[32 * c + l] >> 4);
        }
    }
}

/// Q5_K: as Q4_K, with the 5th bit of chunk c's low half in bit 2c of qh[l], high half bit 2c+1.
static inline CK_TARGET void CK_NAME(unpack_q5_k)(const uint8_t *block, int8_t *q) {
    const uint8_t *qh = block + 16;
    const uint8_t *qs = block + 48;
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = (int8_t)((qs[32 * c + l] & 0x0F) | (((qh[l] >> (2 * c)) & 1) << 4));
            q[64 * c + 32 + l] = (int8_t)((qs[32 * c + l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4));
        }
    }
}

/// Q6_K: ql[128] low nibbles, qh[64] two high bits each, values q − 32. Each 128-element half
/// h uses ql[64h…], qh[32h…]; its four 32-element quarters take ql low/ql+32 low/ql high/
/// ql+32 high nibbles and qh bits 0–1/2–3/4–5/6–7.
static inline CK_TARGET void CK_NAME(unpack_q6_k)(const uint8_t *block, int8_t *q) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = block + 64 * h;
        const uint8_t *qh = block + 128 + 32 * h;
        int8_t *out = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            out[l] = (int8_t)(((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32);
            out[l + 32] = (int8_t)(((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32);
            out[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            out[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

// MARK: dequantize

static CK_TARGET int CK_NAME(dequantize_row)(int type, const void *src, float *y, int64_t n) {
    const uint8_t *p = (const uint8_t *)src;
    int8_t q[256];
    switch (type) {
    case CK_F32:
        memcpy(y, src, (size_t)n * 4);
        return 1;
    case CK_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h; memcpy(&h, p + 2 * i, 2);
            y[i] = ck_fp16_table[h];
        }
        return 1;
    case CK_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h; memcpy(&h, p + 2 * i, 2);
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&y[i], &bits, 4);
        }
        return 1;
    case CK_Q8_0:
        for (int64_t b = 0; b < n / 32; b++, p += 34) {
            float d = ck_half(p);
            const int8_t *qs = (const int8_t *)(p + 2);
            for (int j = 0; j < 32; j++) y[32 * b + j] = d * (float)qs[j];
        }
        return 1;
    case CK_Q4_0:
        for (int64_t b = 0; b < n / 32; b++, p += 18) {
            float d = ck_half(p);
            CK_NAME(unpack_q4_0)(p, q);
            for (int j = 0; j < 32; j++) y[32 * b + j] = d * (float)q[j];
        }
        return 1;
    case CK_Q4_1:
        for (int64_t b = 0; b < n / 32; b++, p += 20) {
            float d = ck_half(p), m = ck_half(p + 2);
            CK_NAME(unpack_q4_1)(p, q);
            for (int j = 0; j < 32; j++) y[32 * b + j] = d * (float)q[j] + m;
        }
        return 1;
    case CK_Q5_0:
        for (int64_t b = 0; b < n / 32; b++, p += 22) {
            float d = ck_half(p);
            CK_NAME(unpack_q5)(p + 2, p + 6, 16, q);
            for (int j = 0; j < 32; j++) y[32 * b + j] = d * (float)q[j];
        }
        return 1;
    case CK_Q5_1:
        for (int64_t b = 0; b < n / 32; b++, p += 24) {
            float d = ck_half(p), m = ck_half(p + 2);
            CK_NAME(unpack_q5)(p + 4, p + 8, 0, q);
            for (int j = 0; j < 32; j++) y[32 * b + j] = d * (float)q[j] + m;
        }
        return 1;
    case CK_Q4_K:
    case CK_Q5_K:
        for (int64_t b = 0; b < n / 256; b++) {
            float d = ck_half(p), dmin = ck_half(p + 2);
            if (type == CK_Q4_K) CK_NAME(unpack_q4_k)(p, q); else CK_NAME(unpack_q5_k)(p, q);
            uint8_t sc[8], m[8];
            ck_kquant_scales_mins(p + 4, sc, m);
            for (int j = 0; j < 8; j++) {
                float scale = d * (float)sc[j], offset = dmin * (float)m[j];
                for (int l = 0; l < 32; l++) y[256 * b + 32 * j + l] = scale * (float)q[32 * j + l] - offset;
            }
            p += (type == CK_Q4_K) ? 144 : 176;
        }
        return 1;
    case CK_Q6_K:
        for (int64_t b = 0; b < n / 256; b++, p += 210) {
            float d = ck_half(p + 208);
            const int8_t *scales = (const int8_t *)(p + 192);
            CK_NAME(unpack_q6_k)(p, q);
            for (int j = 0; j < 16; j++) {
                float scale = d * (float)scales[j];
                for (int l = 0; l < 16; l++) y[256 * b + 16 * j + l] = scale * (float)q[16 * j + l];
            }
        }
        return 1;
    default:
        return 0;
    }
}

// MARK: activation quantization

// Activation quantization: three steps, each with a scalar form and (AVX-512) a vector form
// that gives the same bits.

#if CK_VARIANT_AVX512
/// max |v| over `n` values (a multiple of 16); NaNs are passed over, as by the scalar `>`
/// (vmaxps returns its second operand, the running maximum, when either is NaN).
static CK_TARGET inline float CK_NAME(abs_max)(const float *v, int64_t n) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; j += 16) acc = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(v + j)), acc);
    return _mm512_reduce_max_ps(acc);
}

/// The first of `n` values (a multiple of 16) whose magnitude is `amax`; 0 when none is.
static CK_TARGET inline float CK_NAME(first_of_magnitude)(const float *v, int64_t n, float amax) {
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 hit = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(v + j)), _mm512_set1_ps(amax), _CMP_EQ_OQ);
        if (hit) return v[j + __builtin_ctz(hit)];
    }
    return 0;
}

/// 32 values times `scale`, rounded to nearest-even (nearbyintf's default mode), at most
/// `ceiling`, stored as int8; `halves` gets the sums of the first and the last sixteen.
static CK_TARGET inline void CK_NAME(round_block)(const float *v, float scale, int32_t ceiling, int8_t *qs, int32_t halves[2]) {
    __m512 s = _mm512_set1_ps(scale);
    __m512i top = _mm512_set1_epi32(ceiling);
    __m512i r0 = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(v), s)), top);
    __m512i r1 = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(v + 16), s)), top);
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtepi32_epi8(r0));
    _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtepi32_epi8(r1));
    halves[0] = _mm512_reduce_add_epi32(r0);
    halves[1] = _mm512_reduce_add_epi32(r1);
}
#else
static CK_TARGET inline float CK_NAME(abs_max)(const float *v, int64_t n) {
    float amax = 0;
    for (int64_t j = 0; j < n; j++) {
        float a = fabsf(v[j]);
        amax = a > amax ? a : amax;
    }
    return amax;
}

static CK_TARGET inline float CK_NAME(first_of_magnitude)(const float *v, int64_t n, float amax) {
    for (int64_t j = 0; j < n; j++)
        if (fabsf(v[j]) == amax) return v[j];
    return 0;
}

static CK_TARGET inline void CK_NAME(round_block)(const float *v, float scale, int32_t ceiling, int8_t *qs, int32_t halves[2]) {
    halves[0] = halves[1] = 0;
    for (int j = 0; j < 32; j++) {
        int32_t r = (int32_t)nearbyintf(v[j] * scale);
        r = r > ceiling ? ceiling : r;
        qs[j] = (int8_t)r;
        halves[j >= 16] += r;
    }
}
#endif

/// Quantizes activations the way ggml does for the weight format at hand, so results track
/// llama.cpp's: `CK_ACT_Q8_0` — per 32 values, scale max|x|/127 stored as f16, values
/// round-to-nearest-even of x·127/max|x| (ggml's Q8_0/Q8_1); `CK_ACT_Q8_K` — per 256 values,
/// scale −max/127 with `max` the (first) value of largest magnitude, values clamped to ≤ 127
/// (Q8_K), written into eight 32-value blocks that share the scale. `half_sums` (when not
/// NULL) gets Σ qs of each block's two sixteen-value halves, which the group kernels' offset
/// corrections use.
static CK_TARGET void CK_NAME(quantize_q8)(const float *x, ck_q8_block *out, int64_t n, int mode, int32_t *half_sums) {
    int32_t halves[2];
    if (mode == CK_ACT_Q8_K) {
        for (int64_t s = 0; s < n / 256; s++) {
            const float *v = x + 256 * s;
            float amax = CK_NAME(abs_max)(v, 256);
            float max = amax > 0 ? CK_NAME(first_of_magnitude)(v, 256, amax) : 0;
            float iscale = amax > 0 ? -127.0f / max : 0.0f;
            float d = amax > 0 ? 1.0f / iscale : 0.0f;
            for (int b = 0; b < 8; b++) {
                ck_q8_block *block = out + 8 * s + b;
                CK_NAME(round_block)(v + 32 * b, iscale, 127, block->qs, halves);
                block->d = d;
                block->s = d * (float)(halves[0] + halves[1]);
                if (half_sums) memcpy(half_sums + 2 * (8 * s + b), halves, sizeof halves);
            }
        }
        return;
    }
    for (int64_t b = 0; b < n / 32; b++) {
        const float *v = x + 32 * b;
        float amax = CK_NAME(abs_max)(v, 32);
        CK_NAME(round_block)(v, amax > 0 ? 127.0f / amax : 0.0f, INT32_MAX, out[b].qs, halves);
        out[b].d = ck_fp16_table[ck_f32_to_fp16(amax / 127.0f)];
        // ggml keeps Q8_1's sum term as f16 too.
        out[b].s = ck_fp16_table[ck_f32_to_fp16(out[b].d * (float)(halves[0] + halves[1]))];
        if (half_sums) memcpy(half_sums + 2 * b, halves, sizeof halves);
    }
}

// MARK: dot products
//
// Every multiply-add is an explicit fmaf, so the portable build rounds exactly like the
// AVX builds (where the compiler emits the FMA instruction) and results match across machines.

static CK_TARGET float CK_NAME(dot_f32)(const float *a, const float *b, int64_t n) {
    // Sixteen independent partial sums let the compiler keep them in one vector register
    // without reassociating a single sum.
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] = fmaf(a[i + j], b[i + j], acc[j]);
    float sum = 0;
    for (int j = 0; j < 16; j++) sum += acc[j];
    for (; i < n; i++) sum = fmaf(a[i], b[i], sum);
    return sum;
}

static CK_TARGET void CK_NAME(axpy_f32)(float a, const float *restrict x, float *restrict y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

/// Sixteen f16 values converted (exactly) to f32.
static inline __attribute__((always_inline)) CK_TARGET void CK_NAME(widen16)(const uint16_t *h, float *out) {
#if CK_VARIANT_AVX2 || CK_VARIANT_AVX512
    _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)));
    _mm256_storeu_ps(out + 8, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + 8))));
#else
    for (int j = 0; j < 16; j++) out[j] = ck_fp16_table[h[j]];
#endif
}

/// `dot_f32(a, b)` with `b` stored as f16 (an f16 KV cache read in place): the same sums in
/// the same order, since widening is exact.
static CK_TARGET float CK_NAME(dot_f32_f16)(const float *a, const uint16_t *b, int64_t n) {
    float acc[16] = {0}, wide[16];
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        CK_NAME(widen16)(b + i, wide);
        for (int j = 0; j < 16; j++) acc[j] = fmaf(a[i + j], wide[j], acc[j]);
    }
    float sum = 0;
    for (int j = 0; j < 16; j++) sum += acc[j];
    for (; i < n; i++) sum = fmaf(a[i], ck_fp16_table[b[i]], sum);
    return sum;
}

/// `axpy_f32(a, x, y)` with `x` stored as f16.
static CK_TARGET void CK_NAME(axpy_f16)(float a, const uint16_t *restrict x, float *restrict y, int64_t n) {
    float wide[16];
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        CK_NAME(widen16)(x + i, wide);
        for (int j = 0; j < 16; j++) y[i + j] = fmaf(a, wide[j], y[i + j]);
    }
    for (; i < n; i++) y[i] = fmaf(a, ck_fp16_table[x[i]], y[i]);
}

static CK_TARGET float CK_NAME(dot_f16)(const uint8_t *row, const float *x, int64_t n) {
    float acc[16] = {0};
    float tmp[16];
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int j = 0; j < 16; j++) {
            uint16_t h; memcpy(&h, row + 2 * (i + j), 2);
            tmp[j] = ck_fp16_table[h];
        }
        for (int j = 0; j < 16; j++) acc[j] = fmaf(tmp[j], x[i + j], acc[j]);
    }
    float sum = 0;
    for (int j = 0; j < 16; j++) sum += acc[j];
    for (; i < n; i++) {
        uint16_t h; memcpy(&h, row + 2 * i, 2);
        sum = fmaf(ck_fp16_table[h], x[i], sum);
    }
    return sum;
}

static CK_TARGET float CK_NAME(dot_bf16)(const uint8_t *row, const float *x, int64_t n) {
    const uint16_t *w = (const uint16_t *)row;  // safetensors data is 2-byte aligned
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int j = 0; j < 16; j++) {
            uint32_t bits = (uint32_t)w[i + j] << 16;
            float f;
            memcpy(&f, &bits, 4);
            acc[j] = fmaf(f, x[i + j], acc[j]);
        }
    }
    float sum = 0;
    for (int j = 0; j < 16; j++) sum += acc[j];
    for (; i < n; i++) {
        uint32_t bits = (uint32_t)w[i] << 16;
        float f;
        memcpy(&f, &bits, 4);
        sum = fmaf(f, x[i], sum);
    }
    return sum;
}

/// Dot product of one float-format row (f32, f16, bf16) with f32 activations; 0 for other
/// formats (quantized rows go through `unpack_row` and `dot_unpacked`).
static CK_TARGET float CK_NAME(vec_dot)(int type, const void *src, const float *x, int64_t n) {
    const uint8_t *p = (const uint8_t *)src;
    switch (type) {
    case CK_F32: return CK_NAME(dot_f32)((const float *)src, x, n);
    case CK_F16: return CK_NAME(dot_f16)(p, x, n);
    case CK_BF16: return CK_NAME(dot_bf16)(p, x, n);
    default: return 0;
    }
}

// MARK: int8 products

/// Decodes one stored row into int8 values plus, per 32-element block, two scales (for its
/// low and high 16 elements; equal except for Q6_K, whose sub-blocks are 16 wide) and the
/// coefficient of the activation block's sum (formats with an additive minimum). Then
/// `row · x = Σ_b x.d · (lo_b · Σ_{i<16} q·xq + hi_b · Σ_{i≥16} q·xq) + min_b · x.s`.
/// Returns 1 if any block has a minimum term, 0 if none, -1 for an unsupported type.
static CK_TARGET int CK_NAME(unpack_row)(int type, const uint8_t *p, int64_t cols, int8_t *q, float *scales, float *mins) {
    int64_t nb = cols / 32;
    switch (type) {
    case CK_Q8_0:
        for (int64_t b = 0; b < nb; b++, p += 34) {
            memcpy(q + 32 * b, p + 2, 32);
            scales[2 * b] = scales[2 * b + 1] = ck_half(p);
            mins[b] = 0;
        }
        return 0;
    case CK_Q4_0:
    case CK_Q5_0:
        for (int64_t b = 0; b < nb; b++) {
            if (type == CK_Q4_0) { CK_NAME(unpack_q4_0)(p, q + 32 * b); } else { CK_NAME(unpack_q5)(p + 2, p + 6, 16, q + 32 * b); }
            scales[2 * b] = scales[2 * b + 1] = ck_half(p);
            mins[b] = 0;
            p += (type == CK_Q4_0) ? 18 : 22;
        }
        return 0;
    case CK_Q4_1:
    case CK_Q5_1:
        for (int64_t b = 0; b < nb; b++) {
            if (type == CK_Q4_1) { CK_NAME(unpack_q4_1)(p, q + 32 * b); } else { CK_NAME(unpack_q5)(p + 4, p + 8, 0, q + 32 * b); }
            scales[2 * b] = scales[2 * b + 1] = ck_half(p);
            mins[b] = ck_half(p + 2);
            p += (type == CK_Q4_1) ? 20 : 24;
        }
        return 1;
    case CK_Q4_K:
    case CK_Q5_K:
        for (int64_t s = 0; s < cols / 256; s++) {
            float d = ck_half(p), dmin = ck_half(p + 2);
            if (type == CK_Q4_K) CK_NAME(unpack_q4_k)(p, q + 256 * s); else CK_NAME(unpack_q5_k)(p, q + 256 * s);
            uint8_t sc[8], m[8];
            ck_kquant_scales_mins(p + 4, sc, m);
            for (int j = 0; j < 8; j++) {
                scales[2 * (8 * s + j)] = scales[2 * (8 * s + j) + 1] = d * (float)sc[j];
                mins[8 * s + j] = -dmin * (float)m[j];
            }
            p += (type == CK_Q4_K) ? 144 : 176;
        }
        return 1;
    case CK_Q6_K:
        for (int64_t s = 0; s < cols / 256; s++, p += 210) {
            float d = ck_half(p + 208);
            const int8_t *sc = (const int8_t *)(p + 192);
            CK_NAME(unpack_q6_k)(p, q + 256 * s);
            for (int j = 0; j < 16; j++) scales[16 * s + j] = d * (float)sc[j];
            for (int j = 0; j < 8; j++) mins[8 * s + j] = 0;
        }
        return 0;
    default:
        return -1;
    }
}

#if CK_VARIANT_AVX2 || CK_VARIANT_AVX512
/// Exact int32 lane sums of q·x over 4-byte groups (q, x signed).
static inline CK_TARGET __m256i CK_NAME(lane_sums)(__m256i vq, __m256i vx) {
    __m256i abs_q = _mm256_sign_epi8(vq, vq);
    __m256i signed_x = _mm256_sign_epi8(vx, vq);
#if CK_VARIANT_AVX512
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), abs_q, signed_x);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(abs_q, signed_x), _mm256_set1_epi16(1));
#endif
}
#endif

/// `y[v · y_stride] = row · x_v` for one unpacked row and `count` vectors: per block, the
/// exact integer sum of q·xq (of each 16-value half apart with `halves`), converted and
/// fused-added with (scale · x.d) into one accumulator, then min · x.s fused-added (with
/// `has_min`), in block order. Every quantized product performs exactly this, whatever the
/// kernel, batch, thread count or instruction set, so decode steps, batched decode steps and
/// prefill agree bit for bit. One integer sum per block (no per-4-value float work) is what
/// makes the row-per-lane kernels fast.
static CK_TARGET void CK_NAME(dot_unpacked)(const int8_t *q, const float *scales, const float *mins, int has_min, int halves,
                                                 int64_t nb, const ck_q8_block *x, int64_t count, float *y, int64_t y_stride) {
    for (int64_t v = 0; v < count; v++) {
        const ck_q8_block *xb = x + v * nb;
        float acc = 0;
        for (int64_t b = 0; b < nb; b++) {
            int32_t lo = 0, hi = 0;
#if CK_VARIANT_AVX2 || CK_VARIANT_AVX512
            __m256i sums = CK_NAME(lane_sums)(_mm256_loadu_si256((const __m256i *)(q + 32 * b)),
                                              _mm256_loadu_si256((const __m256i *)xb[b].qs));
            __m128i h = _mm_hadd_epi32(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1));
            h = _mm_hadd_epi32(h, h);  // lanes 0–3 summed (values 0–15), then lanes 4–7
            lo = _mm_cvtsi128_si32(h);
            hi = _mm_extract_epi32(h, 1);
#else
            for (int k = 0; k < 16; k++) lo += (int32_t)q[32 * b + k] * (int32_t)xb[b].qs[k];
            for (int k = 16; k < 32; k++) hi += (int32_t)q[32 * b + k] * (int32_t)xb[b].qs[k];
#endif
            if (halves) {
                acc = fmaf((float)lo, scales[2 * b] * xb[b].d, acc);
                acc = fmaf((float)hi, scales[2 * b + 1] * xb[b].d, acc);
            } else {
                acc = fmaf((float)(lo + hi), scales[2 * b] * xb[b].d, acc);
            }
            if (has_min) acc = fmaf(mins[b], xb[b].s, acc);
        }
        y[v * y_stride] = acc;
    }
}

#if CK_VARIANT_AVX2 || CK_VARIANT_AVX512
/// The group kernels below read a group of rows (`group_bytes`, contiguous) as interleaved
/// streams, which the hardware prefetchers follow poorly, in `steps` steps (blocks or
/// super-blocks): step i prefetches slice i (`prefetch_slice` bytes) of the next group into L1
/// and of the group `l2_groups` ahead into L2.
static inline __attribute__((always_inline)) int64_t CK_NAME(prefetch_slice)(int64_t group_bytes, int64_t steps) {
    return ((group_bytes + steps - 1) / steps + 63) / 64 * 64;
}

static inline __attribute__((always_inline)) CK_TARGET void CK_NAME(prefetch_ahead)(const uint8_t *p, int64_t group_bytes, int64_t slice,
                                                                                  int64_t i, int l2_groups) {
    for (int64_t line = 0; line < slice; line += 64) {
        _mm_prefetch((const char *)(p + group_bytes + slice * i + line), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + l2_groups * group_bytes + slice * i + line), _MM_HINT_T1);
    }
}
#endif

#if CK_VARIANT_AVX2
// MARK: four rows, block sums (AVX2)
//
// AVX2 has no vpdpbusd (and half the register width), so instead of the sixteen-row
// transpose each row's block gives eight lane sums (sign trick, as `lane_sums`), and the lane
// sums of four rows are added horizontally into their four exact block sums, then converted
// and fused-added with d · x.d as four lanes of one register — `dot_unpacked`'s arithmetic.

/// 0xFF in byte i where bit i of `bits` is set.
static inline CK_TARGET __m256i CK_NAME(bytes_from_bits)(uint32_t bits) {
    const __m256i shuffle = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000);
    __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), shuffle);
    const __m256i select = _mm256_set1_epi64x((long long)0x7fbfdfeff7fbfdfe);
    spread = _mm256_or_si256(spread, select);
    return _mm256_cmpeq_epi8(spread, _mm256_set1_epi64x(-1));
}

/// Sixteen bytes of packed nibbles as 32 values 0…15: the low nibbles (elements 0–15), then
/// the high ones (16–31).
static inline __attribute__((always_inline)) CK_TARGET __m256i CK_NAME(unpack_nibbles)(const uint8_t *packed) {
    __m128i qs = _mm_loadu_si128((const __m128i *)packed);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), _mm256_set1_epi8(0x0F));
}

/// A block's 32 values, signed: Q8_0 as stored, Q5_0 nibbles plus the fifth bit − 16, Q4_0
/// nibbles − 8.
static inline __attribute__((always_inline)) CK_TARGET __m256i CK_NAME(block_signed_values)(int type, const uint8_t *block) {
    switch (type) {
    case CK_Q8_0: return _mm256_loadu_si256((const __m256i *)(block + 2));
    case CK_Q5_0: {
        uint32_t qh;
        memcpy(&qh, block + 2, 4);
        __m256i values = _mm256_or_si256(CK_NAME(unpack_nibbles)(block + 6), _mm256_and_si256(CK_NAME(bytes_from_bits)(qh), _mm256_set1_epi8(0x10)));
        return _mm256_sub_epi8(values, _mm256_set1_epi8(16));
    }
    default: return _mm256_sub_epi8(CK_NAME(unpack_nibbles)(block + 2), _mm256_set1_epi8(8));
    }
}

/// `lane_sums` for values in 0…127 (nibbles): the same exact sums without the sign tricks
/// (maddubs pairs stay within int16: 2 · 127 · 128 < 32768).
static inline CK_TARGET __m256i CK_NAME(unsigned_lane_sums)(__m256i vq, __m256i vx) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(vq, vx), _mm256_set1_epi16(1));
}

/// The exact sums of four rows' lane sums: low 128 bits the sums over lanes 0–3 (values 0–15)
/// of rows 0–3, high 128 bits over lanes 4–7 (values 16–31).
static inline __attribute__((always_inline)) CK_TARGET __m256i CK_NAME(half_sums4)(__m256i s0, __m256i s1, __m256i s2, __m256i s3) {
    return _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
}

static inline __attribute__((always_inline)) CK_TARGET __m128i CK_NAME(block_sums4)(__m256i halves) {
    return _mm_add_epi32(_mm256_castsi256_si128(halves), _mm256_extracti128_si256(halves, 1));
}

/// Four rows (`stride` bytes apart) of a 32-value format × `vectors` (1–4):
/// `y[v · y_stride + r]` = row r · x_v.
static inline __attribute__((always_inline)) CK_TARGET void CK_NAME(rows4_body)(
    const int type, const int block_bytes, const uint8_t *p, int64_t stride, const ck_q8_block *xb, int64_t nb,
    const int vectors, float *y, int64_t y_stride) {
    const int64_t group_bytes = 4 * stride, slice = CK_NAME(prefetch_slice)(group_bytes, nb);
    __m128 acc[4];
    for (int v = 0; v < 4; v++) acc[v] = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *block = p + block_bytes * b;
        CK_NAME(prefetch_ahead)(p, group_bytes, slice, b, 5);
        __m256i q[4];
        for (int r = 0; r < 4; r++) q[r] = CK_NAME(block_signed_values)(type, block + r * stride);
        __m128 dw = _mm_set_ps(ck_half(block + 3 * stride), ck_half(block + 2 * stride), ck_half(block + stride), ck_half(block));
        for (int v = 0; v < vectors; v++) {
            const ck_q8_block *x = xb + v * nb + b;
            __m256i vx = _mm256_loadu_si256((const __m256i *)x->qs);
            __m128i sums = CK_NAME(block_sums4)(CK_NAME(half_sums4)(CK_NAME(lane_sums)(q[0], vx), CK_NAME(lane_sums)(q[1], vx),
                                                                    CK_NAME(lane_sums)(q[2], vx), CK_NAME(lane_sums)(q[3], vx)));
            acc[v] = _mm_fmadd_ps(_mm_cvtepi32_ps(sums), _mm_mul_ps(dw, _mm_set1_ps(x->d)), acc[v]);
        }
    }
    for (int v = 0; v < vectors; v++) _mm_storeu_ps(y + v * y_stride, acc[v]);
}

/// Four Q4_K rows × `vectors` (1–4), as `rows4_body` (plus each block's minimum term).
static inline __attribute__((always_inline)) CK_TARGET void CK_NAME(rows4_q4_k_body)(
    const uint8_t *p, int64_t stride, const ck_q8_block *xb, int64_t nb, const int vectors, float *y, int64_t y_stride) {
    const int64_t supers = nb / 8, group_bytes = 4 * stride, slice = CK_NAME(prefetch_slice)(group_bytes, supers);
    const __m256i low = _mm256_set1_epi8(0x0F);
    __m128 acc[4];
    for (int v = 0; v < 4; v++) acc[v] = _mm_setzero_ps();
    for (int64_t s = 0; s < supers; s++) {
        const uint8_t *block = p + 144 * s;
        CK_NAME(prefetch_ahead)(p, group_bytes, slice, s, 5);
        float d[4], neg_dmin[4];
        uint8_t sc[4][8], m[4][8];
        for (int r = 0; r < 4; r++) {
            d[r] = ck_half(block + r * stride);
            neg_dmin[r] = -ck_half(block + r * stride + 2);
            ck_kquant_scales_mins(block + r * stride + 4, sc[r], m[r]);
        }
        for (int j = 0; j < 8; j++) {
            __m256i q[4];
            for (int r = 0; r < 4; r++) {
                __m256i packed = _mm256_loadu_si256((const __m256i *)(block + r * stride + 16 + 32 * (j / 2)));
                q[r] = (j & 1) ? _mm256_and_si256(_mm256_srli_epi16(packed, 4), low) : _mm256_and_si256(packed, low);
            }
            __m128 scale = _mm_set_ps(d[3] * (float)sc[3][j], d[2] * (float)sc[2][j], d[1] * (float)sc[1][j], d[0] * (float)sc[0][j]);
            __m128 minimum = _mm_set_ps(neg_dmin[3] * (float)m[3][j], neg_dmin[2] * (float)m[2][j], neg_dmin[1] * (float)m[1][j],
                                        neg_dmin[0] * (float)m[0][j]);
            for (int v = 0; v < vectors; v++) {
                const ck_q8_block *x = xb + v * nb + 8 * s + j;
                __m256i vx = _mm256_loadu_si256((const __m256i *)x->qs);
                __m128i sums = CK_NAME(block_sums4)(CK_NAME(half_sums4)(
                    CK_NAME(unsigned_lane_sums)(q[0], vx), CK_NAME(unsigned_lane_sums)(q[1], vx),
                    CK_NAME(unsigned_lane_sums)(q[2], vx), CK_NAME(unsigned_lane_sums)(q[3], vx)));
                acc[v] = _mm_fmadd_ps(_mm_cvtepi32_ps(sums), _mm_mul_ps(scale, _mm_set1_ps(x->d)), acc[v]);
                acc[v] = _mm_fmadd_ps(minimum, _mm_set1_ps(x->s), acc[v]);
            }
        }
    }
    for (int v = 0; v < vectors; v++) _mm_storeu_ps(y + v * y_stride, acc[v]);
}

/// Four Q6_K rows × `vectors` (1–4): each block's two 16-value halves apart.
static inline __attribute__((always_inline)) CK_TARGET void CK_NAME(rows4_q6_k_body)(
    const uint8_t *p, int64_t stride, const ck_q8_block *xb, int64_t nb, const int vectors, float *y, int64_t y_stride) {
    const int64_t supers = nb / 8, group_bytes = 4 * stride, slice = CK_NAME(prefetch_slice)(group_bytes, supers);
    const __m256i low = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3);
    __m128 acc[4];
    for (int v = 0; v < 4; v++) acc[v] = _mm_setzero_ps();
    for (int64_t s = 0; s < supers; s++) {
        const uint8_t *block = p + 210 * s;
        CK_NAME(prefetch_ahead)(p, group_bytes, slice, s, 5);
        float d[4];
        for (int r = 0; r < 4; r++) d[r] = ck_half(block + r * stride + 208);
        for (int jb = 0; jb < 8; jb++) {
            int h = jb / 4, quarter = jb % 4;
            __m256i q[4];
            float lo[4], hi[4];
            for (int r = 0; r < 4; r++) {
                const uint8_t *row = block + r * stride;
                __m256i ql = _mm256_loadu_si256((const __m256i *)(row + 64 * h + 32 * (quarter & 1)));
                __m256i qh = _mm256_loadu_si256((const __m256i *)(row + 128 + 32 * h));
                __m256i nibble = (quarter >> 1) ? _mm256_and_si256(_mm256_srli_epi16(ql, 4), low) : _mm256_and_si256(ql, low);
                __m256i top = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * quarter), three), 4);
                q[r] = _mm256_sub_epi8(_mm256_or_si256(nibble, top), _mm256_set1_epi8(32));
                lo[r] = d[r] * (float)(int8_t)row[192 + 2 * jb];
                hi[r] = d[r] * (float)(int8_t)row[192 + 2 * jb + 1];
            }
            __m128 scale_lo = _mm_loadu_ps(lo), scale_hi = _mm_loadu_ps(hi);
            for (int v = 0; v < vectors; v++) {
                const ck_q8_block *x = xb + v * nb + 8 * s + jb;
                __m256i vx = _mm256_loadu_si256((const __m256i *)x->qs);
                __m256i halves = CK_NAME(half_sums4)(CK_NAME(lane_sums)(q[0], vx), CK_NAME(lane_sums)(q[1], vx),
                                                     CK_NAME(lane_sums)(q[2], vx), CK_NAME(lane_sums)(q[3], vx));
                __m128 dx = _mm_set1_ps(x->d);
                acc[v] = _mm_fmadd_ps(_mm_cvtepi32_ps(_mm256_castsi256_si128(halves)), _mm_mul_ps(scale_lo, dx), acc[v]);
                acc[v] = _mm_fmadd_ps(_mm_cvtepi32_ps(_mm256_extracti128_si256(halves, 1)), _mm_mul_ps(scale_hi, dx), acc[v]);
            }
        }
    }
    for (int v = 0; v < vectors; v++) _mm_storeu_ps(y + v * y_stride, acc[v]);
}
#endif

#if CK_VARIANT_AVX512
// MARK: sixteen rows per register (AVX-512)
//
// Q4_0/Q5_0/Q8_0/Q4_K/Q6_K rows are read in place with `dot_unpacked`'s arithmetic (one
// exact integer sum per block or half-block, converted once and fused-added with
// scale · x.d, then the minimum term): sixteen rows' bytes are transposed in
// registers so that each int32 lane holds one row, and four activation bytes broadcast per
// vpdpbusd add into all sixteen rows. The transpose is shared by every vector, and per vector
// a block costs eight vpdpbusd and a few float operations for sixteen rows — what lets batched
// decode share a pass over the weights.

/// Byte offsets of sixteen rows `stride` apart, for gathers.
static inline __attribute__((always_inline)) CK_TARGET __m512i CK_NAME(row_offsets16)(int64_t stride) {
    return _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32((int)stride));
}

/// The low (or with `high` the high) f16 halves of sixteen 32-bit lanes, as floats.
static inline __attribute__((always_inline)) CK_TARGET __m512 CK_NAME(halves16)(__m512i words, int high) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(high ? _mm512_srli_epi32(words, 16) : words));
}

/// The f16 at `base + offsets[r]` (its high half with `high`) of sixteen rows, as floats.
static inline __attribute__((always_inline)) CK_TARGET __m512 CK_NAME(gather_halves16)(const uint8_t *base, __m512i offsets, int high) {
    return CK_NAME(halves16)(_mm512_i32gather_epi32(offsets, (const void *)base, 1), high);
}

/// out[c] lane r = bytes 4c…4c+3 of the 32 at `src + r · stride` (r < 16).
static inline __attribute__((always_inline)) CK_TARGET void CK_NAME(transpose16x32)(const uint8_t *src, int64_t stride, __m512i out[8]) {
    // Register j pairs rows lo[j] and hi[j] so that after an 8×8 transpose of 4-byte groups
    // within each 256-bit half, and the halves interleaved, lane r holds row r.
    static const int lo[8] = {0, 1, 2, 3, 8, 9, 10, 11}, hi[8] = {4, 5, 6, 7, 12, 13, 14, 15};
    __m512i z[8], t[8], u[8];
    for (int j = 0; j < 8; j++)
        z[j] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(src + lo[j] * stride))),
                                  _mm256_loadu_si256((const __m256i *)(src + hi[j] * stride)), 1);
    for (int k = 0; k < 8; k += 4) {
        t[k] = _mm512_unpacklo_epi32(z[k], z[k + 1]);
        t[k + 1] = _mm512_unpackhi_epi32(z[k], z[k + 1]);
        t[k + 2] = _mm512_unpacklo_epi32(z[k + 2], z[k + 3]);
        t[k + 3] = _mm512_unpackhi_epi32(z[k + 2], z[k + 3]);
        u[k] = _mm512_unpacklo_epi64(t[k], t[k + 2]);
        u[k + 1] = _mm512_unpackhi_epi64(t[k], t[k + 2]);
        u[k + 2] = _mm512_unpacklo_epi64(t[k + 1], t[k + 3]);
        u[k + 3] = _mm512_unpackhi_epi64(t[k + 1], t[k + 3]);
    }
    for (int c = 0; c < 4; c++) {
        out[c] = _mm512_shuffle_i32x4(u[c], u[c + 4], _MM_SHUFFLE(2, 0, 2, 0));
        out[c + 4] = _mm512_shuffle_i32x4(u[c], u[c + 4], _MM_SHUFFLE(3, 1, 3, 1));
    }
}

/// The 16 packed bytes at `src + r · stride` (r < 16) as 32 nibble values: out[c] lane r =
/// values 4c…4c+3 of row r, low nibbles first (values 0–15), then high ones (16–31).
static inline __attribute__((always_inline)) CK_TARGET void CK_NAME(transpose16x16_nibbles)(const uint8_t *src, int64_t stride, __m512i out[8]) {
    // 4×4 transposes of 4-byte groups per 128-bit lane; register j holds rows j, 4 + j, 8 + j, 12 + j.
    __m512i z[4], t[4];
    for (int j = 0; j < 4; j++) {
        __m512i rows = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(src + j * stride)));
        rows = _mm512_inserti32x4(rows, _mm_loadu_si128((const __m128i *)(src + (4 + j) * stride)), 1);
        rows = _mm512_inserti32x4(rows, _mm_loadu_si128((const __m128i *)(src + (8 + j) * stride)), 2);
        z[j] = _mm512_inserti32x4(rows, _mm_loadu_si128((const __m128i *)(src + (12 + j) * stride)), 3);
    }
    t[0] = _mm512_unpacklo_epi32(z[0], z[1]);
    t[1] = _mm512_unpackhi_epi32(z[0], z[1]);
    t[2] = _mm512_unpacklo_epi32(z[2], z[3]);
    t[3] = _mm512_unpackhi_epi32(z[2], z[3]);
    const __m512i low = _mm512_set1_epi8(0x0F);
    for (int c = 0; c < 4; c++) {
        __m512i bytes = (c & 1) ? _mm512_unpackhi_epi64(t[c >> 1], t[(c >> 1) + 2]) : _mm512_unpacklo_epi64(t[c >> 1], t[(c >> 1) + 2]);
        out[c] = _mm512_and_si512(bytes, low);
        out[c + 4] = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), low);
    }
}

/// `start` + Σ_{c < count} chunk[c] · (bytes 4c…4c+3 of `qs`, broadcast) per lane: exact
/// integer sums (two chains, for latency).
static inline __attribute__((always_inline)) CK_TARGET __m512i CK_NAME(chunk_sums)(const __m512i *chunk, const int8_t *qs, const int count, __m512i start) {
    __m512i even = start, odd = _mm512_setzero_si512();
    for (int c = 0; c < count; c += 2) {
        int32_t four0, four1;
        memcpy(&four0, qs + 4 * c, 4);
        memcpy(&four1, qs + 4 * c + 4, 4);
        even = _mm512_dpbusd_epi32(even, chunk[c], _mm512_set1_epi32(four0));
        odd = _mm512_dpbusd_epi32(odd, chunk[c + 1], _mm512_set1_epi32(four1));
    }
    return _mm512_add_epi32(even, odd);
}

/// Sixteen rows (`stride` bytes apart, from `p`) of a 32-value format × `vectors` (1–4):
/// `y[v · y_stride + r]` = row r · x_v. Values are read unsigned (value + `offset`) and each
/// sum starts at −offset · Σ x (`xsum`: Σ qs of each half-block, two per block).
static inline __attribute__((always_inline)) CK_TARGET void CK_NAME(rows16_body)(
    const int type, const int block_bytes, const int offset, const uint8_t *p, int64_t stride, const ck_q8_block *xb,
    const int32_t *xsum, int64_t nb, const int vectors, float *y, int64_t y_stride) {
    const __m512i offsets = CK_NAME(row_offsets16)(stride);
    const int64_t group_bytes = 16 * stride, slice = CK_NAME(prefetch_slice)(group_bytes, nb);
    __m512 acc[4];
    for (int v = 0; v < 4; v++) acc[v] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *block = p + block_bytes * b;
        CK_NAME(prefetch_ahead)(p, group_bytes, slice, b, 2);
        __m512i chunk[8];
        if (type == CK_Q8_0) {
            CK_NAME(transpose16x32)(block + 2, stride, chunk);
            for (int c = 0; c < 8; c++) chunk[c] = _mm512_xor_si512(chunk[c], _mm512_set1_epi8((char)0x80));
        } else {
            CK_NAME(transpose16x16_nibbles)(block + (type == CK_Q5_0 ? 6 : 2), stride, chunk);
        }
        __m512 dw;
        if (type == CK_Q5_0) {
            // d and qh are the block's first six bytes: one 8-byte gather per row, then value
            // 4c + k gets its fifth bit (+16) where bit 4c + k of qh is set: qh's byte c/2
            // copied into all four bytes of its lane, tested against bit k (or 4 + k).
            __m512i head_lo = _mm512_i32gather_epi64(_mm512_castsi512_si256(offsets), (const void *)block, 1);
            __m512i head_hi = _mm512_i32gather_epi64(_mm512_extracti64x4_epi64(offsets, 1), (const void *)block, 1);
            dw = _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm512_cvtepi64_epi16(head_lo)),
                                                         _mm512_cvtepi64_epi16(head_hi), 1));
            __m512i qh = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(_mm512_srli_epi64(head_lo, 16))),
                                            _mm512_cvtepi64_epi32(_mm512_srli_epi64(head_hi, 16)), 1);
            const __m512i dword_base = _mm512_set4_epi32(0x0C0C0C0C, 0x08080808, 0x04040404, 0);  // vpshufb is per 128 bits
            for (int c = 0; c < 8; c++) {
                __m512i bytes = _mm512_shuffle_epi8(qh, _mm512_add_epi8(dword_base, _mm512_set1_epi8((char)(c / 2))));
                __mmask64 set = _mm512_test_epi8_mask(bytes, _mm512_set1_epi32((c & 1) ? (int)0x80402010u : 0x08040201));
                chunk[c] = _mm512_mask_add_epi8(chunk[c], set, chunk[c], _mm512_set1_epi8(0x10));
            }
        } else {
            dw = CK_NAME(gather_halves16)(block, offsets, 0);
        }
        for (int v = 0; v < vectors; v++) {
            const ck_q8_block *x = xb + v * nb + b;
            const int32_t *sums = xsum + 2 * (v * nb + b);
            __m512i total = CK_NAME(chunk_sums)(chunk, x->qs, 8, _mm512_set1_epi32(-offset * (sums[0] + sums[1])));
            acc[v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), _mm512_mul_ps(dw, _mm512_set1_ps(x->d)), acc[v]);
        }
    }
    for (int v = 0; v < vectors; v++) _mm512_storeu_ps(y + v * y_stride, acc[v]);
}

/// `x` with its sign flipped (exactly −x, zeros included).
static inline __attribute__((always_inline)) CK_TARGET __m512 CK_NAME(negate16)(__m512 x) {
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u)));
}

/// Q4_K: per 256-value super-block d, dmin, twelve bytes of 6-bit scales and minimums, then
/// nibbles (sub-blocks 2i and 2i + 1 share 32 bytes: low and high nibbles).
static inline __attribute__((always_inline)) CK_TARGET void CK_NAME(rows16_q4_k_body)(
    const uint8_t *p, int64_t stride, const ck_q8_block *xb, int64_t nb, const int vectors, float *y, int64_t y_stride) {
    const __m512i offsets = CK_NAME(row_offsets16)(stride), low = _mm512_set1_epi8(0x0F);
    const __m512i six = _mm512_set1_epi32(63), four = _mm512_set1_epi32(0x0F), two = _mm512_set1_epi32(3);
    const int64_t supers = nb / 8, group_bytes = 16 * stride, slice = CK_NAME(prefetch_slice)(group_bytes, supers);
    __m512 acc[4];
    for (int v = 0; v < 4; v++) acc[v] = _mm512_setzero_ps();
    for (int64_t s = 0; s < supers; s++) {
        const uint8_t *block = p + 144 * s;
        CK_NAME(prefetch_ahead)(p, group_bytes, slice, s, 2);
        __m512i scales = _mm512_i32gather_epi32(offsets, (const void *)block, 1);  // d, dmin
        __m512 d = CK_NAME(halves16)(scales, 0), neg_dmin = CK_NAME(negate16)(CK_NAME(halves16)(scales, 1));
        __m512i w0 = _mm512_i32gather_epi32(offsets, (const void *)(block + 4), 1);
        __m512i w1 = _mm512_i32gather_epi32(offsets, (const void *)(block + 8), 1);
        __m512i w2 = _mm512_i32gather_epi32(offsets, (const void *)(block + 12), 1);
        for (int i = 0; i < 4; i++) {
            __m512i packed[8], chunk[8];
            CK_NAME(transpose16x32)(block + 16 + 32 * i, stride, packed);
            for (int half = 0; half < 2; half++) {
                int j = 2 * i + half;
                // ggml's get_scale_min_k4, sixteen rows at once (byte k of w0/w1/w2 is scale byte k, 4 + k, 8 + k).
                __m512i sc, m;
                if (j < 4) {
                    sc = _mm512_and_si512(_mm512_srli_epi32(w0, 8 * j), six);
                    m = _mm512_and_si512(_mm512_srli_epi32(w1, 8 * j), six);
                } else {
                    int k = j - 4;
                    sc = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(w2, 8 * k), four),
                                         _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w0, 8 * k + 6), two), 4));
                    m = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(w2, 8 * k + 4), four),
                                        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w1, 8 * k + 6), two), 4));
                }
                __m512 scale = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc)), minimum = _mm512_mul_ps(neg_dmin, _mm512_cvtepi32_ps(m));
                for (int c = 0; c < 8; c++)
                    chunk[c] = half ? _mm512_and_si512(_mm512_srli_epi16(packed[c], 4), low) : _mm512_and_si512(packed[c], low);
                for (int v = 0; v < vectors; v++) {
                    const ck_q8_block *x = xb + v * nb + 8 * s + j;
                    __m512i total = CK_NAME(chunk_sums)(chunk, x->qs, 8, _mm512_setzero_si512());
                    acc[v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), _mm512_mul_ps(scale, _mm512_set1_ps(x->d)), acc[v]);
                    acc[v] = _mm512_fmadd_ps(minimum, _mm512_set1_ps(x->s), acc[v]);
                }
            }
        }
    }
    for (int v = 0; v < vectors; v++) _mm512_storeu_ps(y + v * y_stride, acc[v]);
}

/// Q6_K: per 256-value super-block 128 bytes of low nibbles, 64 of high bit pairs, sixteen
/// int8 scales (one per 16 values) and d. Values are read unsigned (value + 32); each 16-value
/// half's sum starts at −32 · Σ x over it.
static inline __attribute__((always_inline)) CK_TARGET void CK_NAME(rows16_q6_k_body)(
    const uint8_t *p, int64_t stride, const ck_q8_block *xb, const int32_t *xsum, int64_t nb, const int vectors, float *y,
    int64_t y_stride) {
    const __m512i offsets = CK_NAME(row_offsets16)(stride), low = _mm512_set1_epi8(0x0F), three = _mm512_set1_epi8(3);
    const int64_t supers = nb / 8, group_bytes = 16 * stride, slice = CK_NAME(prefetch_slice)(group_bytes, supers);
    __m512 acc[4];
    for (int v = 0; v < 4; v++) acc[v] = _mm512_setzero_ps();
    for (int64_t s = 0; s < supers; s++) {
        const uint8_t *block = p + 210 * s;
        CK_NAME(prefetch_ahead)(p, group_bytes, slice, s, 2);
        __m512 d = CK_NAME(gather_halves16)(block + 206, offsets, 1);  // bytes 208–209, read from inside the block
        __m512i scales[4];
        for (int k = 0; k < 4; k++) scales[k] = _mm512_i32gather_epi32(offsets, (const void *)(block + 192 + 4 * k), 1);
        for (int h = 0; h < 2; h++) {
            __m512i ql[2][8], qh[8], chunk[8];
            CK_NAME(transpose16x32)(block + 64 * h, stride, ql[0]);
            CK_NAME(transpose16x32)(block + 64 * h + 32, stride, ql[1]);
            CK_NAME(transpose16x32)(block + 128 + 32 * h, stride, qh);
            for (int quarter = 0; quarter < 4; quarter++) {
                int jb = 4 * h + quarter;
                for (int c = 0; c < 8; c++) {
                    __m512i bytes = ql[quarter & 1][c];
                    __m512i nibble = (quarter >> 1) ? _mm512_and_si512(_mm512_srli_epi16(bytes, 4), low) : _mm512_and_si512(bytes, low);
                    __m512i top = _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh[c], 2 * quarter), three), 4);
                    chunk[c] = _mm512_or_si512(nibble, top);
                }
                // Signed scale bytes 2jb and 2jb + 1 of each row.
                int lo = 2 * jb, hi = lo + 1;
                __m512i sc_lo = _mm512_srai_epi32(_mm512_slli_epi32(scales[lo >> 2], 24 - 8 * (lo & 3)), 24);
                __m512i sc_hi = _mm512_srai_epi32(_mm512_slli_epi32(scales[hi >> 2], 24 - 8 * (hi & 3)), 24);
                __m512 scale_lo = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc_lo)), scale_hi = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc_hi));
                for (int v = 0; v < vectors; v++) {
                    const ck_q8_block *x = xb + v * nb + 8 * s + jb;
                    const int32_t *sums = xsum + 2 * (v * nb + 8 * s + jb);
                    __m512i first = CK_NAME(chunk_sums)(chunk, x->qs, 4, _mm512_set1_epi32(-32 * sums[0]));
                    __m512i second = CK_NAME(chunk_sums)(chunk + 4, x->qs + 16, 4, _mm512_set1_epi32(-32 * sums[1]));
                    __m512 dx = _mm512_set1_ps(x->d);
                    acc[v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(first), _mm512_mul_ps(scale_lo, dx), acc[v]);
                    acc[v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(second), _mm512_mul_ps(scale_hi, dx), acc[v]);
                }
            }
        }
    }
    for (int v = 0; v < vectors; v++) _mm512_storeu_ps(y + v * y_stride, acc[v]);
}
#endif

#if CK_VARIANT_AVX2 || CK_VARIANT_AVX512
/// A group of rows (`CK_GROUP_KERNEL_ROWS`: sixteen on AVX-512, four on AVX2) × any number of vectors,
/// four at a time, with `dot_unpacked`'s arithmetic. `xsum` holds Σ qs of each activation
/// half-block.
#define CK_GROUP_KERNEL(name, body)                                                                                          \
    static CK_TARGET void CK_NAME(group_##name)(const uint8_t *p, int64_t stride, const ck_q8_block *xb,                      \
                                               const int32_t *xsum, int64_t nb, int64_t count, float *y, int64_t y_stride) { \
        for (int64_t v = 0; v < count; v += 4) {                                                                            \
            const ck_q8_block *x = xb + v * nb;                                                                             \
            const int32_t *xs = xsum + 2 * v * nb;                                                                          \
            float *out = y + v * y_stride;                                                                                  \
            (void)xs;                                                                                                       \
            switch (count - v) {                                                                                            \
            case 1: body(1); break;                                                                                         \
            case 2: body(2); break;                                                                                         \
            case 3: body(3); break;                                                                                         \
            default: body(4); break;                                                                                        \
            }                                                                                                               \
        }                                                                                                                   \
    }
#if CK_VARIANT_AVX512
#define CK_GROUP_KERNEL_ROWS 16
#define CK_Q8_0_BODY(n) CK_NAME(rows16_body)(CK_Q8_0, 34, 128, p, stride, x, xs, nb, n, out, y_stride)
#define CK_Q5_0_BODY(n) CK_NAME(rows16_body)(CK_Q5_0, 22, 16, p, stride, x, xs, nb, n, out, y_stride)
#define CK_Q4_0_BODY(n) CK_NAME(rows16_body)(CK_Q4_0, 18, 8, p, stride, x, xs, nb, n, out, y_stride)
#define CK_Q4_K_BODY(n) CK_NAME(rows16_q4_k_body)(p, stride, x, nb, n, out, y_stride)
#define CK_Q6_K_BODY(n) CK_NAME(rows16_q6_k_body)(p, stride, x, xs, nb, n, out, y_stride)
#else
#define CK_GROUP_KERNEL_ROWS 4
#define CK_Q8_0_BODY(n) CK_NAME(rows4_body)(CK_Q8_0, 34, p, stride, x, nb, n, out, y_stride)
#define CK_Q5_0_BODY(n) CK_NAME(rows4_body)(CK_Q5_0, 22, p, stride, x, nb, n, out, y_stride)
#define CK_Q4_0_BODY(n) CK_NAME(rows4_body)(CK_Q4_0, 18, p, stride, x, nb, n, out, y_stride)
#define CK_Q4_K_BODY(n) CK_NAME(rows4_q4_k_body)(p, stride, x, nb, n, out, y_stride)
#define CK_Q6_K_BODY(n) CK_NAME(rows4_q6_k_body)(p, stride, x, nb, n, out, y_stride)
#endif
CK_GROUP_KERNEL(q8_0, CK_Q8_0_BODY)
CK_GROUP_KERNEL(q5_0, CK_Q5_0_BODY)
CK_GROUP_KERNEL(q4_0, CK_Q4_0_BODY)
CK_GROUP_KERNEL(q4_k, CK_Q4_K_BODY)
CK_GROUP_KERNEL(q6_k, CK_Q6_K_BODY)
#undef CK_Q4_K_BODY
#undef CK_Q6_K_BODY
#undef CK_Q8_0_BODY
#undef CK_Q5_0_BODY
#undef CK_Q4_0_BODY
#undef CK_GROUP_KERNEL
#endif

/// The group kernel of `type` for a group of `*rows` rows and any number of vectors
/// (read in place), or NULL.
static CK_TARGET void (*CK_NAME(group_kernel)(int type, int *rows))(const uint8_t *, int64_t, const ck_q8_block *, const int32_t *, int64_t, int64_t, float *, int64_t) {
#if CK_VARIANT_AVX2 || CK_VARIANT_AVX512
    *rows = CK_GROUP_KERNEL_ROWS;
    switch (type) {
    case CK_Q8_0: return CK_NAME(group_q8_0);
    case CK_Q5_0: return CK_NAME(group_q5_0);
    case CK_Q4_0: return CK_NAME(group_q4_0);
    case CK_Q4_K: return CK_NAME(group_q4_k);
    case CK_Q6_K: return CK_NAME(group_q6_k);
    default: return NULL;
    }
#else
    (void)type;
    *rows = 0;
    return NULL;
#endif
}
#undef CK_GROUP_KERNEL_ROWS

// MARK: attention products
//
// `attention_scores` and `attention_mix` give, for every (query, key) pair, exactly what
// `dot_f32` and a run of `axpy_f32` calls give (sixteen fused-multiply-add lanes summed in lane
// order; fused adds in key order) — over contiguous runs or a cache's slots read in place, f16
// rows as `dot_f32_f16` and `axpy_f16` give — so prefill and decode agree bit for bit.
// The AVX-512 variant computes 4×4 blocks of pairs with the lane sums transposed into
// registers; the others make the per-pair calls.

#if CK_VARIANT_AVX512
/// Lane sums of sixteen accumulators in lane order: result lane p = ((0 + a[p][0]) + a[p][1]) +
/// … + a[p][15], via an in-register 16×16 transpose.
static inline __attribute__((always_inline)) CK_TARGET __m512 CK_NAME(lane_sums16)(__m512 a[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(a[i], a[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(a[i], a[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        u[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        u[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        u[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    // u[4g + c] holds, in each 128-bit quarter q, lanes 4q..4q+3's column c of rows 4g..4g+3.
    for (int i = 0; i < 16; i += 8)
        for (int c = 0; c < 4; c++) {
            t[i + c] = _mm512_shuffle_f32x4(u[i + c], u[i + 4 + c], 0x88);
            t[i + 4 + c] = _mm512_shuffle_f32x4(u[i + c], u[i + 4 + c], 0xDD);
        }
    for (int c = 0; c < 4; c++) {
        u[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
        u[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD);
        u[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
        u[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xDD);
    }
    // Now u[k] lane p is a[p][k]: add the columns in order.
    __m512 sum = _mm512_setzero_ps();
    for (int k = 0; k < 16; k++) sum = _mm512_add_ps(sum, u[k]);
    return sum;
}
#endif

/// Key or value row j: `stride` elements (f16 with `half`, else f32) times `slots[j]` (or j
/// when `slots` is NULL) from `base` — a contiguous run, or a cache's slots read in place
/// (widening f16 is exact).
typedef struct {
    const void *base;
    int64_t stride;
    const int32_t *slots;
    int half;
} CK_NAME(attention_rows);

static inline __attribute__((always_inline)) int64_t CK_NAME(row_offset)(const CK_NAME(attention_rows) *rows, int64_t j) {
    return (rows->slots ? rows->slots[j] : j) * rows->stride;
}

#if CK_VARIANT_AVX512
static inline __attribute__((always_inline)) CK_TARGET __m512 CK_NAME(row16)(const CK_NAME(attention_rows) *rows, int64_t j, int64_t i) {
    int64_t at = CK_NAME(row_offset)(rows, j) + i;
    if (rows->half) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)rows->base + at)));
    return _mm512_loadu_ps((const float *)rows->base + at);
}
#endif

static inline __attribute__((always_inline)) CK_TARGET float CK_NAME(row_dot)(const float *q, const CK_NAME(attention_rows) *rows, int64_t j, int64_t n) {
    int64_t at = CK_NAME(row_offset)(rows, j);
    return rows->half ? CK_NAME(dot_f32_f16)(q, (const uint16_t *)rows->base + at, n) : CK_NAME(dot_f32)(q, (const float *)rows->base + at, n);
}

static inline __attribute__((always_inline)) CK_TARGET void CK_NAME(row_axpy)(float w, const CK_NAME(attention_rows) *rows, int64_t j, float *out, int64_t n) {
    int64_t at = CK_NAME(row_offset)(rows, j);
    if (rows->half) CK_NAME(axpy_f16)(w, (const uint16_t *)rows->base + at, out, n);
    else CK_NAME(axpy_f32)(w, (const float *)rows->base + at, out, n);
}

static inline __attribute__((always_inline)) CK_TARGET void CK_NAME(attention_scores_body)(
    const float *q, int64_t queries, int64_t q_stride, const CK_NAME(attention_rows) *k, int64_t keys, int64_t n, float *scores,
    int64_t s_stride) {
    int64_t t0 = 0;
#if CK_VARIANT_AVX512
    if (n % 16 == 0) {
        for (; t0 + 4 <= queries; t0 += 4) {
            int64_t j0 = 0;
            for (; j0 + 4 <= keys; j0 += 4) {
                __m512 acc[16];
                for (int p = 0; p < 16; p++) acc[p] = _mm512_setzero_ps();
                for (int64_t i = 0; i < n; i += 16) {
                    __m512 qv[4], kv[4];
                    for (int t = 0; t < 4; t++) qv[t] = _mm512_loadu_ps(q + (t0 + t) * q_stride + i);
                    for (int j = 0; j < 4; j++) kv[j] = CK_NAME(row16)(k, j0 + j, i);
                    for (int t = 0; t < 4; t++)
                        for (int j = 0; j < 4; j++) acc[4 * t + j] = _mm512_fmadd_ps(qv[t], kv[j], acc[4 * t + j]);
                }
                float sums[16];
                _mm512_storeu_ps(sums, CK_NAME(lane_sums16)(acc));
                for (int t = 0; t < 4; t++)
                    for (int j = 0; j < 4; j++) scores[(t0 + t) * s_stride + j0 + j] = sums[4 * t + j];
            }
            for (; j0 < keys; j0++)
                for (int t = 0; t < 4; t++) scores[(t0 + t) * s_stride + j0] = CK_NAME(row_dot)(q + (t0 + t) * q_stride, k, j0, n);
        }
    }
#endif
    for (; t0 < queries; t0++)
        for (int64_t j = 0; j < keys; j++) scores[t0 * s_stride + j] = CK_NAME(row_dot)(q + t0 * q_stride, k, j, n);
}

static inline __attribute__((always_inline)) CK_TARGET void CK_NAME(attention_mix_body)(
    const float *s, int64_t queries, int64_t s_stride, const CK_NAME(attention_rows) *v, int64_t keys, int64_t n, float *out,
    int64_t o_stride) {
    int64_t t0 = 0;
#if CK_VARIANT_AVX512
    // fma(0, x, y) = y for finite x and y ≠ −0 (never produced here), so pairs a per-key
    // loop would skip (weight 0) can be fused in without changing a bit.
    if (n % 64 == 0) {
        for (; t0 + 4 <= queries; t0 += 4) {
            for (int64_t i = 0; i < n; i += 64) {
                __m512 acc[4][4];
                for (int t = 0; t < 4; t++)
                    for (int c = 0; c < 4; c++) acc[t][c] = _mm512_setzero_ps();
                for (int64_t j = 0; j < keys; j++) {
                    __m512 vv[4];
                    for (int c = 0; c < 4; c++) vv[c] = CK_NAME(row16)(v, j, i + 16 * c);
                    for (int t = 0; t < 4; t++) {
                        __m512 w = _mm512_set1_ps(s[(t0 + t) * s_stride + j]);
                        for (int c = 0; c < 4; c++) acc[t][c] = _mm512_fmadd_ps(w, vv[c], acc[t][c]);
                    }
                }
                for (int t = 0; t < 4; t++)
                    for (int c = 0; c < 4; c++) _mm512_storeu_ps(out + (t0 + t) * o_stride + i + 16 * c, acc[t][c]);
            }
        }
    }
#endif
    for (; t0 < queries; t0++) {
        float *o = out + t0 * o_stride;
        for (int64_t i = 0; i < n; i++) o[i] = 0;
        for (int64_t j = 0; j < keys; j++) {
            float w = s[t0 * s_stride + j];
            if (w != 0) CK_NAME(row_axpy)(w, v, j, o, n);
        }
    }
}

static CK_TARGET void CK_NAME(attention_scores)(const float *q, int64_t queries, int64_t q_stride, const void *base, int half,
                                                const int32_t *slots, int64_t stride, int64_t keys, int64_t n, float *scores,
                                                int64_t s_stride) {
    CK_NAME(attention_rows) rows = {base, stride, slots, half};
    CK_NAME(attention_scores_body)(q, queries, q_stride, &rows, keys, n, scores, s_stride);
}

static CK_TARGET void CK_NAME(attention_mix)(const float *s, int64_t queries, int64_t s_stride, const void *base, int half,
                                             const int32_t *slots, int64_t stride, int64_t keys, int64_t n, float *out,
                                             int64_t o_stride) {
    CK_NAME(attention_rows) rows = {base, stride, slots, half};
    CK_NAME(attention_mix_body)(s, queries, s_stride, &rows, keys, n, out, o_stride);
}

/// gate[i] ← GELU(gate[i]) · up[i] as llama.cpp's CPU backend computes it: 0 at or below −10,
/// the input itself at or above 10, otherwise the f16-rounded GELU of the input rounded to f16
/// (a table lookup). The same lookups and one multiply on every instruction set.
static CK_TARGET void CK_NAME(geglu_f16_table)(float *gate, const float *up, int64_t n) {
    int64_t i = 0;
#if CK_VARIANT_AVX512
    const __m512 low = _mm512_set1_ps(-10.0f), high = _mm512_set1_ps(10.0f);
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(gate + i);
        __m512i index = _mm512_cvtepu16_epi32(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m512 g = _mm512_i32gather_ps(index, ck_gelu_f16_table, 4);
        g = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, high, _CMP_GE_OQ), g, x);
        g = _mm512_maskz_mov_ps((__mmask16)~_mm512_cmp_ps_mask(x, low, _CMP_LE_OQ), g);
        _mm512_storeu_ps(gate + i, _mm512_mul_ps(g, _mm512_loadu_ps(up + i)));
    }
#endif
    for (; i < n; i++) {
        float x = gate[i];
        float g = x <= -10.0f ? 0.0f : (x >= 10.0f ? x : ck_gelu_f16_table[ck_f32_to_fp16(x)]);
        gate[i] = g * up[i];
    }
}

/// RMSNorm of `rows` rows of `width` values in place: x / sqrt(mean(x²) + eps) · (offset + w).
/// Squares are summed in double, in eight lanes added in order at the end (the same sum on
/// every ISA); the scale is rounded to float once.
static CK_TARGET void CK_NAME(rms_norm)(float *x, const float *w, int64_t width, int64_t rows, float eps, float offset) {
    for (int64_t r = 0; r < rows; r++, x += width) {
        double lanes[8] = {0};
        int64_t i = 0;
        for (; i + 8 <= width; i += 8)
            for (int j = 0; j < 8; j++) lanes[j] = fma((double)x[i + j], (double)x[i + j], lanes[j]);
        double sum = 0;
        for (int j = 0; j < 8; j++) sum += lanes[j];
        for (; i < width; i++) sum = fma((double)x[i], (double)x[i], sum);
        float scale = (float)(1.0 / sqrt(sum / (double)width + (double)eps));
        for (i = 0; i < width; i++) x[i] = x[i] * scale * (offset + w[i]);
    }
}

/// Index of the first largest value (comparisons with NaN are false, so NaNs are passed over
/// unless x[0] is one): exactly the sequential `if x[i] > x[best] { best = i }` scan, with the
/// maximum found in sixteen lanes first.
static CK_TARGET int64_t CK_NAME(argmax_f32)(const float *x, int64_t n) {
    if (n <= 0) return 0;
    float lanes[16];
    for (int j = 0; j < 16; j++) lanes[j] = x[0];
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) lanes[j] = x[i + j] > lanes[j] ? x[i + j] : lanes[j];
    float best = x[0];
    for (int j = 0; j < 16; j++) best = lanes[j] > best ? lanes[j] : best;
    for (; i < n; i++) best = x[i] > best ? x[i] : best;
    if (!(best == best)) return 0;  // x[0] is NaN
    for (i = 0; i < n; i++)
        if (x[i] == best) return i;
    return 0;
}

static CK_TARGET void CK_NAME(round_to_half)(float *x, int64_t n) {
    int64_t i = 0;
#if CK_VARIANT_AVX2 || CK_VARIANT_AVX512
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(h));
    }
#endif
    for (; i < n; i++) x[i] = ck_fp16_table[ck_f32_to_fp16(x[i])];
}

static CK_TARGET void CK_NAME(f32_to_f16_row)(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
#if CK_VARIANT_AVX2 || CK_VARIANT_AVX512
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) y[i] = ck_f32_to_fp16(x[i]);
}

static CK_TARGET void CK_NAME(f16_to_f32_row)(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
#if CK_VARIANT_AVX2 || CK_VARIANT_AVX512
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
#endif
    for (; i < n; i++) y[i] = ck_fp16_table[x[i]];
}

#undef CK_NAME
#undef CK_CAT
#undef CK_CAT2
