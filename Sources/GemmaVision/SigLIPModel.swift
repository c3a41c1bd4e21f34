import Dispatch
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
        let norm1Weight: [Float], norm1Bias: [Float], norm2Weight: [Float], norm2Bias: [Float]
        let queryBias: [Float], keyBias: [Float], valueBias: [Float], outputBias: [Float]
        let upBias: [Float], downBias: [Float]
    }
    private let layers: [SmallLayer]
    private let patchWeight: [Float]          // [width, 3·p·p]
    private let positionsPlusBias: [Float]    // [patches, width]: position embedding + patch bias
    private let postNormWeight: [Float], postNormBias: [Float]
    private let softNormWeight: [Float]
    private let projection: [Float]           // [width, textHidden]

    init(config: VisionConfig, weights: VisionWeights, attentionBlockRows: Int = SigLIPModel.defaultAttentionBlockRows) {
        self.config = config
        self.weights = weights
        self.attentionBlockRows = max(1, attentionBlockRows)
        layers = weights.layers.map { l in
            SmallLayer(norm1Weight: l.norm1.weight.floats(), norm1Bias: l.norm1.bias.floats(),
                       norm2Weight: l.norm2.weight.floats(), norm2Bias: l.norm2.bias.floats(),
                       queryBias: l.query.bias.floats(), keyBias: l.key.bias.floats(),
                       valueBias: l.value.bias.floats(), outputBias: l.output.bias.floats(),
                       upBias: l.up.bias.floats(), downBias: l.down.bias.floats())
        }
        patchWeight = weights.patchWeight.floats()
        var positions = weights.positions.floats()
        let bias = weights.patchBias.floats()
        for p in 0..<config.patchCount {
            for c in 0..<config.width { positions[p * config.width + c] += bias[c] }
        }
        positionsPlusBias = positions
        postNormWeight = weights.postNorm.weight.floats()
        postNormBias = weights.postNorm.bias.floats()
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
    func forward(pixels: UnsafeBufferPointer<Float>, crops: Int, phases: PhaseTimes? = nil) -> Output {
        let c = config
        let n = c.patchCount, d = c.width, f = c.mlpWidth, p = c.patchSize
        let rows = crops * n
        let patchLength = 3 * p * p
        precondition(pixels.count == crops * 3 * c.imageSize * c.imageSize)

        var x = [Float](repeating: 0, count: rows * d)
        x.withUnsafeMutableBufferPointer { xb in
            phases.measure("patch embedding") {
                embedPatches(pixels: pixels, crops: crops, into: xb.baseAddress!, patchLength: patchLength)
            }
            var h = [Float](repeating: 0, count: rows * d)
            var q = [Float](repeating: 0, count: rows * d)
            var k = [Float](repeating: 0, count: rows * d)
            var v = [Float](repeating: 0, count: rows * d)
            var context = [Float](repeating: 0, count: rows * d)
            var mlp = [Float](repeating: 0, count: rows * f)
            var scores = [Float](repeating: 0, count: min(attentionBlockRows, n) * n)
            let scratch = LayerMatrices(config: c)
            h.withUnsafeMutableBufferPointer { hb in
            q.withUnsafeMutableBufferPointer { qb in
            k.withUnsafeMutableBufferPointer { kb in
            v.withUnsafeMutableBufferPointer { vb in
            context.withUnsafeMutableBufferPointer { cb in
            mlp.withUnsafeMutableBufferPointer { mb in
            scores.withUnsafeMutableBufferPointer { sb in
                for (index, layer) in layers.enumerated() {
                    let matrices = phases.measure("weight conversion") { scratch.load(weights.layers[index]) }
                    // Attention block: x += out(attention(LN1(x))).
                    phases.measure("layer norms") {
                        hb.baseAddress!.update(from: xb.baseAddress!, count: rows * d)
                        layer.norm1Weight.withUnsafeBufferPointer { w in
                            layer.norm1Bias.withUnsafeBufferPointer { b in
                                Dense.layerNorm(hb, weight: w, bias: b, eps: c.layerNormEpsilon)
                            }
                        }
                    }
                    phases.measure("linear layers") {
                        linear(hb.baseAddress!, rows: rows, inputs: d, weight: matrices.query, bias: layer.queryBias,
                               into: qb.baseAddress!, accumulate: false)
                        linear(hb.baseAddress!, rows: rows, inputs: d, weight: matrices.key, bias: layer.keyBias,
                               into: kb.baseAddress!, accumulate: false)
                        linear(hb.baseAddress!, rows: rows, inputs: d, weight: matrices.value, bias: layer.valueBias,
                               into: vb.baseAddress!, accumulate: false)
                    }
                    attention(q: qb.baseAddress!, k: kb.baseAddress!, v: vb.baseAddress!, crops: crops,
                              scores: sb.baseAddress!, into: cb.baseAddress!, phases: phases)
                    phases.measure("linear layers") {
                        linear(cb.baseAddress!, rows: rows, inputs: d, weight: matrices.output, bias: layer.outputBias,
                               into: xb.baseAddress!, accumulate: true)
                    }
                    // MLP block: x += fc2(gelu(fc1(LN2(x)))).
                    phases.measure("layer norms") {
                        hb.baseAddress!.update(from: xb.baseAddress!, count: rows * d)
                        layer.norm2Weight.withUnsafeBufferPointer { w in
                            layer.norm2Bias.withUnsafeBufferPointer { b in
                                Dense.layerNorm(hb, weight: w, bias: b, eps: c.layerNormEpsilon)
                            }
                        }
                    }
                    phases.measure("linear layers") {
                        linear(hb.baseAddress!, rows: rows, inputs: d, weight: matrices.up, bias: layer.upBias,
                               into: mb.baseAddress!, accumulate: false, outputs: f)
                    }
                    phases.measure("GELU") { VectorMath.geluTanh(mb.baseAddress!, count: rows * f) }
                    phases.measure("linear layers") {
                        linear(mb.baseAddress!, rows: rows, inputs: f, weight: matrices.down, bias: layer.downBias,
                               into: xb.baseAddress!, accumulate: true)
                    }
                }
            }}}}}}}
            postNormWeight.withUnsafeBufferPointer { w in
                postNormBias.withUnsafeBufferPointer { b in
                    Dense.layerNorm(xb, weight: w, bias: b, eps: c.layerNormEpsilon)
                }
            }
        }
        let tokens = phases.measure("projector") { project(tower: x, crops: crops) }
        return Output(tower: x, tokens: tokens)
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

    /// `out = input · weightᵀ + bias` (or `out += …` when `accumulate`); weight is [outputs, inputs].
    private func linear(_ input: UnsafePointer<Float>, rows: Int, inputs: Int, weight: UnsafePointer<Float>,
                        bias: [Float], into out: UnsafeMutablePointer<Float>, accumulate: Bool, outputs: Int? = nil) {
        let outputs = outputs ?? config.width
        bias.withUnsafeBufferPointer { b in
            if accumulate {
                for r in 0..<rows {
                    let row = out + r * outputs
                    for i in 0..<outputs { row[i] += b[i] }
                }
            } else {
                for r in 0..<rows { (out + r * outputs).update(from: b.baseAddress!, count: outputs) }
            }
        }
        Dense.sgemm(transposeB: true, m: rows, n: outputs, k: inputs, a: input, b: weight, beta: 1, c: out)
    }

    /// Query rows handled per block of attention: a 1024 × 4096 f32 score block is 16 MB
    /// instead of 64 MB for a whole so400m head (256 to 4096 rows measured within noise on the
    /// shared 2-core machine; 1024 was best in the runs made).
    static let defaultAttentionBlockRows = 1024
    /// Query rows per attention block (`defaultAttentionBlockRows` unless a test asks for less).
    let attentionBlockRows: Int

    /// Full (bidirectional) multi-head attention within each crop, block by block of query rows.
    private func attention(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, crops: Int,
                           scores: UnsafeMutablePointer<Float>, into context: UnsafeMutablePointer<Float>,
                           phases: PhaseTimes?) {
        let c = config
        let n = c.patchCount, d = c.width, hd = c.headDim
        let scale = 1 / Float(hd).squareRoot()
        let block = min(attentionBlockRows, n)
        let inverseSums = UnsafeMutablePointer<Float>.allocate(capacity: block)
        defer { inverseSums.deallocate() }
        for crop in 0..<crops {
            let offset = crop * n * d
            for head in 0..<c.heads {
                let column = offset + head * hd
                var row = 0
                while row < n {
                    let rows = min(block, n - row)
                    phases.measure("attention scores") {
                        Dense.sgemm(transposeB: true, m: rows, n: n, k: hd, alpha: scale, a: q + column + row * d,
                                    lda: d, b: k + column, ldb: d, c: scores, ldc: n)
                    }
                    phases.measure("softmax") {
                        VectorMath.exponentiateRows(scores, rows: rows, length: n, stride: n, inverseSums: inverseSums)
                    }
                    phases.measure("attention mixing") {
                        let out = context + column + row * d
                        Dense.sgemm(m: rows, n: hd, k: n, a: scores, lda: n, b: v + column, ldb: d, c: out, ldc: d)
                        for r in 0..<rows {
                            let scale = inverseSums[r]
                            for i in 0..<hd { out[r * d + i] *= scale }
                        }
                    }
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
