import Foundation

/// Element types a safetensors header may name.
public enum SafetensorsDType: String, Sendable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"

    public var byteSize: Int {
        switch self {
        case .f64, .i64: 8
        case .f32, .i32: 4
        case .f16, .bf16, .i16: 2
        case .i8, .u8, .bool, .f8e4m3, .f8e5m2: 1
        }
    }
}

/// One tensor of a safetensors file: its header entry and its bytes inside the mapping.
public struct SafetensorsTensor: @unchecked Sendable {
    public let name: String
    public let dtype: SafetensorsDType
    /// Row-major shape, outermost first (PyTorch order).
    public let shape: [Int]
    /// The tensor's bytes inside the file mapping (kept alive by the owning file).
    public let bytes: UnsafeRawBufferPointer

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A memory-mapped `.safetensors` file with a validated header.
///
/// Format: an 8-byte little-endian header length `n`, `n` bytes of JSON mapping names to
/// `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the data after the
/// header), then the data. Every offset is checked against the file size and against
/// `shape × dtype` before any tensor is exposed; tensors are never copied.
public final class SafetensorsFile: @unchecked Sendable {
    public let file: MappedFile
    /// Tensors by name.
    public let tensors: [String: SafetensorsTensor]
    /// The optional `__metadata__` string map.
    public let metadata: [String: String]

    /// Headers above this size are rejected as corrupt (real ones are well under 10 MB).
    static let maximumHeaderBytes = 100 << 20

    public convenience init(path: String) throws {
        try self.init(mappedFile: MappedFile(path: path))
    }

    public init(mappedFile: MappedFile) throws {
        file = mappedFile
        let path = mappedFile.path
        let bytes = mappedFile.bytes
        func fail(_ message: String) -> WeightsError { WeightsError(path: path, message: message) }

        guard bytes.count >= 8 else { throw fail("too short for a safetensors header (\(bytes.count) bytes)") }
        let declared = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        guard declared >= 2, declared <= UInt64(Self.maximumHeaderBytes), declared <= UInt64(bytes.count - 8) else {
            throw fail("header length \(declared) does not fit the file (\(bytes.count) bytes)")
        }
        let headerLength = Int(declared)
        let dataStart = 8 + headerLength
        let dataLength = bytes.count - dataStart
        let headerData = Data(bytes: bytes.baseAddress! + 8, count: headerLength)

        let entries: [String: HeaderItem]
        do {
            entries = try JSONDecoder().decode([String: HeaderItem].self, from: headerData)
        } catch {
            throw fail("header is not a JSON object of tensor entries: \(error)")
        }

        var tensors: [String: SafetensorsTensor] = [:]
        var metadata: [String: String] = [:]
        for (name, item) in entries {
            let entry: HeaderEntry
            switch item {
            case .metadata(let map):
                guard name == "__metadata__" else { throw fail("entry \(name) is not a tensor") }
                metadata = map
                continue
            case .tensor(let tensorEntry):
                guard name != "__metadata__" else { throw fail("__metadata__ is not a string map") }
                entry = tensorEntry
            }
            guard let dtype = SafetensorsDType(rawValue: entry.dtype) else {
                throw fail("\(name): unknown dtype \(entry.dtype)")
            }
            var elements = 1
            for dimension in entry.shape {
                guard dimension >= 0 else { throw fail("\(name): negative dimension in \(entry.shape)") }
                let (product, overflow) = elements.multipliedReportingOverflow(by: dimension)
                guard !overflow else { throw fail("\(name): element count overflows") }
                elements = product
            }
            guard entry.dataOffsets.count == 2 else { throw fail("\(name): data_offsets must be two integers") }
            let begin = entry.dataOffsets[0], end = entry.dataOffsets[1]
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw fail("\(name): data_offsets [\(begin), \(end)] outside the \(dataLength) data bytes")
            }
            let (byteCount, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize)
            guard !overflow, byteCount == end - begin else {
                throw fail("\(name): \(end - begin) bytes for shape \(entry.shape) of \(entry.dtype)")
            }
            tensors[name] = SafetensorsTensor(
                name: name, dtype: dtype, shape: entry.shape,
                bytes: UnsafeRawBufferPointer(rebasing: bytes[(dataStart + begin)..<(dataStart + end)]))
        }
        self.tensors = tensors
        self.metadata = metadata
    }

}

/// A header entry: a tensor description, or the `__metadata__` string map.
private enum HeaderItem: Decodable {
    case tensor(HeaderEntry)
    case metadata([String: String])

    init(from decoder: Decoder) throws {
        if let entry = try? HeaderEntry(from: decoder) {
            self = .tensor(entry)
        } else {
            self = .metadata(try [String: String](from: decoder))
        }
    }
}

private struct HeaderEntry: Decodable {
    let dtype: String
    let shape: [Int]
    let dataOffsets: [Int]

    enum CodingKeys: String, CodingKey {
        case dtype, shape
        case dataOffsets = "data_offsets"
    }
}

/// A checkpoint made of one or more safetensors files: a single `.safetensors` file, a folder
/// with `model.safetensors`, or a folder with `model.safetensors.index.json` and its shards.
public final class SafetensorsCheckpoint: @unchecked Sendable {
    /// The files, each mapped once.
    public let files: [SafetensorsFile]
    /// Every tensor of every file, by name.
    public let tensors: [String: SafetensorsTensor]

    /// - Parameter path: a `.safetensors` file or a folder holding the checkpoint.
    /// - Throws: `WeightsError` for a missing, malformed or inconsistent file, or a tensor
    ///   defined twice.
    public init(path: String) throws {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw WeightsError(path: path, message: "no such file or folder")
        }
        var paths: [String] = []
        if !isFolder.boolValue {
            paths = [path]
        } else {
            let folder = URL(fileURLWithPath: path)
            let index = folder.appendingPathComponent("model.safetensors.index.json")
            let single = folder.appendingPathComponent("model.safetensors")
            if FileManager.default.fileExists(atPath: index.path) {
                paths = try Self.shardPaths(index: index, folder: folder)
            } else if FileManager.default.fileExists(atPath: single.path) {
                paths = [single.path]
            } else {
                throw WeightsError(path: path, message: "no model.safetensors or model.safetensors.index.json")
            }
        }
        var files: [SafetensorsFile] = []
        var tensors: [String: SafetensorsTensor] = [:]
        for shardPath in paths {
            let file = try SafetensorsFile(path: shardPath)
            for (name, tensor) in file.tensors {
                guard tensors[name] == nil else {
                    throw WeightsError(path: shardPath, message: "tensor \(name) defined in two files")
                }
                tensors[name] = tensor
            }
            files.append(file)
        }
        self.files = files
        self.tensors = tensors
    }

    /// The distinct shard files named by an index's `weight_map`, in sorted order.
    private static func shardPaths(index: URL, folder: URL) throws -> [String] {
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(contentsOf: index))
        } catch {
            throw WeightsError(path: index.path, message: "index is not readable JSON")
        }
        guard let root = json as? [String: Any], let map = root["weight_map"] as? [String: Any] else {
            throw WeightsError(path: index.path, message: "index has no weight_map object")
        }
        var shards = Set<String>()
        for (name, value) in map {
            guard let shard = value as? String, !shard.isEmpty, !shard.contains("/"), shard != "..", shard != "." else {
                throw WeightsError(path: index.path, message: "weight_map entry \(name) is not a file name in the folder")
            }
            shards.insert(shard)
        }
        guard !shards.isEmpty else { throw WeightsError(path: index.path, message: "weight_map is empty") }
        return shards.sorted().map { folder.appendingPathComponent($0).path }
    }

    public func tensor(_ name: String) -> SafetensorsTensor? { tensors[name] }
}
