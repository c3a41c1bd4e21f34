import CKernels
import COpenBLAS
import GemmaWeights

/// The storage formats the kernels compute on directly.
public let supportedWeightFormats: Set<GGMLType> = [
    .f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K,
]

/// Which implementation of the hot loops the process uses.
public enum KernelISA: Int32, Sendable, CustomStringConvertible {
    case scalar = 0, avx2 = 1, avx512 = 2

    /// The implementation in use (chosen by cpuid; `GEMMA_KERNEL_ISA=scalar|avx2` forces a
    /// slower one).
    public static var active: KernelISA { KernelISA(rawValue: ck_active_isa()) ?? .scalar }
    /// The best implementation this CPU supports.
    public static var best: KernelISA { KernelISA(rawValue: ck_best_isa()) ?? .scalar }
    /// Switches implementation for the whole process (for tests and benchmarks).
    /// Returns false if the CPU lacks it.
    @discardableResult
    public static func select(_ isa: KernelISA) -> Bool { ck_select_isa(isa.rawValue) != 0 }

    public var description: String {
        switch self {
        case .scalar: "scalar"
        case .avx2: "avx2"
        case .avx512: "avx512-vnni"
        }
    }
}

/// A thread pool plus reusable scratch memory for the matrix kernels.
///
/// Threads are created once and reused for every call (no per-token thread creation). A
/// context is not reentrant: drive it from one thread at a time (one model call at a time).
public final class KernelContext: @unchecked Sendable {
    let pool: OpaquePointer?
    /// Threads the work is split across, the calling thread included.
    public let threads: Int
    private var scratch: UnsafeMutablePointer<Float>?
    private var scratchCount = 0

    /// - Parameter threads: total threads (≥ 1); also caps OpenBLAS's own threads.
    public init(threads: Int) {
        let threads = max(1, threads)
        self.threads = threads
        pool = ck_pool_create(Int32(threads))
        openblas_set_num_threads(Int32(threads))
    }

    deinit {
        ck_pool_destroy(pool)
        scratch?.deallocate()
    }

    /// Runs `body(i)` for every i in `0..<count` across the pool's threads and returns when all
    /// are done. `body` must be safe to run concurrently for different indices (each index
    /// writes only its own outputs) and must not use this context itself (no nested pool runs).
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        guard count > 0 else { return }
        if count == 1 || threads == 1 {
            for i in 0..<count { body(i) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            var job = escapable
            withUnsafeMutablePointer(to: &job) { pointer in
                ck_pool_run(pool, { context, index in
                    context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(index))
                }, pointer, Int64(count))
            }
        }
    }

    /// A scratch buffer of at least `count` floats, valid until the next call.
    func scratchBuffer(count: Int) -> UnsafeMutablePointer<Float> {
        if count > scratchCount {
            scratch?.deallocate()
            scratch = UnsafeMutablePointer<Float>.allocate(capacity: count)
            scratchCount = count
        }
        return scratch!
    }
}

/// A `[rows × columns]` weight matrix in its stored format, rows `rowStride` bytes apart
/// (the `[out, in]` layout of both GGUF and Hugging Face linear weights).
///
/// The matrix borrows memory (usually a mapped file) that its owner keeps alive.
public struct WeightMatrix: @unchecked Sendable {
    public let format: GGMLType
    public let base: UnsafeRawPointer
    public let rows: Int
    public let columns: Int
    public let rowStride: Int

    /// Wraps `bytes` as a matrix; checks the format is supported, the row length is a whole
    /// number of blocks and `bytes` holds exactly the rows.
    public init(format: GGMLType, bytes: UnsafeRawBufferPointer, rows: Int, columns: Int) throws {
        guard supportedWeightFormats.contains(format) else {
            throw KernelError.unsupportedFormat(format)
        }
        let rowBytes = Int(ck_row_bytes(Int32(format.rawValue), Int64(columns)))
        guard rows > 0, columns > 0, rowBytes > 0 else {
            throw KernelError.badShape("\(rows)×\(columns) is not whole \(format) blocks")
        }
        guard bytes.count == rows * rowBytes, let base = bytes.baseAddress else {
            throw KernelError.badShape("\(rows)×\(columns) \(format) needs \(rows * rowBytes) bytes, have \(bytes.count)")
        }
        self.format = format
        self.base = base
        self.rows = rows
        self.columns = columns
        self.rowStride = rowBytes
    }

    private var formatID: Int32 { Int32(format.rawValue) }

    /// Decodes row `row` into `destination[0..<columns]`.
    public func dequantizeRow(_ row: Int, into destination: UnsafeMutablePointer<Float>) {
        precondition(row >= 0 && row < rows, "row \(row) out of 0..<\(rows)")
        _ = ck_dequantize_row(formatID, base + row * rowStride, destination, Int64(columns))
    }

    /// Decodes rows `range` into a dense `range.count × columns` f32 matrix, using the pool.
    public func dequantizeRows(_ range: Range<Int>, into destination: UnsafeMutablePointer<Float>,
                               context: KernelContext?) {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows out of range")
        _ = ck_dequantize_rows(context?.pool, formatID, base + range.lowerBound * rowStride,
                               Int64(range.count), Int64(columns), Int64(rowStride), destination)
    }

    /// `y[rows] = W · x[columns]`, rows split across the pool. Quantized formats quantize `x`
    /// to int8 blocks of 32 (scale = max|x|/127) and use integer dot products.
    public func matvec(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                       context: KernelContext?) {
        _ = ck_matvec(context?.pool, formatID, base, Int64(rows), Int64(columns), Int64(rowStride), x, y)
    }

    /// `outputs[m] = x · matrices[m]ᵀ` for `count` rows of `x` and up to four matrices that
    /// read the same input (q/k/v, gate/up): identical to separate `matmul` calls, with one pass
    /// of the thread pool (and, for quantized matrices, one quantization of `x`).
    public static func multiplyGroup(_ matrices: [WeightMatrix], _ x: UnsafePointer<Float>, count: Int,
                                     into outputs: [UnsafeMutablePointer<Float>], context: KernelContext) {
        precondition(matrices.count == outputs.count && matrices.count <= Int(CK_MATVEC_GROUP_MAX),
                     "one output per matrix, at most \(CK_MATVEC_GROUP_MAX)")
        let specs = matrices.map {
            ck_matrix(type: Int32($0.format.rawValue), weights: $0.base, rows: Int64($0.rows),
                      cols: Int64($0.columns), row_stride: Int64($0.rowStride))
        }
        let pointers: [UnsafeMutablePointer<Float>?] = outputs
        if count <= Self.smallBatchLimit || matrices.allSatisfy(\.isQuantized) {
            _ = ck_matmul_group(context.pool, Int32(specs.count), specs, x, Int64(count), pointers)
        } else {
            for (matrix, output) in zip(matrices, outputs) {
                matrix.matmul(x, count: count, into: output, context: context)
            }
        }
    }

    /// Float formats (f32, f16, bf16) in batches above this size go through sgemm.
    public static let smallBatchLimit = 4

    /// True for block-quantized formats, whose products quantize activations to int8 blocks.
    public var isQuantized: Bool { ck_uses_q8_activations(formatID) != 0 }

    /// `y[count × rows] = x[count × columns] · Wᵀ` for a batch of row vectors.
    ///
    /// Quantized formats use the int8 kernels, whose every (row, vector) result is one fixed
    /// chain of exact integer block sums (ckernels.h): a batch gives exactly one `matvec` per
    /// vector, so a prompt prefilled at once, in pieces or token by token, and sessions decoded
    /// alone or together, get the same products; the kernel (in place, or laid out once for
    /// large batches) is picked by batch size. Float formats use sgemm for batches above
    /// `smallBatchLimit` (f16/bf16 through dequantized tiles in the context's scratch; f32 in
    /// place).
    public func matmul(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>,
                       context: KernelContext) {
        if isQuantized || count <= Self.smallBatchLimit {
            _ = ck_matvec_multi(context.pool, formatID, base, Int64(rows), Int64(columns),
                                Int64(rowStride), x, Int64(count), y)
            return
        }
        if format == .f32 {
            Dense.sgemm(transposeB: true, m: count, n: rows, k: columns,
                        a: x, b: base.assumingMemoryBound(to: Float.self), ldb: rowStride / 4,
                        c: y, ldc: rows)
            return
        }
        // Tiles of at most 4M floats (16 MiB) keep scratch bounded even for the output head.
        let tileRows = max(1, min(rows, (1 << 22) / columns))
        let tile = context.scratchBuffer(count: tileRows * columns)
        var first = 0
        while first < rows {
            let end = min(rows, first + tileRows)
            dequantizeRows(first..<end, into: tile, context: context)
            Dense.sgemm(transposeB: true, m: count, n: end - first, k: columns,
                        a: x, b: tile, c: y + first, ldc: rows)
            first = end
        }
    }
}

/// Errors raised when wrapping weights for the kernels.
public enum KernelError: Error, CustomStringConvertible, Sendable {
    case unsupportedFormat(GGMLType)
    case badShape(String)

    public var description: String {
        switch self {
        case .unsupportedFormat(let format): "weight format \(format) is not supported by the kernels"
        case .badShape(let message): "bad weight shape: \(message)"
        }
    }
}

/// f32 vector helpers backed by the dispatched C kernels.
public enum VectorOps {
    /// Σ a[i]·b[i]
    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        ck_dot_f32(a, b, Int64(count))
    }

    /// y += alpha · x
    @inline(__always)
    public static func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        ck_axpy_f32(alpha, x, y, Int64(count))
    }

    /// Index of the first largest value (NaNs passed over unless the first value is NaN).
    public static func argmax(_ values: UnsafeBufferPointer<Float>) -> Int {
        guard let base = values.baseAddress else { return 0 }
        return Int(ck_argmax_f32(base, Int64(values.count)))
    }

    /// `dot` with `b` stored as f16 bits (exactly `dot` of the widened values).
    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, half b: UnsafePointer<UInt16>, count: Int) -> Float {
        ck_dot_f32_f16(a, b, Int64(count))
    }

    /// `axpy` with `x` stored as f16 bits (exactly `axpy` of the widened values).
    @inline(__always)
    public static func axpy(_ alpha: Float, half x: UnsafePointer<UInt16>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        ck_axpy_f16(alpha, x, y, Int64(count))
    }

    /// `scores[t·scoreStride + j] = q_t · k_j` for `queries` rows of `q` (`queryStride` apart)
    /// and `keys` key rows of `count` elements: row j is `slots[j] · rowStride` elements from
    /// `rows` (a cache's slots read in place) or `j · rowStride` without `slots`, f16 with
    /// `half`, else f32. Bit for bit what `dot` (or `dot(_:half:count:)`) gives per pair,
    /// computed in register blocks.
    public static func attentionScores(
        _ q: UnsafePointer<Float>, queries: Int, queryStride: Int,
        rows: UnsafeRawPointer, half: Bool = false, slots: UnsafePointer<Int32>? = nil, rowStride: Int, keys: Int, count: Int,
        into scores: UnsafeMutablePointer<Float>, scoreStride: Int
    ) {
        ck_attention_scores(q, Int64(queries), Int64(queryStride), rows, half ? 1 : 0, slots, Int64(rowStride), Int64(keys),
                            Int64(count), scores, Int64(scoreStride))
    }

    /// `out_t = Σ_j weights[t·weightStride + j] · v_j` over value rows given as in
    /// `attentionScores` (`out` rows overwritten): bit for bit what zeroing `out_t` and calling
    /// `axpy` (or `axpy(_:half:_:count:)`) per nonzero weight in key order gives.
    public static func attentionMix(
        _ weights: UnsafePointer<Float>, queries: Int, weightStride: Int,
        rows: UnsafeRawPointer, half: Bool = false, slots: UnsafePointer<Int32>? = nil, rowStride: Int, keys: Int, count: Int,
        into out: UnsafeMutablePointer<Float>, outStride: Int
    ) {
        ck_attention_mix(weights, Int64(queries), Int64(weightStride), rows, half ? 1 : 0, slots, Int64(rowStride), Int64(keys),
                         Int64(count), out, Int64(outStride))
    }
}

/// Half-precision conversions (IEEE binary16 and bfloat16).
public enum HalfFloat {
    /// Rounds every value to the nearest f16 value (round to nearest even), in place.
    public static func roundToHalf(_ values: UnsafeMutableBufferPointer<Float>) {
        guard let base = values.baseAddress else { return }
        ck_round_to_half(base, Int64(values.count))
    }

    public static func f16ToFloat(_ bits: UInt16) -> Float { ck_fp16_to_f32(bits) }
    /// Converts `count` floats to f16 bits (round to nearest even).
    public static func floatsToF16(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<UInt16>, count: Int) {
        ck_f32_to_f16_row(source, destination, Int64(count))
    }
    /// Converts `count` f16 values to floats (exactly).
    public static func f16ToFloats(_ source: UnsafePointer<UInt16>, _ destination: UnsafeMutablePointer<Float>, count: Int) {
        ck_f16_to_f32_row(source, destination, Int64(count))
    }
    public static func floatToF16(_ value: Float) -> UInt16 { ck_f32_to_fp16(value) }
    public static func bf16ToFloat(_ bits: UInt16) -> Float { ck_bf16_to_f32(bits) }
}
