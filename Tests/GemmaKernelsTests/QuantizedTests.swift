import CKernels
import Foundation
import GemmaWeights
import XCTest
import GemmaKernels

/// Folder of the committed goldens written by tools/make_fixtures.py.
let fixturesFolder = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/text")

private struct QuantFixture: Decodable {
    let name: String
    let type: UInt32
    let rows: Int
    let columns: Int
}

/// One format's golden: the stored blocks and the values gguf-py decodes from them.
private struct Golden {
    let format: GGMLType
    let rows: Int
    let columns: Int
    let blocks: [UInt8]
    let values: [Float]
}

private func loadGoldens() throws -> [Golden] {
    let folder = fixturesFolder.appendingPathComponent("quant")
    let manifest = try JSONDecoder().decode(
        [QuantFixture].self, from: Data(contentsOf: folder.appendingPathComponent("manifest.json")))
    return try manifest.map { entry in
        let blocks = try [UInt8](Data(contentsOf: folder.appendingPathComponent("\(entry.name).blocks")))
        let valueBytes = try Data(contentsOf: folder.appendingPathComponent("\(entry.name).f32"))
        let values = valueBytes.withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
        return Golden(format: GGMLType(rawValue: entry.type)!, rows: entry.rows, columns: entry.columns,
                      blocks: blocks, values: values)
    }
}

/// `matrix.matmul` into a new array.
private func product(_ matrix: WeightMatrix, _ x: [Float], count: Int, context: KernelContext) -> [Float] {
    var y = [Float](repeating: .nan, count: count * matrix.rows)
    y.withUnsafeMutableBufferPointer { matrix.matmul(x, count: count, into: $0.baseAddress!, context: context) }
    return y
}

/// One `matvec` per vector of `x`, concatenated.
private func separateProducts(_ matrix: WeightMatrix, _ x: [Float], count: Int, context: KernelContext) -> [Float] {
    var y = [Float](repeating: .nan, count: count * matrix.rows)
    y.withUnsafeMutableBufferPointer { out in
        x.withUnsafeBufferPointer { input in
            for v in 0..<count {
                matrix.matvec(input.baseAddress! + v * matrix.columns, into: out.baseAddress! + v * matrix.rows, context: context)
            }
        }
    }
    return y
}

/// Every implementation this CPU can run, so each is checked against the goldens.
private var availableISAs: [KernelISA] {
    [.scalar, .avx2, .avx512].filter { $0.rawValue <= KernelISA.best.rawValue }
}

final class QuantizedTests: XCTestCase {
    override func tearDown() {
        KernelISA.select(.best)
    }

    func testGoldensCoverEveryQuantizedFormat() throws {
        let formats = Set(try loadGoldens().map(\.format))
        XCTAssertEqual(formats, supportedWeightFormats.subtracting([.f32]))
    }

    func testDequantizeMatchesGGUFReferenceExactly() throws {
        for golden in try loadGoldens() {
            for isa in availableISAs {
                XCTAssertTrue(KernelISA.select(isa))
                try golden.blocks.withUnsafeBytes { bytes in
                    let matrix = try WeightMatrix(format: golden.format, bytes: bytes,
                                                  rows: golden.rows, columns: golden.columns)
                    var decoded = [Float](repeating: .nan, count: golden.rows * golden.columns)
                    decoded.withUnsafeMutableBufferPointer {
                        matrix.dequantizeRows(0..<golden.rows, into: $0.baseAddress!, context: nil)
                    }
                    XCTAssertEqual(decoded, golden.values, "\(golden.format) dequantize on \(isa)")
                }
            }
        }
    }

    /// RMSNorm gives the same bits on every implementation (its eight-lane double sum is one
    /// order everywhere), for rows with and without a partial lane group, and matches a double
    /// reference.
    func testRMSNormIsTheSameOnEveryISA() {
        for width in [640, 13] {
            let x = randomFloats(3 * width, seed: UInt64(width)).map { $0 * 4 }
            let weight = randomFloats(width, seed: UInt64(width) + 1)
            var reference: [Float]?
            for isa in availableISAs {
                XCTAssertTrue(KernelISA.select(isa))
                var y = x
                y.withUnsafeMutableBufferPointer { out in
                    weight.withUnsafeBufferPointer { Dense.rmsNorm(out, weight: $0, eps: 1e-6, addOne: true) }
                }
                if let reference { XCTAssertEqual(y, reference, "width \(width) on \(isa)") } else { reference = y }
                for row in 0..<3 {
                    let values = x[(row * width)..<((row + 1) * width)].map(Double.init)
                    let scale = 1 / (values.map { $0 * $0 }.reduce(0, +) / Double(width) + 1e-6).squareRoot()
                    for i in 0..<width {
                        XCTAssertEqual(Double(y[row * width + i]), values[i] * scale * (1 + Double(weight[i])), accuracy: 1e-5)
                    }
                }
            }
        }
    }

    /// Activations quantize to the same blocks (values, scales, sums) on every implementation,
    /// in both schemes: ties of magnitude with opposite signs (the first sets Q8_K's sign), a
    /// negative extreme, an all-zero block, values on rounding midpoints.
    func testActivationQuantizationIsTheSameOnEveryISA() throws {
        var x = randomFloats(2048, seed: 77).map { $0 * 3 }
        x[5] = -9; x[200] = 9                         // Q8_K block 0: −9 comes first
        x[300] = 7; x[400] = -7.5                     // block 1: the extreme is negative
        for j in 512..<768 { x[j] = 0 }               // block 2: all zero
        for j in 768..<800 { x[j] = Float(j - 784) * 0.5 }  // midpoints of the 127/8 grid
        for mode in [Int32(CK_ACT_Q8_0), Int32(CK_ACT_Q8_K)] {
            var reference: [UInt8]?
            for isa in availableISAs {
                XCTAssertTrue(KernelISA.select(isa))
                var blocks = [ck_q8_block](repeating: ck_q8_block(), count: x.count / 32)
                ck_quantize_q8(x, &blocks, Int64(x.count), mode)
                let bytes = blocks.withUnsafeBytes { Array($0) }
                if let reference { XCTAssertEqual(bytes, reference, "mode \(mode) on \(isa)") } else { reference = bytes }
            }
        }
    }

    /// The quantized dot product equals the f32 dot of the dequantized row with the
    /// q8-rounded activation, up to float rounding, on every implementation.
    func testDotProductsMatchDequantizedReference() throws {
        let context = KernelContext(threads: 2)
        for golden in try loadGoldens() {
            let x = randomFloats(golden.columns, seed: UInt64(golden.format.rawValue) + 100)
            // The activation as the kernels see it: q8 blocks decoded back to floats.
            var rounded = x
            if ck_uses_q8_activations(Int32(golden.format.rawValue)) != 0 {
                var blocks = [ck_q8_block](repeating: ck_q8_block(), count: golden.columns / 32)
                ck_quantize_q8(x, &blocks, Int64(golden.columns), ck_activation_mode(Int32(golden.format.rawValue)))
                for (b, block) in blocks.enumerated() {
                    withUnsafeBytes(of: block.qs) { qs in
                        for j in 0..<32 { rounded[32 * b + j] = block.d * Float(Int8(bitPattern: qs[j])) }
                    }
                }
            }
            var expected = [Float](), magnitude = [Float]()
            for r in 0..<golden.rows {
                var sum = 0.0, absSum = 0.0
                for c in 0..<golden.columns {
                    let product = Double(golden.values[r * golden.columns + c]) * Double(rounded[c])
                    sum += product
                    absSum += abs(product)
                }
                expected.append(Float(sum))
                magnitude.append(Float(absSum))
            }
            for isa in availableISAs {
                XCTAssertTrue(KernelISA.select(isa))
                try golden.blocks.withUnsafeBytes { bytes in
                    let matrix = try WeightMatrix(format: golden.format, bytes: bytes,
                                                  rows: golden.rows, columns: golden.columns)
                    var y = [Float](repeating: .nan, count: golden.rows)
                    y.withUnsafeMutableBufferPointer { matrix.matvec(x, into: $0.baseAddress!, context: context) }
                    for r in 0..<golden.rows {
                        XCTAssertEqual(y[r], expected[r], accuracy: 1e-5 * magnitude[r],
                                       "\(golden.format) row \(r) on \(isa)")
                    }
                    // The single-row entry point computes exactly what matvec does.
                    if ck_uses_q8_activations(Int32(golden.format.rawValue)) != 0 {
                        var blocks = [ck_q8_block](repeating: ck_q8_block(), count: golden.columns / 32)
                        ck_quantize_q8(x, &blocks, Int64(golden.columns), ck_activation_mode(Int32(golden.format.rawValue)))
                        XCTAssertEqual(ck_vec_dot(Int32(golden.format.rawValue), bytes.baseAddress!, nil, blocks, Int64(golden.columns)), y[0])
                    }
                }
            }
        }
    }

    /// Batched products agree with the exact f32 product (within int8 activation rounding for
    /// quantized formats; float formats through sgemm above the small-batch limit), and a
    /// quantized batch — small (in-place kernels) or large (the tiled kernel from 32 vectors on
    /// AVX-512) — equals one matvec per vector exactly.
    func testMatmulAgreesWithMatvecForSmallAndLargeBatches() throws {
        let context = KernelContext(threads: 2)
        for golden in try loadGoldens() {
            try golden.blocks.withUnsafeBytes { bytes in
                let matrix = try WeightMatrix(format: golden.format, bytes: bytes,
                                              rows: golden.rows, columns: golden.columns)
                for count in [3, 9, 40] {
                    let x = randomFloats(count * golden.columns, seed: 7)
                    let batched = product(matrix, x, count: count, context: context)
                    if matrix.isQuantized {
                        XCTAssertEqual(batched, separateProducts(matrix, x, count: count, context: context),
                                       "\(golden.format) batch \(count)")
                    }
                    for v in 0..<count {
                        for r in 0..<golden.rows {
                            // Exact reference: f32 values against the unrounded activation.
                            var sum = 0.0, absSum = 0.0
                            for c in 0..<golden.columns {
                                let p = Double(golden.values[r * golden.columns + c]) * Double(x[v * golden.columns + c])
                                sum += p
                                absSum += abs(p)
                            }
                            // The int8 path rounds activations (≈ 1/254 relative per element).
                            let tolerance = matrix.isQuantized ? 0.02 * absSum : 1e-5 * absSum
                            XCTAssertEqual(Double(batched[v * golden.rows + r]), sum, accuracy: tolerance,
                                           "\(golden.format) batch \(count) vector \(v) row \(r)")
                        }
                    }
                }
            }
        }
    }

    /// The kernels take rows in groups (16 on AVX-512, 4 on AVX2, the rest unpacked) and
    /// vectors four at a time (the tiled kernel: 32 and more): counts that leave partial groups
    /// still give each vector's matvec exactly.
    func testBatchesWithPartialRowAndVectorGroups() throws {
        let context = KernelContext(threads: 2)
        for golden in try loadGoldens() where ck_uses_q8_activations(Int32(golden.format.rawValue)) != 0 {
            let rowBytes = golden.blocks.count / golden.rows
            for rows in [1, 6, 15, 17, 40] {
                // Rows cycle through the golden's rows.
                let blocks = (0..<rows).flatMap { golden.blocks[(($0 % golden.rows) * rowBytes)..<(($0 % golden.rows + 1) * rowBytes)] }
                try blocks.withUnsafeBytes { bytes in
                    let matrix = try WeightMatrix(format: golden.format, bytes: bytes, rows: rows, columns: golden.columns)
                    for count in [3, 6, 11, 13, 33] {
                        let x = randomFloats(count * golden.columns, seed: 41)
                        XCTAssertEqual(product(matrix, x, count: count, context: context),
                                       separateProducts(matrix, x, count: count, context: context),
                                       "\(golden.format) \(rows) rows, batch \(count)")
                    }
                }
            }
        }
    }

    /// Every quantized format has one arithmetic whatever the kernel: one vector, a few (the
    /// in-place group kernels), many (the tiled kernel) and the unpacked rows left over give
    /// the same products as one matvec per vector, on every implementation, bit for bit. The
    /// rows all differ, so a row put in the wrong lane shows.
    func testEveryQuantizedFormatGivesTheSameProductsWhateverTheKernel() throws {
        let context = KernelContext(threads: 2)
        // Each format's f16 fields (scales, minimums) per block, set to small finite values.
        let halves: [(GGMLType, columns: Int, offsets: [Int])] = [
            (.q4_0, 96, [0]), (.q4_1, 96, [0, 2]), (.q5_0, 96, [0]), (.q5_1, 96, [0, 2]), (.q8_0, 96, [0]),
            (.q4_K, 512, [0, 2]), (.q5_K, 512, [0, 2]), (.q6_K, 512, [208]),
        ]
        for (format, columns, offsets) in halves {
            let type = Int32(format.rawValue)
            let blockBytes = Int(ck_block_bytes(type))
            for rows in [7, 16, 37] {
                var generator = SplitMix64(seed: UInt64(rows) * 31 + UInt64(type))
                var blocks = (0..<(rows * Int(ck_row_bytes(type, Int64(columns))))).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
                for start in stride(from: 0, to: blocks.count, by: blockBytes) {
                    for offset in offsets {
                        let half = ck_f32_to_fp16(Float(generator.next() % 1000 + 1) * 1e-5)
                        blocks[start + offset] = UInt8(half & 0xFF)
                        blocks[start + offset + 1] = UInt8(half >> 8)
                    }
                }
                try blocks.withUnsafeBytes { bytes in
                    let matrix = try WeightMatrix(format: format, bytes: bytes, rows: rows, columns: columns)
                    for count in [1, 3, 6, 33] {
                        let x = randomFloats(count * columns, seed: UInt64(count))
                        var reference: [Float]?
                        for isa in availableISAs {
                            XCTAssertTrue(KernelISA.select(isa))
                            let batched = product(matrix, x, count: count, context: context)
                            XCTAssertEqual(batched, separateProducts(matrix, x, count: count, context: context),
                                           "\(format) \(rows) rows, batch \(count) on \(isa)")
                            if let reference { XCTAssertEqual(batched, reference, "\(format) \(rows) rows, batch \(count) on \(isa)") }
                            reference = batched
                        }
                    }
                }
            }
        }
    }

    /// Quantized products, f32 dot/axpy and f16 rounding give bit-identical results on every
    /// implementation (exact integer lane sums, the same fused float operations in the same
    /// order), so an AVX2-only or non-x86 machine reproduces this one's outputs.
    func testResultsAreIdenticalOnEveryImplementation() throws {
        let isas = availableISAs
        guard isas.count > 1 else { throw XCTSkip("only one implementation on this CPU") }
        let context = KernelContext(threads: 2)
        for golden in try loadGoldens() where ck_uses_q8_activations(Int32(golden.format.rawValue)) != 0 {
            try golden.blocks.withUnsafeBytes { bytes in
                let matrix = try WeightMatrix(format: golden.format, bytes: bytes, rows: golden.rows, columns: golden.columns)
                let x = randomFloats(40 * golden.columns, seed: 21)
                for count in [1, 5, 9, 40] {
                    var results: [[Float]] = []
                    for isa in isas {
                        XCTAssertTrue(KernelISA.select(isa))
                        results.append(product(matrix, x, count: count, context: context))
                    }
                    for r in results.dropFirst() { XCTAssertEqual(r, results[0], "\(golden.format) batch \(count)") }
                }
            }
        }
        // Values spanning normal, subnormal and overflowing f16 ranges.
        let a = randomFloats(1000, seed: 5).enumerated().map { $0.element * Float(sign: .plus, exponent: $0.offset % 40 - 28, significand: 1) }
        let b = randomFloats(1000, seed: 6)
        var dots: [Float] = [], axpys: [[Float]] = [], rounded: [[Float]] = []
        for isa in isas {
            XCTAssertTrue(KernelISA.select(isa))
            dots.append(VectorOps.dot(a, b, count: 1000))
            var y = b
            y.withUnsafeMutableBufferPointer { VectorOps.axpy(0.37, a, $0.baseAddress!, count: 1000) }
            axpys.append(y)
            var r = a
            r.withUnsafeMutableBufferPointer { HalfFloat.roundToHalf($0) }
            rounded.append(r)
        }
        XCTAssertEqual(Set(dots).count, 1, "\(dots)")
        for i in 1..<isas.count {
            XCTAssertEqual(axpys[i], axpys[0])
            XCTAssertEqual(rounded[i].map(\.bitPattern), rounded[0].map(\.bitPattern))
        }
    }

    /// A group of matrices in one pool pass gives exactly what separate products give, for one
    /// vector and for batches (one shared quantization of the input).
    func testMultiplyGroupEqualsSeparateProducts() throws {
        let context = KernelContext(threads: 2)
        let goldens = try loadGoldens()
        try goldens[0].blocks.withUnsafeBytes { first in
            try goldens[5].blocks.withUnsafeBytes { second in
                try goldens[7].blocks.withUnsafeBytes { third in
                    let mixed = try [(goldens[0], first), (goldens[5], second), (goldens[7], third)].map {
                        try WeightMatrix(format: $0.0.format, bytes: $0.1, rows: $0.0.rows, columns: $0.0.columns)
                    }
                    // Mixed formats, and one format three times (which shares the quantized input).
                    for (matrices, count) in [(mixed, 1), (mixed, 20), (mixed, 40), (Array(repeating: mixed[1], count: 3), 40)] {
                        let x = randomFloats(count * matrices[0].columns, seed: 33)
                        let outputs = matrices.map { UnsafeMutablePointer<Float>.allocate(capacity: count * $0.rows) }
                        defer { outputs.forEach { $0.deallocate() } }
                        WeightMatrix.multiplyGroup(matrices, x, count: count, into: outputs, context: context)
                        for (matrix, output) in zip(matrices, outputs) {
                            XCTAssertEqual(Array(UnsafeBufferPointer(start: output, count: count * matrix.rows)),
                                           product(matrix, x, count: count, context: context),
                                           "\(matrix.format) × \(count)")
                        }
                    }
                }
            }
        }
    }

    func testF32MatvecAndSgemmPathMatchNaiveProduct() throws {
        let (rows, columns) = (37, 70)
        let weights = randomFloats(rows * columns, seed: 3)
        let context = KernelContext(threads: 2)
        try weights.withUnsafeBytes { bytes in
            let matrix = try WeightMatrix(format: .f32, bytes: bytes, rows: rows, columns: columns)
            for count in [1, 6] {
                let x = randomFloats(count * columns, seed: 4)
                var y = [Float](repeating: .nan, count: count * rows)
                y.withUnsafeMutableBufferPointer {
                    if count == 1 {
                        matrix.matvec(x, into: $0.baseAddress!, context: context)
                    } else {
                        matrix.matmul(x, count: count, into: $0.baseAddress!, context: context)
                    }
                }
                for v in 0..<count {
                    for r in 0..<rows {
                        var sum: Float = 0
                        for c in 0..<columns { sum += weights[r * columns + c] * x[v * columns + c] }
                        XCTAssertEqual(y[v * rows + r], sum, accuracy: 1e-4)
                    }
                }
            }
        }
    }

    func testRejectsUnsupportedFormatsAndWrongSizes() throws {
        let bytes = [UInt8](repeating: 0, count: 34)
        try bytes.withUnsafeBytes { raw in
            XCTAssertThrowsError(try WeightMatrix(format: .q2_K, bytes: raw, rows: 1, columns: 256))
            XCTAssertThrowsError(try WeightMatrix(format: .q8_0, bytes: raw, rows: 1, columns: 48))
            XCTAssertThrowsError(try WeightMatrix(format: .q8_0, bytes: raw, rows: 2, columns: 32))
            XCTAssertNoThrow(try WeightMatrix(format: .q8_0, bytes: raw, rows: 1, columns: 32))
        }
    }

    func testHalfConversionsRoundTripEveryFiniteValue() {
        for bits in UInt16.min...UInt16.max {
            let value = HalfFloat.f16ToFloat(bits)
            if value.isNaN { continue }
            XCTAssertEqual(HalfFloat.floatToF16(value), bits, "f16 \(bits)")
        }
        XCTAssertEqual(HalfFloat.bf16ToFloat(0x3F80), 1)
        XCTAssertEqual(HalfFloat.floatToF16(65520), 0x7C00)  // rounds to infinity
    }

    func testVectorOpsMatchPlainLoops() {
        let a = randomFloats(1000, seed: 9), b = randomFloats(1000, seed: 10)
        var expected: Float = 0
        for i in 0..<1000 { expected += a[i] * b[i] }
        XCTAssertEqual(VectorOps.dot(a, b, count: 1000), expected, accuracy: 1e-3)
        var y = b
        y.withUnsafeMutableBufferPointer { VectorOps.axpy(0.5, a, $0.baseAddress!, count: 1000) }
        for i in 0..<1000 { XCTAssertEqual(y[i], b[i] + 0.5 * a[i], accuracy: 1e-6) }
    }

    /// The slot forms (decode over a cache's rows in place, slots out of order as a ring holds
    /// them), f16 and f32, equal per-pair `dot` and per-key `axpy` calls.
    func testCacheSlotAttentionKernelsEqualPerPairCallsBitForBit() {
        for isa in availableISAs {
            XCTAssertTrue(KernelISA.select(isa))
            for (queries, keys, count) in [(4, 9, 256), (2, 5, 64), (4, 3, 48), (1, 17, 256), (5, 8, 128)] {
                let q = randomFloats(queries * count, seed: UInt64(queries * 100 + keys))
                // Rows of `count + 16` elements; the products read `count` of them from element 8.
                let rowStride = count + 16
                let floats = randomFloats(keys * rowStride, seed: UInt64(keys * 7 + count))
                let halves = floats.map { ck_f32_to_fp16($0) }
                // A permutation of the rows (7 shares no factor with these key counts), out of
                // order as a ring's slots are.
                let slots = (0..<keys).map { Int32(($0 * 7 + 2) % keys) }
                floats.withUnsafeBufferPointer { f in
                    halves.withUnsafeBufferPointer { h in
                        for half in [false, true] {
                            let base = half ? UnsafeRawPointer(h.baseAddress! + 8) : UnsafeRawPointer(f.baseAddress! + 8)
                            func row(_ j: Int) -> Int { Int(slots[j]) * rowStride + 8 }
                            var scores = [Float](repeating: .nan, count: queries * keys)
                            VectorOps.attentionScores(q, queries: queries, queryStride: count, rows: base, half: half, slots: slots,
                                                      rowStride: rowStride, keys: keys, count: count, into: &scores, scoreStride: keys)
                            for t in 0..<queries {
                                for j in 0..<keys {
                                    let expected = q.withUnsafeBufferPointer { qb in
                                        half ? VectorOps.dot(qb.baseAddress! + t * count, half: h.baseAddress! + row(j), count: count)
                                            : VectorOps.dot(qb.baseAddress! + t * count, f.baseAddress! + row(j), count: count)
                                    }
                                    XCTAssertEqual(scores[t * keys + j].bitPattern, expected.bitPattern,
                                                   "\(isa) half \(half) score \(t),\(j) of \(queries)×\(keys)×\(count)")
                                }
                            }
                            var weights = scores.map { abs($0) / 10 }
                            for i in stride(from: 0, to: weights.count, by: 3) { weights[i] = 0 }
                            var out = [Float](repeating: .nan, count: queries * count)
                            VectorOps.attentionMix(weights, queries: queries, weightStride: keys, rows: base, half: half, slots: slots,
                                                   rowStride: rowStride, keys: keys, count: count, into: &out, outStride: count)
                            for t in 0..<queries {
                                var expected = [Float](repeating: 0, count: count)
                                for j in 0..<keys where weights[t * keys + j] != 0 {
                                    if half {
                                        VectorOps.axpy(weights[t * keys + j], half: h.baseAddress! + row(j), &expected, count: count)
                                    } else {
                                        VectorOps.axpy(weights[t * keys + j], f.baseAddress! + row(j), &expected, count: count)
                                    }
                                }
                                XCTAssertEqual(Array(out[(t * count)..<((t + 1) * count)]).map(\.bitPattern), expected.map(\.bitPattern),
                                               "\(isa) half \(half) mix row \(t) of \(queries)×\(keys)×\(count)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// The blocked attention kernels give exactly the per-pair `dot` and per-key `axpy` results
    /// (so prefill and decode agree bit for bit), on every implementation, for shapes with and
    /// without whole register blocks, with zero weights among the keys.
    func testAttentionKernelsEqualPerPairCallsBitForBit() {
        for isa in availableISAs {
            XCTAssertTrue(KernelISA.select(isa))
            for (queries, keys, count) in [(9, 11, 256), (4, 4, 64), (5, 3, 48), (1, 17, 256), (8, 8, 72)] {
                let rowStride = count + 16
                let q = randomFloats(queries * rowStride, seed: UInt64(queries * 100 + keys))
                let k = randomFloats(keys * rowStride, seed: UInt64(keys * 7 + count))
                var scores = [Float](repeating: .nan, count: queries * keys)
                VectorOps.attentionScores(q, queries: queries, queryStride: rowStride, rows: k, rowStride: rowStride, keys: keys,
                                          count: count, into: &scores, scoreStride: keys)
                for t in 0..<queries {
                    for j in 0..<keys {
                        let expected = q.withUnsafeBufferPointer { qb in
                            k.withUnsafeBufferPointer { kb in
                                VectorOps.dot(qb.baseAddress! + t * rowStride, kb.baseAddress! + j * rowStride, count: count)
                            }
                        }
                        XCTAssertEqual(scores[t * keys + j].bitPattern, expected.bitPattern, "\(isa) score \(t),\(j) of \(queries)×\(keys)×\(count)")
                    }
                }
                // Weights as a softmax leaves them, some exactly zero (masked keys).
                var weights = scores.map { abs($0) / 10 }
                for i in stride(from: 0, to: weights.count, by: 3) { weights[i] = 0 }
                var out = [Float](repeating: .nan, count: queries * rowStride)
                VectorOps.attentionMix(weights, queries: queries, weightStride: keys, rows: k, rowStride: rowStride, keys: keys,
                                       count: count, into: &out, outStride: rowStride)
                for t in 0..<queries {
                    var expected = [Float](repeating: 0, count: count)
                    for j in 0..<keys where weights[t * keys + j] != 0 {
                        k.withUnsafeBufferPointer { kb in
                            VectorOps.axpy(weights[t * keys + j], kb.baseAddress! + j * rowStride, &expected, count: count)
                        }
                    }
                    XCTAssertEqual(Array(out[(t * rowStride)..<(t * rowStride + count)]).map(\.bitPattern), expected.map(\.bitPattern),
                                   "\(isa) mix row \(t) of \(queries)×\(keys)×\(count)")
                }
            }
        }
    }

    /// llama.cpp's GELU: 0 at or below −10, identity at or above 10, else the f16-rounded GELU
    /// of the f16-rounded input; times `up`; the same on every implementation.
    func testHalfPrecisionGatedGeluFollowsTheF16Table() {
        let inputs: [Float] = (0..<400).map { Float($0) * 0.061 - 12.2 } + [-10, 10, 0, -0.0, 1e-8, 65000]
        let up = randomFloats(inputs.count, seed: 77)
        var expected = [Float]()
        for (x, u) in zip(inputs, up) {
            let g: Float
            if x <= -10 { g = 0 } else if x >= 10 { g = x } else {
                let h = HalfFloat.f16ToFloat(HalfFloat.floatToF16(x))
                let gelu = 0.5 * h * (1 + tanhf(0.797_884_560_802_865_4 * h * (1 + 0.044715 * h * h)))
                g = HalfFloat.f16ToFloat(HalfFloat.floatToF16(gelu))
            }
            expected.append(g * u)
        }
        for isa in availableISAs {
            XCTAssertTrue(KernelISA.select(isa))
            var gate = inputs
            gate.withUnsafeMutableBufferPointer { Dense.gatedGelu($0, up: up, halfPrecision: true) }
            XCTAssertEqual(gate.map(\.bitPattern), expected.map(\.bitPattern), "\(isa)")
        }
    }

    /// Products with f16 operands read in place (the f16 KV cache in decode) equal the f32
    /// products of the widened values bit for bit, on every implementation (also for lengths
    /// that are not a multiple of 16).
    func testHalfOperandProductsEqualWidenedProducts() {
        for isa in availableISAs {
            XCTAssertTrue(KernelISA.select(isa))
            for count in [256, 72, 37] {
                let a = randomFloats(count, seed: UInt64(count)), b = randomFloats(count, seed: UInt64(count) + 1)
                let halves = b.map { HalfFloat.floatToF16($0) }
                let widened = halves.map { HalfFloat.f16ToFloat($0) }
                XCTAssertEqual(VectorOps.dot(a, half: halves, count: count).bitPattern,
                               VectorOps.dot(a, widened, count: count).bitPattern, "\(isa) dot \(count)")
                var viaHalf = a, viaWidened = a
                VectorOps.axpy(0.37, half: halves, &viaHalf, count: count)
                VectorOps.axpy(0.37, widened, &viaWidened, count: count)
                XCTAssertEqual(viaHalf.map(\.bitPattern), viaWidened.map(\.bitPattern), "\(isa) axpy \(count)")
            }
        }
    }

    /// argmax is the first largest value, as a sequential scan finds it, NaNs passed over.
    func testArgmaxIsTheFirstLargestValue() {
        func scan(_ v: [Float]) -> Int {
            var best = 0
            for i in v.indices where v[i] > v[best] { best = i }
            return best
        }
        var cases: [[Float]] = [[], [3], randomFloats(1000, seed: 5), [1, 5, 5, 2], [-0.0, 0.0, -0.0]]
        var withTies = randomFloats(333, seed: 6)
        withTies[17] = 9; withTies[300] = 9; withTies[40] = .nan
        cases += [withTies, [.nan, 1, 2], [1, .nan, 3, 3]]
        for isa in availableISAs {
            XCTAssertTrue(KernelISA.select(isa))
            for v in cases {
                XCTAssertEqual(v.withUnsafeBufferPointer { VectorOps.argmax($0) }, scan(v), "\(isa) \(v.prefix(4))")
            }
        }
    }
}
