import Foundation
import XCTest
import GemmaWeights

/// The safetensors reader on valid, sharded and broken files: broken ones throw, never crash.
final class SafetensorsTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("safetensors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    /// A file with the given header JSON (padded with spaces as writers do) and data bytes.
    func write(_ name: String, header: String, data: [UInt8], declaredLength: UInt64? = nil) throws -> String {
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        var length = (declaredLength ?? UInt64(headerBytes.count)).littleEndian
        var file = Data(bytes: &length, count: 8)
        file.append(contentsOf: headerBytes)
        file.append(contentsOf: data)
        let url = folder.appendingPathComponent(name)
        try file.write(to: url)
        return url.path
    }

    func floats(_ values: [Float]) -> [UInt8] {
        values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian) { Array($0) } }
    }

    func testReadsTensorsInPlace() throws {
        let header = #"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]}}"#
        let path = try write("ok.safetensors", header: header, data: floats([1, 2, 3, 4]) + [0x80, 0x3F, 0, 0x40, 0x40, 0x40])
        let file = try SafetensorsFile(path: path)
        XCTAssertEqual(file.metadata["format"], "pt")
        let a = try XCTUnwrap(file.tensors["a"])
        XCTAssertEqual(a.shape, [2, 2])
        XCTAssertEqual(a.dtype, .f32)
        XCTAssertEqual(a.bytes.loadUnaligned(fromByteOffset: 12, as: Float.self), 4)
        let b = try XCTUnwrap(file.tensors["b"])
        XCTAssertEqual(b.dtype, .bf16)
        XCTAssertEqual(b.bytes.count, 6)
        // The bytes point into the mapping, not a copy.
        let mapped = file.file.bytes
        XCTAssertTrue(a.bytes.baseAddress! >= mapped.baseAddress! && a.bytes.baseAddress! < mapped.baseAddress! + mapped.count)
    }

    func testShardedFolderWithIndex() throws {
        _ = try write("model-00001-of-00002.safetensors", header: #"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: floats([7]))
        _ = try write("model-00002-of-00002.safetensors", header: #"{"y":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#, data: [0, 0x3C, 0, 0x40])
        let index = #"{"metadata":{},"weight_map":{"x":"model-00001-of-00002.safetensors","y":"model-00002-of-00002.safetensors"}}"#
        try Data(index.utf8).write(to: folder.appendingPathComponent("model.safetensors.index.json"))
        let checkpoint = try SafetensorsCheckpoint(path: folder.path)
        XCTAssertEqual(checkpoint.files.count, 2)
        XCTAssertEqual(checkpoint.tensor("x")?.bytes.loadUnaligned(as: Float.self), 7)
        XCTAssertEqual(checkpoint.tensor("y")?.dtype, .f16)
    }

    func testBrokenFilesThrow() throws {
        let good = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        let cases: [(String, () throws -> String)] = [
            ("empty", { try self.write("e", header: "", data: [], declaredLength: 0) }),
            ("shorter than the length field", {
                let url = self.folder.appendingPathComponent("tiny")
                try Data([1, 2, 3]).write(to: url)
                return url.path
            }),
            ("header length past EOF", { try self.write("h", header: good, data: self.floats([1, 2]), declaredLength: 1 << 40) }),
            ("truncated data", { try self.write("t", header: good, data: self.floats([1])) }),
            ("offsets past EOF", { try self.write("o", header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4000]}}"#, data: self.floats([1, 2])) }),
            ("offsets reversed", { try self.write("r", header: #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, data: self.floats([1, 2])) }),
            ("size disagrees with shape", { try self.write("s", header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: self.floats([1, 2])) }),
            ("bad JSON", { try self.write("j", header: #"{"a":{"dtype":"F32","#, data: self.floats([1, 2])) }),
            ("not an object", { try self.write("n", header: "[1,2]", data: []) }),
            ("unknown dtype", { try self.write("u", header: #"{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,8]}}"#, data: self.floats([1, 2])) }),
            ("negative dimension", { try self.write("d", header: #"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: self.floats([1, 2])) }),
            ("overflowing shape", { try self.write("v", header: #"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#, data: self.floats([1, 2])) }),
            ("fractional offset", { try self.write("f", header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,7.5]}}"#, data: self.floats([1, 2])) }),
        ]
        for (label, make) in cases {
            let path = try make()
            XCTAssertThrowsError(try SafetensorsFile(path: path), label) { error in
                XCTAssertTrue(error is WeightsError, "\(label): \(error)")
            }
        }
        // The good header with the right data still reads.
        XCTAssertNoThrow(try SafetensorsFile(path: write("g", header: good, data: floats([1, 2]))))
    }

    func testBadIndexThrows() throws {
        try Data(#"{"weight_map":{"x":"../escape.safetensors"}}"#.utf8)
            .write(to: folder.appendingPathComponent("model.safetensors.index.json"))
        XCTAssertThrowsError(try SafetensorsCheckpoint(path: folder.path))
        try Data("not json".utf8).write(to: folder.appendingPathComponent("model.safetensors.index.json"))
        XCTAssertThrowsError(try SafetensorsCheckpoint(path: folder.path))
        XCTAssertThrowsError(try SafetensorsCheckpoint(path: folder.appendingPathComponent("missing").path))
    }
}
