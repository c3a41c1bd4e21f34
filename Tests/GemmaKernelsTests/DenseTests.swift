import XCTest
import GemmaKernels

/// Deterministic pseudo-random floats in [-1, 1) (xorshift), so failures reproduce.
func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<count).map { _ in
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return Float(Double(state >> 11) / Double(UInt64(1) << 53) * 2 - 1)
    }
}

final class DenseTests: XCTestCase {
    func testSgemmMatchesNaiveProductForAllTransposes() {
        let (m, n, k) = (5, 7, 9)
        for transposeA in [false, true] {
            for transposeB in [false, true] {
                let a = randomFloats(m * k, seed: 1)
                let b = randomFloats(k * n, seed: 2)
                var c = [Float](repeating: 0, count: m * n)
                Dense.sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                            a: a, b: b, c: &c)
                for i in 0..<m {
                    for j in 0..<n {
                        var expected: Float = 0
                        for p in 0..<k {
                            let av = transposeA ? a[p * m + i] : a[i * k + p]
                            let bv = transposeB ? b[j * k + p] : b[p * n + j]
                            expected += av * bv
                        }
                        XCTAssertEqual(c[i * n + j], expected, accuracy: 1e-5)
                    }
                }
            }
        }
    }

    func testRmsNormWithOffsetEqualsPlainNormTimesOnePlusWeight() {
        let x = randomFloats(12, seed: 3)
        let w = randomFloats(4, seed: 4)
        let onePlus = w.map { 1 + $0 }
        var offset = x, plain = x
        offset.withUnsafeMutableBufferPointer { p in
            w.withUnsafeBufferPointer { Dense.rmsNorm(p, weight: $0, eps: 1e-6, addOne: true) }
        }
        plain.withUnsafeMutableBufferPointer { p in
            onePlus.withUnsafeBufferPointer { Dense.rmsNorm(p, weight: $0, eps: 1e-6, addOne: false) }
        }
        for row in 0..<3 {
            let values = Array(x[(row * 4)..<(row * 4 + 4)])
            let rms = (values.map { $0 * $0 }.reduce(0, +) / 4 + 1e-6).squareRoot()
            for i in 0..<4 {
                XCTAssertEqual(offset[row * 4 + i], values[i] / rms * onePlus[i], accuracy: 1e-5)
                XCTAssertEqual(plain[row * 4 + i], offset[row * 4 + i], accuracy: 1e-6)
            }
        }
    }

    func testLayerNormGivesZeroMeanUnitVarianceBeforeAffine() {
        var x = randomFloats(8, seed: 5).map { $0 * 3 + 2 }
        let ones = [Float](repeating: 1, count: 8), zeros = [Float](repeating: 0, count: 8)
        x.withUnsafeMutableBufferPointer { p in
            ones.withUnsafeBufferPointer { w in
                zeros.withUnsafeBufferPointer { b in Dense.layerNorm(p, weight: w, bias: b, eps: 0) }
            }
        }
        let mean = x.reduce(0, +) / 8
        let variance = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 8
        XCTAssertEqual(mean, 0, accuracy: 1e-5)
        XCTAssertEqual(variance, 1, accuracy: 1e-4)
    }

    func testSoftmaxSumsToOneAndMasksNegativeInfinity() {
        var x: [Float] = [1, 2, -.infinity, 1000]
        x.withUnsafeMutableBufferPointer { Dense.softmax($0) }
        XCTAssertEqual(x.reduce(0, +), 1, accuracy: 1e-6)
        XCTAssertEqual(x[2], 0)
        XCTAssertEqual(x[3], 1, accuracy: 1e-6)
        var masked: [Float] = [-.infinity, -.infinity]
        masked.withUnsafeMutableBufferPointer { Dense.softmax($0) }
        XCTAssertEqual(masked, [0, 0])
    }

    func testGeluTanhMatchesDefinition() {
        var x: [Float] = [-3, -0.5, 0, 0.5, 3]
        let expected = x.map { v in
            Float(0.5 * Double(v) * (1 + tanh(0.7978845608028654 * (Double(v) + 0.044715 * Double(v * v * v)))))
        }
        x.withUnsafeMutableBufferPointer { Dense.geluTanh($0) }
        for i in x.indices { XCTAssertEqual(x[i], expected[i], accuracy: 1e-6) }
    }
}
