import CKernels
import Foundation
import GemmaKernels
import Testing
@testable import GemmaVision

/// Serialized: some tests switch the process-wide instruction set (`KernelISA.select`).
@Suite("Vector kernels", .serialized)
struct VectorMathTests {
    /// Large enough that the work is split across cores.
    static let rows = 300, length = 4096

    static func randomValues(_ count: Int, scale: Float, seed: UInt64) -> [Float] {
        var generator = SplitMix64(seed: seed)
        return (0..<count).map { _ in (generator.nextFloat() * 2 - 1) * scale }
    }

    @Test("softmax rows match a double-precision reference")
    func softmax() {
        var data = Self.randomValues(Self.rows * Self.length, scale: 30, seed: 1)
        let original = data
        data.withUnsafeMutableBufferPointer {
            VectorMath.softmaxRows($0.baseAddress!, rows: Self.rows, length: Self.length, stride: Self.length)
        }
        var worst = 0.0
        for row in 0..<Self.rows {
            let x = original[(row * Self.length)..<((row + 1) * Self.length)].map(Double.init)
            let maximum = x.max()!
            let exps = x.map { Foundation.exp($0 - maximum) }
            let total = exps.reduce(0, +)
            for i in 0..<Self.length {
                let expected = exps[i] / total
                worst = max(worst, abs(Double(data[row * Self.length + i]) - expected) / max(expected, 1e-30))
            }
        }
        #expect(worst < 2e-5, "worst relative error \(worst)")
    }

    @Test("deferred normalisation gives the same probabilities")
    func exponentiate() {
        var a = Self.randomValues(Self.rows * Self.length, scale: 10, seed: 2)
        var b = a
        var inverseSums = [Float](repeating: 0, count: Self.rows)
        a.withUnsafeMutableBufferPointer {
            VectorMath.softmaxRows($0.baseAddress!, rows: Self.rows, length: Self.length, stride: Self.length)
        }
        b.withUnsafeMutableBufferPointer { bp in
            inverseSums.withUnsafeMutableBufferPointer { sp in
                VectorMath.exponentiateRows(bp.baseAddress!, rows: Self.rows, length: Self.length, stride: Self.length,
                                            inverseSums: sp.baseAddress!)
            }
        }
        var worst: Float = 0
        for i in 0..<a.count {
            worst = max(worst, abs(a[i] - b[i] * inverseSums[i / Self.length]) / max(a[i], 1e-30))
        }
        #expect(worst < 1e-6)
    }

    @Test("GELU (tanh) matches a double-precision reference")
    func gelu() {
        var data = Self.randomValues(Self.rows * Self.length, scale: 12, seed: 3)
        let original = data
        data.withUnsafeMutableBufferPointer { VectorMath.geluTanh($0.baseAddress!, count: $0.count) }
        var worst = 0.0
        for i in 0..<data.count {
            let x = Double(original[i])
            let expected = 0.5 * x * (1 + Foundation.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
            worst = max(worst, abs(Double(data[i]) - expected))
        }
        #expect(worst < 5e-6, "worst absolute error \(worst)")
    }

    /// Runs `body` once for each instruction set this CPU has (portable C, AVX2, AVX-512), then
    /// restores the best one.
    static func forEachISA(_ body: (KernelISA) -> Void) {
        defer { _ = KernelISA.select(.best) }
        for isa in [KernelISA.scalar, .avx2, .avx512] where isa.rawValue <= KernelISA.best.rawValue {
            guard KernelISA.select(isa) else { continue }
            body(isa)
        }
    }

    @Test("C exponential, softmax and GELU agree with double references on every instruction set")
    func everyISA() {
        // A row length that is not a multiple of 16 exercises the tails.
        let rows = 7, length = 1000
        let original = Self.randomValues(rows * length, scale: 40, seed: 4)
        Self.forEachISA { isa in
            var data = original
            var sums = [Float](repeating: 0, count: rows)
            data.withUnsafeMutableBufferPointer { d in
                sums.withUnsafeMutableBufferPointer { s in
                    ckv_exp_rows(d.baseAddress!, Int64(rows), Int64(length), Int64(length), s.baseAddress!)
                }
            }
            var worst = 0.0
            for row in 0..<rows {
                let x = original[(row * length)..<((row + 1) * length)].map(Double.init)
                let maximum = x.max()!
                let exps = x.map { Foundation.exp($0 - maximum) }
                let total = exps.reduce(0, +)
                for i in 0..<length {
                    let expected = exps[i] / total
                    let actual = Double(data[row * length + i]) * Double(sums[row])
                    worst = max(worst, abs(actual - expected) / max(expected, 1e-30))
                }
            }
            #expect(worst < 2e-5, "softmax on \(isa): worst relative error \(worst)")

            var gelu = original
            let bias = Self.randomValues(length, scale: 1, seed: 5)
            gelu.withUnsafeMutableBufferPointer { g in
                bias.withUnsafeBufferPointer { b in
                    ckv_bias_gelu_rows(g.baseAddress!, b.baseAddress!, Int64(rows), Int64(length))
                }
            }
            var worstGelu = 0.0
            for i in 0..<gelu.count {
                let x = Double(original[i]) + Double(bias[i % length])
                let expected = 0.5 * x * (1 + Foundation.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
                worstGelu = max(worstGelu, abs(Double(gelu[i]) - expected) / max(1, abs(expected)))
            }
            #expect(worstGelu < 5e-6, "GELU on \(isa): worst error \(worstGelu)")
        }
    }

    @Test("C residual + LayerNorm matches a double-precision reference on every instruction set")
    func layerNorm() {
        let rows = 5, width = 1000
        let x0 = Self.randomValues(rows * width, scale: 20, seed: 6).map { $0 + 3 }
        let add = Self.randomValues(width, scale: 1, seed: 7)
        let weight = Self.randomValues(width, scale: 1, seed: 8), bias = Self.randomValues(width, scale: 1, seed: 9)
        Self.forEachISA { isa in
            var x = x0
            var out = [Float](repeating: 0, count: rows * width)
            x.withUnsafeMutableBufferPointer { xp in
                out.withUnsafeMutableBufferPointer { op in
                    ckv_add_layer_norm_rows(xp.baseAddress!, add, op.baseAddress!, weight, bias, Int64(rows), Int64(width), 1e-6)
                }
            }
            var worst = 0.0
            for row in 0..<rows {
                let v = (0..<width).map { Double(x0[row * width + $0]) + Double(add[$0]) }
                let mean = v.reduce(0, +) / Double(width)
                let variance = v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(width)
                for i in 0..<width {
                    #expect(x[row * width + i] == x0[row * width + i] + add[i])
                    let expected = (v[i] - mean) / (variance + 1e-6).squareRoot() * Double(weight[i]) + Double(bias[i])
                    worst = max(worst, abs(Double(out[row * width + i]) - expected))
                }
            }
            #expect(worst < 1e-5, "LayerNorm on \(isa): worst absolute error \(worst)")
        }
    }

    /// Attention of one head in double precision: rows `ld` apart, head columns at 0..<hd.
    static func referenceAttention(q: [Float], k: [Float], v: [Float], ld: Int, n: Int, hd: Int) -> [Double] {
        let scale = 1 / Double(hd).squareRoot()
        var out = [Double](repeating: 0, count: n * hd)
        for i in 0..<n {
            var scores = (0..<n).map { j in (0..<hd).reduce(0.0) { $0 + Double(q[i * ld + $1]) * Double(k[j * ld + $1]) } * scale }
            let maximum = scores.max()!
            scores = scores.map { Foundation.exp($0 - maximum) }
            let total = scores.reduce(0, +)
            for j in 0..<n {
                for c in 0..<hd { out[i * hd + c] += scores[j] / total * Double(v[j * ld + c]) }
            }
        }
        return out
    }

    @Test("AVX-512 attention head matches a double reference (partial tiles, blocks and panels)",
          arguments: [(n: 100, hd: 72, block: 37), (n: 64, hd: 8, block: 64), (n: 45, hd: 80, block: 16)])
    func attentionHead(n: Int, hd: Int, block: Int) throws {
        let ld = hd * 2 + 3  // the head sits inside wider rows, as in the model
        let q = Self.randomValues(n * ld, scale: 2, seed: 10), k = Self.randomValues(n * ld, scale: 2, seed: 11)
        let v = Self.randomValues(n * ld, scale: 1, seed: 12)
        let expected = Self.referenceAttention(q: q, k: k, v: v, ld: ld, n: n, hd: hd)
        var out = [Float](repeating: .nan, count: n * ld)
        var workspace = [Float](repeating: .nan, count: Int(ckv_attention_workspace(Int64(block), Int64(n), Int64(hd))))
        let ran = out.withUnsafeMutableBufferPointer { o in
            workspace.withUnsafeMutableBufferPointer { w in
                ckv_attention_head(q, k, v, Int64(ld), Int64(n), Int64(hd), 1 / Float(hd).squareRoot(),
                                   o.baseAddress!, Int64(ld), Int64(block), w.baseAddress!)
            }
        }
        // It runs only with AVX-512 selected (tests elsewhere in the process may switch the
        // instruction set meanwhile; the model then takes its sgemm path).
        guard ran == 1 else {
            #expect(KernelISA.best != .avx512 || KernelISA.active != .avx512)
            return
        }
        var worst = 0.0
        for i in 0..<n {
            for c in 0..<hd { worst = max(worst, abs(Double(out[i * ld + c]) - expected[i * hd + c])) }
            for c in hd..<ld { #expect(out[i * ld + c].isNaN, "wrote outside the head") }
        }
        #expect(worst < 1e-5, "worst absolute error \(worst)")
    }

    @Test("the AVX-512 attention kernel declines when AVX-512 is not selected")
    func attentionDeclines() {
        let n = 16, hd = 8
        let x = Self.randomValues(n * hd, scale: 1, seed: 13)
        var out = [Float](repeating: 0, count: n * hd)
        var workspace = [Float](repeating: 0, count: Int(ckv_attention_workspace(16, Int64(n), Int64(hd))))
        defer { _ = KernelISA.select(.best) }
        #expect(KernelISA.select(.scalar))
        #expect(ckv_attention_head(x, x, x, Int64(hd), Int64(n), Int64(hd), 1, &out, Int64(hd), 16, &workspace) == 0)
        #expect(ckv_attention_head(x, x, x, Int64(hd), Int64(n), 81, 1, &out, Int64(hd), 16, &workspace) == 0)
    }

    @Test("the model gives the same output on every instruction set (AVX-512 attention kernel or sgemm path)")
    func modelOnEveryISA() throws {
        // 36 patches in blocks of 8 query rows (partial last block), head dimension 24.
        let config = VisionConfig(imageSize: 84, patchSize: 14, width: 48, layers: 2, heads: 2, mlpWidth: 40,
                                  tokensPerImage: 9, textHidden: 16)
        let encoder = try VisionEncoder(config: config, huggingFaceTensors: VisionBenchmark.randomWeights(config: config, seed: 3),
                                        maxCropsPerBatch: 2, attentionBlockRows: 8)
        let pixels = Self.randomValues(2 * 3 * 84 * 84, scale: 1, seed: 14)
        var outputs: [(KernelISA, [Float])] = []
        Self.forEachISA { isa in
            let result = try! encoder.run(pixelValues: pixels, crops: 2)
            outputs.append((isa, result.flatMap { $0.tower + $0.tokens }))
        }
        let reference = outputs.last!.1
        let scale = reference.map(abs).max()!
        for (isa, output) in outputs {
            var worst: Float = 0
            for i in 0..<output.count { worst = max(worst, abs(output[i] - reference[i])) }
            #expect(worst / scale < 1e-5, "\(isa) differs from \(outputs.last!.0) by \(worst / scale) (relative)")
        }
    }
}
