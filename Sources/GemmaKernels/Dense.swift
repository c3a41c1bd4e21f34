import CKernels
import COpenBLAS
import Foundation

/// Config names of the activation the feed-forward kernels compute: GELU with the tanh
/// approximation (transformers' `gelu_pytorch_tanh`; `gelu_new` is the same formula).
public let tanhGELUNames: Set<String> = ["gelu_pytorch_tanh", "gelu_new"]

/// Plain f32 building blocks shared by the text and vision models.
///
/// Every function works in place on caller-owned memory and allocates nothing. Vectors that
/// hold several rows are laid out row after row (row-major); the row length is given by the
/// weight vector's count.
public enum Dense {
    /// `c[m×n] = alpha · op(a) · op(b) + beta · c`, all matrices row-major.
    ///
    /// `op(a)` is `m×k` (`a` is stored `k×m` when `transposeA`), `op(b)` is `k×n` (`b` stored
    /// `n×k` when `transposeB`, the usual layout of a `[out, in]` weight). Leading dimensions
    /// default to the dense row lengths of the stored matrices.
    public static func sgemm(
        transposeA: Bool = false, transposeB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil,
        b: UnsafePointer<Float>, ldb: Int? = nil,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0, "negative matrix dimension")
        if m == 0 || n == 0 { return }
        let lda = lda ?? (transposeA ? m : k)
        let ldb = ldb ?? (transposeB ? k : n)
        let ldc = ldc ?? n
        cblas_sgemm(
            CblasRowMajor,
            transposeA ? CblasTrans : CblasNoTrans,
            transposeB ? CblasTrans : CblasNoTrans,
            blasint(m), blasint(n), blasint(k),
            alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// GELU with the tanh approximation (`gelu_pytorch_tanh`), in place: the vectorized
    /// kernel the vision tower uses (`ckv_bias_gelu_rows`, relative error ~2e-7 against
    /// `0.5·v·(1 + tanh(…))` in double), ~10× faster than libm's `tanhf` per element.
    public static func geluTanh(_ x: UnsafeMutableBufferPointer<Float>) {
        guard let base = x.baseAddress, !x.isEmpty else { return }
        ckv_bias_gelu_rows(base, nil, 1, Int64(x.count))
    }

    /// `gate ← GELU(gate) · up` (the gated feed-forward's activation), in place. With
    /// `halfPrecision`, llama.cpp's CPU numerics: GELU read from a table of f16 inputs with
    /// f16-rounded outputs (0 at or below −10, identity at or above 10); otherwise `geluTanh`.
    public static func gatedGelu(_ gate: UnsafeMutableBufferPointer<Float>, up: UnsafePointer<Float>, halfPrecision: Bool) {
        guard let base = gate.baseAddress, !gate.isEmpty else { return }
        if halfPrecision {
            ck_geglu_f16_table(base, up, Int64(gate.count))
        } else {
            geluTanh(gate)
            for i in gate.indices { gate[i] *= up[i] }
        }
    }

    /// RMSNorm of each row of `x` (row length `weight.count`), in place:
    /// `x · rsqrt(mean(x²) + eps) · w`, where `w` is `1 + weight` when `addOne` (checkpoints
    /// that store the offset form, as Hugging Face Gemma does) and `weight` otherwise.
    /// Squares are summed in double so long rows do not lose precision (`ck_rms_norm`).
    public static func rmsNorm(
        _ x: UnsafeMutableBufferPointer<Float>, weight: UnsafeBufferPointer<Float>,
        eps: Float, addOne: Bool
    ) {
        let width = weight.count
        precondition(width > 0 && x.count % width == 0, "x is not a whole number of rows")
        guard let base = x.baseAddress else { return }
        ck_rms_norm(base, weight.baseAddress!, Int64(width), Int64(x.count / width), eps, addOne ? 1 : 0)
    }

    /// LayerNorm of each row of `x` (row length `weight.count`), in place:
    /// `(x − mean) / sqrt(var + eps) · weight + bias` (biased variance, as PyTorch).
    public static func layerNorm(
        _ x: UnsafeMutableBufferPointer<Float>, weight: UnsafeBufferPointer<Float>,
        bias: UnsafeBufferPointer<Float>, eps: Float
    ) {
        let width = weight.count
        precondition(width > 0 && bias.count == width, "weight and bias differ in length")
        precondition(x.count % width == 0, "x is not a whole number of rows")
        var rowStart = 0
        while rowStart < x.count {
            var sum: Double = 0
            for i in 0..<width { sum += Double(x[rowStart + i]) }
            let mean = sum / Double(width)
            var sumOfSquares: Double = 0
            for i in 0..<width {
                let d = Double(x[rowStart + i]) - mean
                sumOfSquares += d * d
            }
            let inverseStd = 1 / (sumOfSquares / Double(width) + Double(eps)).squareRoot()
            for i in 0..<width {
                let normalized = Float((Double(x[rowStart + i]) - mean) * inverseStd)
                x[rowStart + i] = normalized * weight[i] + bias[i]
            }
            rowStart += width
        }
    }

    /// Numerically stable softmax of the whole vector, in place. Entries equal to `-infinity`
    /// (masked positions) become exactly 0; a vector that is entirely `-infinity` becomes all 0.
    public static func softmax(_ x: UnsafeMutableBufferPointer<Float>) {
        guard let maximum = x.max(), maximum > -Float.infinity else {
            for i in x.indices { x[i] = 0 }
            return
        }
        var sum: Float = 0
        for i in x.indices {
            let e = expf(x[i] - maximum)
            x[i] = e
            sum += e
        }
        let inverse = 1 / sum
        for i in x.indices { x[i] *= inverse }
    }

    /// Softmax of each row of length `rowLength`, in place.
    public static func softmax(_ x: UnsafeMutableBufferPointer<Float>, rowLength: Int) {
        precondition(rowLength > 0 && x.count % rowLength == 0, "x is not a whole number of rows")
        var rowStart = 0
        while rowStart < x.count {
            softmax(UnsafeMutableBufferPointer(rebasing: x[rowStart..<(rowStart + rowLength)]))
            rowStart += rowLength
        }
    }
}
