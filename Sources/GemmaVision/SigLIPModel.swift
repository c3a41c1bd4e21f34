import CKernels
import COpenBLAS
import Dispatch
import Foundation
import GemmaKernels

/// Wall time per phase of a forward pass (for the benchmark's breakdown).
final class PhaseTimes: @unchecked Sendable {
    private(set) var seconds: [String: Double] = [:]

    @inline(__always)
    func measure<T>(_ phase: String, _ body: () throws -> T) rethrows -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { seconds[phase, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        return try body()
    }
}

extension Optional where Wrapped == PhaseTimes {
    /// Runs `body`, timing it when there is a clock.
    @inline(__always)
    func measure<T>(_ phase: String, _ body: () throws -> T) rethrows -> T {
        if let clock = self { return try clock.measure(phase, body) }
        return try body()
    }
}

/// The SigLIP vision transformer and Gemma 3's projector, batched over crops, in f32.
///
/// Weight handling: small tensors (biases, norms, position and patch embeddings, projector) are
/// converted to f32 once at load. The large per-layer matrices stay in the checkpoint's
/// storage (memory-mapped bf16 for Google's releases: ~800 MB for so400m instead of 1.6 GB as
/// f32) and are converted into one reusable f32 scratch (61 MB for so400m) layer by layer on
/// every forward pass; that costs ~0.4 G element conversions per call, under 1% of a crop's
/// ~5.5 TFLOP, and is shared by all crops batched into the call. f32 tensors are used in place.
final class SigLIPModel: @unchecked Sendable {
    let config: VisionConfig
    private let weights: VisionWeights

    private struct SmallLayer {
        let norm1Weight: AlignedFloats, norm1Bias: AlignedFloats, norm2Weight: AlignedFloats, norm2Bias: AlignedFloats
        let queryBias: AlignedFloats, keyBias: AlignedFloats, valueBias: AlignedFloats, outputBias: AlignedFloats
        let upBias: AlignedFloats, downBias: AlignedFloats
    }
    private let layers: [SmallLayer]
    private let patchWeight: [Float]          // [width, 3·p·p]
    private let positionsPlusBias: [Float]    // [patches, width]: position embedding + patch bias
    private let postNormWeight: AlignedFloats, postNormBias: AlignedFloats
    /// Threads for the row-wise kernels and attention (OpenBLAS uses as many for the linear layers).
    private let pool = KernelContext(threads: ProcessInfo.processInfo.activeProcessorCount)
    private let forwardLock = NSLock()
    private let softNormWeight: [Float]
    private let projection: [Float]           // [width, textHidden]

    init(config: VisionConfig, weights: VisionWeights, attentionBlockRows: Int = SigLIPModel.defaultAttentionBlockRows) {
        self.config = config
        self.weights = weights
        self.attentionBlockRows = max(1, attentionBlockRows)
        layers = weights.layers.map { l in
            SmallLayer(norm1Weight: AlignedFloats(l.norm1.weight.floats()), norm1Bias: AlignedFloats(l.norm1.bias.floats()),
                       norm2Weight: AlignedFloats(l.norm2.weight.floats()), norm2Bias: AlignedFloats(l.norm2.bias.floats()),
                       queryBias: AlignedFloats(l.query.bias.floats()), keyBias: AlignedFloats(l.key.bias.floats()),
                       valueBias: AlignedFloats(l.value.bias.floats()), outputBias: AlignedFloats(l.output.bias.floats()),
                       upBias: AlignedFloats(l.up.bias.floats()), downBias: AlignedFloats(l.down.bias.floats()))
        }
        patchWeight = weights.patchWeight.floats()
        var positions = weights.positions.floats()
        let bias = weights.patchBias.floats()
        for p in 0..<config.patchCount {
            for c in 0..<config.width { positions[p * config.width + c] += bias[c] }
        }
        positionsPlusBias = positions
        postNormWeight = AlignedFloats(weights.postNorm.weight.floats())
        postNormBias = AlignedFloats(weights.postNorm.bias.floats())
        softNormWeight = weights.softEmbeddingNorm.floats()
        let stored = weights.projection.floats()
        if weights.projectionIsTransposed {
            var transposed = [Float](repeating: 0, count: stored.count)
            for row in 0..<config.textHidden {
                for column in 0..<config.width {
                    transposed[column * config.textHidden + row] = stored[row * config.width + column]
                }
            }
            projection = transposed
        } else {
            projection = stored
        }
    }

    struct Output {
        /// `crops × patches × width`: the vision tower's last hidden state (after post-LayerNorm).
        var tower: [Float]
        /// `crops × tokensPerImage × textHidden`: the soft tokens.
        var tokens: [Float]
    }

    /// Runs `crops` preprocessed crops (`crops × 3 × imageSize²`, channel-first).
    ///
    /// One forward pass at a time per model (the thread pool is not reentrant): concurrent
    /// callers wait for each other.
    func forward(pixels: UnsafeBufferPointer<Float>, crops: Int, phases: PhaseTimes? = nil) -> Output {
        forwardLock.lock()
        defer { forwardLock.unlock() }
        let c = config
        let n = c.patchCount, d = c.width, f = c.mlpWidth, p = c.patchSize
        let rows = crops * n
        let patchLength = 3 * p * p
        let eps = c.layerNormEpsilon
        precondition(pixels.count == crops * 3 * c.imageSize * c.imageSize)

        var x = [Float](repeating: 0, count: rows * d)
        x.withUnsafeMutableBufferPointer { xb in
            phases.measure("patch embedding") {
                embedPatches(pixels: pixels, crops: crops, into: xb.baseAddress!, patchLength: patchLength)
            }
            let x = xb.baseAddress!
            let h = UnsafeMutablePointer<Float>.allocate(capacity: rows * d)
            let q = UnsafeMutablePointer<Float>.allocate(capacity: rows * d)
            let k = UnsafeMutablePointer<Float>.allocate(capacity: rows * d)
            let v = UnsafeMutablePointer<Float>.allocate(capacity: rows * d)
            let context = UnsafeMutablePointer<Float>.allocate(capacity: rows * d)
            let mlp = UnsafeMutablePointer<Float>.allocate(capacity: rows * f)
            defer { for buffer in [h, q, k, v, context, mlp] { buffer.deallocate() } }
            let scratch = LayerMatrices(config: c)
            // The previous layer's fc2 bias, added to x by the next LayerNorm pass.
            var pendingBias: UnsafePointer<Float>? = nil
            for (index, layer) in layers.enumerated() {
                let matrices = phases.measure("weight conversion") { scratch.load(weights.layers[index]) }
                // Attention block: x += out(attention(LN1(x))).
                phases.measure("layer norms") {
                    addLayerNorm(x, add: pendingBias, into: h, weight: layer.norm1Weight, bias: layer.norm1Bias,
                                 rows: rows, eps: eps)
                }
                phases.measure("linear layers") {
                    linear(h, rows: rows, inputs: d, weight: matrices.query, bias: layer.queryBias, into: q)
                    linear(h, rows: rows, inputs: d, weight: matrices.key, bias: layer.keyBias, into: k)
                    linear(h, rows: rows, inputs: d, weight: matrices.value, bias: layer.valueBias, into: v)
                }
                phases.measure("attention") {
                    attention(q: q, k: k, v: v, crops: crops, into: context)
                }
                phases.measure("linear layers") {
                    chunkedRows(rows) { r in
                        Dense.sgemm(transposeB: true, m: r.count, n: d, k: d, a: context + r.lowerBound * d,
                                    b: matrices.output, beta: 1, c: x + r.lowerBound * d)
                    }
                }
                // MLP block: x += fc2(gelu(fc1(LN2(x)))); out_proj's bias joins x in the LayerNorm pass.
                phases.measure("layer norms") {
                    addLayerNorm(x, add: UnsafePointer(layer.outputBias.pointer), into: h, weight: layer.norm2Weight,
                                 bias: layer.norm2Bias, rows: rows, eps: eps)
                }
                phases.measure("linear layers") {
                    // fc1 then bias + GELU on each chunk while it is still warm in cache.
                    let bias = layer.upBias.pointer
                    chunkedRows(rows) { r in
                        let out = mlp + r.lowerBound * f
                        Dense.sgemm(transposeB: true, m: r.count, n: f, k: d, a: h + r.lowerBound * d, b: matrices.up,
                                    c: out)
                        ckv_bias_gelu_rows(out, bias, Int64(r.count), Int64(f))
                    }
                }
                phases.measure("linear layers") {
                    chunkedRows(rows) { r in
                        Dense.sgemm(transposeB: true, m: r.count, n: d, k: f, a: mlp + r.lowerBound * f,
                                    b: matrices.down, beta: 1, c: x + r.lowerBound * d)
                    }
                }
                pendingBias = UnsafePointer(layer.downBias.pointer)
            }
            phases.measure("layer norms") {
                addLayerNorm(x, add: pendingBias, into: x, weight: postNormWeight, bias: postNormBias,
                             rows: rows, eps: eps)
            }
        }
        let tokens = phases.measure("projector") { project(tower: x, crops: crops) }
        return Output(tower: x, tokens: tokens)
    }

    /// Splits `count` rows into one contiguous range per pool thread and runs them concurrently.
    private func parallelRows(_ count: Int, _ body: (Range<Int>) -> Void) {
        let workers = min(pool.threads, count)
        if workers <= 1 {
            body(0..<count)
            return
        }
        let chunk = (count + workers - 1) / workers
        pool.parallelFor(workers) { worker in
            let start = worker * chunk, end = min(count, start + chunk)
            if start < end { body(start..<end) }
        }
    }

    /// x += add (when given), out = LayerNorm(x)·weight + bias, row by row across the pool.
    private func addLayerNorm(_ x: UnsafeMutablePointer<Float>, add: UnsafePointer<Float>?,
                              into out: UnsafeMutablePointer<Float>, weight: AlignedFloats, bias: AlignedFloats,
                              rows: Int, eps: Float) {
        let d = config.width
        let w = weight.pointer, b = bias.pointer
        parallelRows(rows) { range in
            let offset = range.lowerBound * d
            ckv_add_layer_norm_rows(x + offset, add, out + offset, w, b, Int64(range.count), Int64(d), eps)
        }
    }

    /// Patch embedding as a matrix product: each patch flattened in the conv weight's
    /// (channel, row, column) order, times the weight transposed, plus bias and position.
    private func embedPatches(pixels: UnsafeBufferPointer<Float>, crops: Int, into x: UnsafeMutablePointer<Float>,
                              patchLength: Int) {
        let c = config
        let side = c.patchesPerSide, p = c.patchSize, size = c.imageSize, n = c.patchCount, d = c.width
        var columns = [Float](repeating: 0, count: crops * n * patchLength)
        columns.withUnsafeMutableBufferPointer { cols in
            for crop in 0..<crops {
                let image = pixels.baseAddress! + crop * 3 * size * size
                for py in 0..<side {
                    for px in 0..<side {
                        var out = cols.baseAddress! + ((crop * n) + py * side + px) * patchLength
                        for channel in 0..<3 {
                            for ky in 0..<p {
                                let row = image + channel * size * size + (py * p + ky) * size + px * p
                                out.update(from: row, count: p)
                                out += p
                            }
                        }
                    }
                }
            }
            positionsPlusBias.withUnsafeBufferPointer { pos in
                for crop in 0..<crops {
                    (x + crop * n * d).update(from: pos.baseAddress!, count: n * d)
                }
            }
            patchWeight.withUnsafeBufferPointer { w in
                Dense.sgemm(transposeB: true, m: crops * n, n: d, k: patchLength, a: cols.baseAddress!,
                            b: w.baseAddress!, beta: 1, c: x)
            }
        }
    }

    /// `out = input · weightᵀ + bias`; weight is [width, inputs].
    private func linear(_ input: UnsafePointer<Float>, rows: Int, inputs: Int, weight: UnsafePointer<Float>,
                        bias: AlignedFloats, into out: UnsafeMutablePointer<Float>) {
        let outputs = config.width
        let b = bias.pointer
        chunkedRows(rows) { r in
            let o = out + r.lowerBound * outputs
            ckv_fill_rows(o, b, Int64(r.count), Int64(outputs), Int64(outputs))
            Dense.sgemm(transposeB: true, m: r.count, n: outputs, k: inputs, a: input + r.lowerBound * inputs,
                        b: weight, beta: 1, c: o)
        }
    }

    /// Rows per chunk of a linear layer: each chunk is one single-threaded sgemm (the weight
    /// packed once per chunk: 256 rows make that ~0.4% of the work).
    static let linearChunkRows = 256

    /// Runs `body` on chunks of `linearChunkRows` rows that the pool's threads take in turn
    /// (dynamic sharing: a thread slowed by other load takes fewer chunks, where OpenBLAS's own
    /// threads split each product statically and wait for each other), with OpenBLAS
    /// single-threaded meanwhile and set back afterwards.
    private func chunkedRows(_ rows: Int, _ body: (Range<Int>) -> Void) {
        let chunk = Self.linearChunkRows
        let chunks = (rows + chunk - 1) / chunk
        let workers = min(pool.threads, chunks)
        if workers <= 1 {
            body(0..<rows)
            return
        }
        let next = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
        next.initialize(to: 0)
        defer { next.deallocate() }
        let blasThreads = openblas_get_num_threads()
        openblas_set_num_threads(1)
        defer { openblas_set_num_threads(blasThreads) }
        pool.parallelFor(workers) { _ in
            while true {
                let index = Int(ckv_fetch_increment(next))
                if index >= chunks { break }
                let start = index * chunk
                body(start..<min(rows, start + chunk))
            }
        }
    }

    /// Query rows handled per block of attention: a 256 × 4096 f32 score block is 4 MB per
    /// thread (128 to 512 rows measured within noise per CPU second; 37 and 64 were slower).
    static let defaultAttentionBlockRows = 256
    /// Query rows per attention block (`defaultAttentionBlockRows` unless a test asks for less).
    let attentionBlockRows: Int

    /// Full (bidirectional) multi-head attention within each crop.
    ///
    /// The work is cut into (crop, head) items that the pool's threads take in turn. On AVX-512
    /// an item is one `ckv_attention_head` call: K and V of the head repacked once, then blocks of
    /// `attentionBlockRows` query rows through register-tiled scores, e^(s − max) and mixing with
    /// the score block kept in cache. Elsewhere each block is scores = scale · Q·Kᵀ (sgemm),
    /// `ckv_exp_rows`, context = P·V (sgemm) and a division by the row sums, with OpenBLAS set
    /// single-threaded meanwhile (the items are the parallelism) and set back afterwards.
    private func attention(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, crops: Int,
                           into context: UnsafeMutablePointer<Float>) {
        let c = config
        let n = c.patchCount, d = c.width, hd = c.headDim, heads = c.heads
        let scale = 1 / Float(hd).squareRoot()
        let block = min(attentionBlockRows, n)
        let items = crops * heads
        let workers = min(pool.threads, items)
        let workspaceCount = max(Int(ckv_attention_workspace(Int64(block), Int64(n), Int64(hd))), block * n + block)
        let workspace = UnsafeMutablePointer<Float>.allocate(capacity: workers * workspaceCount)
        let next = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
        next.initialize(to: 0)
        defer { workspace.deallocate(); next.deallocate() }
        let blasThreads = openblas_get_num_threads()
        if workers > 1 { openblas_set_num_threads(1) }
        defer { if workers > 1 { openblas_set_num_threads(blasThreads) } }
        pool.parallelFor(workers) { worker in
            let w = workspace + worker * workspaceCount
            while true {
                let item = Int(ckv_fetch_increment(next))
                if item >= items { break }
                let column = (item / heads) * n * d + (item % heads) * hd
                if ckv_attention_head(q + column, k + column, v + column, Int64(d), Int64(n), Int64(hd), scale,
                                      context + column, Int64(d), Int64(block), w) != 0 { continue }
                let s = w, sums = w + block * n
                var row = 0
                while row < n {
                    let rows = min(block, n - row)
                    Dense.sgemm(transposeB: true, m: rows, n: n, k: hd, alpha: scale, a: q + column + row * d,
                                lda: d, b: k + column, ldb: d, c: s, ldc: n)
                    ckv_exp_rows(s, Int64(rows), Int64(n), Int64(n), sums)
                    let out = context + column + row * d
                    Dense.sgemm(m: rows, n: hd, k: n, a: s, lda: n, b: v + column, ldb: d, c: out, ldc: d)
                    ckv_scale_rows(out, sums, Int64(rows), Int64(hd), Int64(d))
                    row += rows
                }
            }
        }
    }

    /// Average-pool each crop's patch grid to tokensPerSide², RMSNorm (1 + w), project to the
    /// text width.
    private func project(tower: [Float], crops: Int) -> [Float] {
        let c = config
        let side = c.patchesPerSide, kernel = c.poolKernel, tokensSide = c.tokensPerSide
        let d = c.width, t = c.tokensPerImage
        var pooled = [Float](repeating: 0, count: crops * t * d)
        let inverseArea = 1 / Float(kernel * kernel)
        for crop in 0..<crops {
            for ty in 0..<tokensSide {
                for tx in 0..<tokensSide {
                    let token = (crop * t + ty * tokensSide + tx) * d
                    for ky in 0..<kernel {
                        for kx in 0..<kernel {
                            let patch = (crop * c.patchCount + (ty * kernel + ky) * side + tx * kernel + kx) * d
                            for i in 0..<d { pooled[token + i] += tower[patch + i] }
                        }
                    }
                    for i in 0..<d { pooled[token + i] *= inverseArea }
                }
            }
        }
        var tokens = [Float](repeating: 0, count: crops * t * c.textHidden)
        pooled.withUnsafeMutableBufferPointer { pb in
            softNormWeight.withUnsafeBufferPointer { w in
                Dense.rmsNorm(pb, weight: w, eps: c.layerNormEpsilon, addOne: !weights.softEmbeddingNormHoldsOnePlus)
            }
            projection.withUnsafeBufferPointer { w in
                tokens.withUnsafeMutableBufferPointer { out in
                    Dense.sgemm(m: crops * t, n: c.textHidden, k: d, a: pb.baseAddress!, b: w.baseAddress!,
                                c: out.baseAddress!)
                }
            }
        }
        return tokens
    }
}

/// f32 views of one layer's six matrices: the stored bytes when they already are aligned f32,
/// otherwise converted into scratch that is reused for every layer.
private final class LayerMatrices {
    struct Views {
        let query: UnsafePointer<Float>, key: UnsafePointer<Float>, value: UnsafePointer<Float>
        let output: UnsafePointer<Float>, up: UnsafePointer<Float>, down: UnsafePointer<Float>
    }
    private let scratch: UnsafeMutablePointer<Float>
    private let offsets: [Int]

    init(config: VisionConfig) {
        let dd = config.width * config.width, fd = config.mlpWidth * config.width
        offsets = [0, dd, 2 * dd, 3 * dd, 4 * dd, 4 * dd + fd]
        scratch = .allocate(capacity: 4 * dd + 2 * fd)
    }

    deinit { scratch.deallocate() }

    func load(_ layer: VisionWeights.Layer) -> Views {
        let tensors = [layer.query.weight, layer.key.weight, layer.value.weight, layer.output.weight,
                       layer.up.weight, layer.down.weight]
        var pointers: [UnsafePointer<Float>] = []
        for (tensor, offset) in zip(tensors, offsets) {
            let base = tensor.bytes.baseAddress!
            if tensor.type == .f32, Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 {
                pointers.append(base.assumingMemoryBound(to: Float.self))
            } else {
                tensor.copyAsFloats(to: scratch + offset)
                pointers.append(UnsafePointer(scratch + offset))
            }
        }
        return Views(query: pointers[0], key: pointers[1], value: pointers[2], output: pointers[3],
                     up: pointers[4], down: pointers[5])
    }
}

/// A fixed f32 vector at a stable address (small per-layer tensors the C kernels read).
final class AlignedFloats: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    init(_ values: [Float]) {
        count = values.count
        pointer = .allocate(capacity: max(values.count, 1))
        _ = UnsafeMutableBufferPointer(start: pointer, count: count).initialize(from: values)
    }

    deinit { pointer.deallocate() }
}
