import Foundation
import Testing
@testable import GemmaVision

@Suite("Vector kernels")
struct VectorMathTests {
    /// Large enough that the work is split across cores.
    static let rows = 300, length = 4096

    static func randomValues(_ count: Int, scale: Float, seed: UInt64) -> [Float] {
        var generator = SplitMix(state: seed)
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
}
