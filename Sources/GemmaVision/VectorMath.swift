import CKernels
import Foundation

/// Element-wise kernels the attention and MLP need in bulk: thin Swift entry points (split
/// across cores) over the C kernels of CKernels' `vision_ops.c`, which are compiled per
/// instruction set and picked at run time. `exp`, `max` and `sum` are portable Swift versions
/// kept for small uses and as the tests' reference for the C exponential.
enum VectorMath {
    /// Splits `count` items into one contiguous chunk per core and runs them concurrently
    /// (these kernels run between OpenBLAS calls, so the cores are otherwise idle).
    static func parallelChunks(_ count: Int, minimumChunk: Int, _ body: @Sendable (Range<Int>) -> Void) {
        let workers = Swift.min(ProcessInfo.processInfo.activeProcessorCount, Swift.max(1, count / Swift.max(minimumChunk, 1)))
        if workers <= 1 {
            body(0..<count)
            return
        }
        let chunk = (count + workers - 1) / workers
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let start = worker * chunk
            let end = Swift.min(count, start + chunk)
            if start < end { body(start..<end) }
        }
    }

    /// e^x for x in [-87, 88] (clamped there), Cephes-style: x = n·ln2 + r, |r| ≤ ln2/2,
    /// e^r by a degree-6 polynomial, 2^n built in the exponent bits. n is rounded with the
    /// 1.5·2^23 trick, so no float→int conversion (which traps on overflow) is needed.
    /// Relative error about 2e-7.
    @inline(__always)
    static func exp(_ input: Float) -> Float {
        let x = input < -87 ? -87 : (input > 88 ? 88 : input)
        let shifted = x * 1.442_695_04 + 12_582_912.0
        let n = shifted - 12_582_912.0
        let r = x - n * 0.693_359_375 - n * -2.121_944_4e-4
        var p: Float = 1.987_569_15e-4
        p = p * r + 1.398_199_95e-3
        p = p * r + 8.333_451_9e-3
        p = p * r + 4.166_579_6e-2
        p = p * r + 1.666_666_55e-1
        p = p * r + 5.000_000_1e-1
        let poly = p * (r * r) + r + 1
        // shifted's low mantissa bits hold n (+ 0x400000): recover 2^n's exponent field.
        let exponentBits = (shifted.bitPattern &- 0x4B40_0000 &+ 127) &<< 23
        return poly * Float(bitPattern: exponentBits)
    }

    /// Softmax of each row (`rows × length`, rows `stride` apart), in place (`ckv_exp_rows`,
    /// then a division by the sum).
    static func softmaxRows(_ data: UnsafeMutablePointer<Float>, rows: Int, length: Int, stride: Int) {
        let address = Int(bitPattern: data)
        parallelChunks(rows, minimumChunk: Swift.max(1, 65_536 / Swift.max(length, 1))) { chunk in
            let data = UnsafeMutablePointer<Float>(bitPattern: address)! + chunk.lowerBound * stride
            let sums = UnsafeMutablePointer<Float>.allocate(capacity: chunk.count)
            defer { sums.deallocate() }
            ckv_exp_rows(data, Int64(chunk.count), Int64(length), Int64(stride), sums)
            ckv_scale_rows(data, sums, Int64(chunk.count), Int64(length), Int64(stride))
        }
    }

    /// Softmax without the final division: each row becomes e^(x − max), and `inverseSums[row]`
    /// receives 1 / Σ (`ckv_exp_rows`). Attention applies the division to its (much narrower)
    /// output instead.
    static func exponentiateRows(_ data: UnsafeMutablePointer<Float>, rows: Int, length: Int, stride: Int,
                                 inverseSums: UnsafeMutablePointer<Float>) {
        let address = Int(bitPattern: data), sums = Int(bitPattern: inverseSums)
        parallelChunks(rows, minimumChunk: Swift.max(1, 65_536 / Swift.max(length, 1))) { chunk in
            ckv_exp_rows(UnsafeMutablePointer<Float>(bitPattern: address)! + chunk.lowerBound * stride,
                         Int64(chunk.count), Int64(length), Int64(stride),
                         UnsafeMutablePointer<Float>(bitPattern: sums)! + chunk.lowerBound)
        }
    }

    /// GELU, tanh approximation (PyTorch's `gelu_pytorch_tanh`), in place (`ckv_bias_gelu_rows`):
    /// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) = x / (1 + e^(−2·√(2/π)·(x + 0.044715·x³))).
    static func geluTanh(_ data: UnsafeMutablePointer<Float>, count: Int) {
        let address = Int(bitPattern: data)
        parallelChunks(count, minimumChunk: 65_536) { chunk in
            ckv_bias_gelu_rows(UnsafeMutablePointer<Float>(bitPattern: address)! + chunk.lowerBound, nil, 1,
                               Int64(chunk.count))
        }
    }

    static func max(_ x: UnsafePointer<Float>, count: Int) -> Float {
        var m0 = -Float.infinity, m1 = m0, m2 = m0, m3 = m0, m4 = m0, m5 = m0, m6 = m0, m7 = m0
        var i = 0
        while i + 8 <= count {
            m0 = x[i] > m0 ? x[i] : m0
            m1 = x[i + 1] > m1 ? x[i + 1] : m1
            m2 = x[i + 2] > m2 ? x[i + 2] : m2
            m3 = x[i + 3] > m3 ? x[i + 3] : m3
            m4 = x[i + 4] > m4 ? x[i + 4] : m4
            m5 = x[i + 5] > m5 ? x[i + 5] : m5
            m6 = x[i + 6] > m6 ? x[i + 6] : m6
            m7 = x[i + 7] > m7 ? x[i + 7] : m7
            i += 8
        }
        var m = Swift.max(Swift.max(Swift.max(m0, m1), Swift.max(m2, m3)), Swift.max(Swift.max(m4, m5), Swift.max(m6, m7)))
        while i < count { m = x[i] > m ? x[i] : m; i += 1 }
        return m
    }

    static func sum(_ x: UnsafePointer<Float>, count: Int) -> Float {
        var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
        var s4: Float = 0, s5: Float = 0, s6: Float = 0, s7: Float = 0
        var i = 0
        while i + 8 <= count {
            s0 += x[i]; s1 += x[i + 1]; s2 += x[i + 2]; s3 += x[i + 3]
            s4 += x[i + 4]; s5 += x[i + 5]; s6 += x[i + 6]; s7 += x[i + 7]
            i += 8
        }
        var s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
        while i < count { s += x[i]; i += 1 }
        return s
    }
}
