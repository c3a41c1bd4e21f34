/// Element-wise kernels the attention and MLP need in bulk. Written with 8-wide SIMD using
/// plain multiplies and adds (no `addProduct`, which becomes an `fmaf` call without a CPU
/// target), so they vectorize in a portable build.
enum VectorMath {
    typealias V = SIMD8<Float>

    /// e^x, Cephes-style: x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-6 polynomial, 2^n from
    /// the exponent bits. Relative error about 2e-7 over [-87, 88]; inputs are clamped there
    /// (so e^-inf gives ~1e-38, not 0; callers needing exact zeros must handle them).
    @inline(__always)
    static func exp(_ input: V) -> V {
        let x = input.clamped(lowerBound: V(repeating: -87.0), upperBound: V(repeating: 88.0))
        let n = (x * 1.442_695_04).rounded(.toNearestOrEven)
        let r = x - n * 0.693_359_375 - n * -2.121_944_4e-4
        let r2 = r * r
        var p = V(repeating: 1.987_569_15e-4) * r + 1.398_199_95e-3
        p = p * r + 8.333_451_9e-3
        p = p * r + 4.166_579_6e-2
        p = p * r + 1.666_666_55e-1
        p = p * r + 5.000_000_1e-1
        let poly = p * r2 + r + 1
        let exponent = (SIMD8<Int32>(n, rounding: .towardZero) &+ 127) &<< 23
        return poly * unsafeBitCast(exponent, to: V.self)
    }

    /// Softmax of each row (`rows × length`, rows `stride` apart), in place.
    static func softmaxRows(_ data: UnsafeMutablePointer<Float>, rows: Int, length: Int, stride: Int) {
        let vectorEnd = length - length % 8
        for row in 0..<rows {
            let x = data + row * stride
            var maxVector = V(repeating: -.infinity)
            var i = 0
            while i < vectorEnd {
                maxVector = pointwiseMax(maxVector, load(x + i))
                i += 8
            }
            var maximum = maxVector.max()
            while i < length { maximum = Swift.max(maximum, x[i]); i += 1 }
            var sumVector = V(repeating: 0)
            i = 0
            while i < vectorEnd {
                let e = exp(load(x + i) - maximum)
                store(e, x + i)
                sumVector += e
                i += 8
            }
            var sum = sumVector.sum()
            while i < length {
                let e = exp(V(repeating: x[i] - maximum))[0]
                x[i] = e
                sum += e
                i += 1
            }
            let inverse = 1 / sum
            i = 0
            while i < vectorEnd { store(load(x + i) * inverse, x + i); i += 8 }
            while i < length { x[i] *= inverse; i += 1 }
        }
    }

    /// GELU, tanh approximation (PyTorch's `gelu_pytorch_tanh`), in place:
    /// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), with tanh(u) = 1 − 2 / (e^{2u} + 1).
    static func geluTanh(_ data: UnsafeMutablePointer<Float>, count: Int) {
        let vectorEnd = count - count % 8
        var i = 0
        while i < vectorEnd {
            store(gelu(load(data + i)), data + i)
            i += 8
        }
        while i < count {
            data[i] = gelu(V(repeating: data[i]))[0]
            i += 1
        }
    }

    @inline(__always)
    private static func gelu(_ x: V) -> V {
        let u = (x + x * x * x * 0.044_715) * 0.797_884_560_802_865_4
        let twice = (u * 2).clamped(lowerBound: V(repeating: -80), upperBound: V(repeating: 80))
        let tanh = 1 - 2 / (exp(twice) + 1)
        return x * 0.5 * (1 + tanh)
    }

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inline(__always)
    static func load(_ p: UnsafeMutablePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inline(__always)
    static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }
}
