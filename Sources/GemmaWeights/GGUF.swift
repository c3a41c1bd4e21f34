/// Tensor element encodings, numbered as ggml numbers them in `ggml_type` (gaps are numbers
/// ggml has retired).
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21
    case iq2_s = 22, iq4_xs = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28
    case iq1_m = 29, bf16 = 30, tq1_0 = 34, tq2_0 = 35, mxfp4 = 39, nvfp4 = 40, q1_0 = 41

    /// Number of elements one block encodes. A row length (`ne0`) must be a multiple of it.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16, .i8, .i16, .i32, .i64, .f64: 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_nl, .mxfp4: 32
        case .nvfp4: 64
        case .q1_0: 128
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .iq2_xxs, .iq2_xs, .iq3_xxs, .iq1_s,
             .iq3_s, .iq2_s, .iq4_xs, .iq1_m, .tq1_0, .tq2_0: 256
        }
    }

    /// Bytes one block occupies (sizes of ggml's `block_*` structs).
    public var bytesPerBlock: Int {
        switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .i8: 1
        case .i16: 2
        case .i32: 4
        case .i64, .f64: 8
        case .q4_0, .iq4_nl: 18      // f16 scale + 32 nibbles
        case .q4_1: 20               // f16 scale and min + 32 nibbles
        case .q5_0: 22               // f16 scale + 32 high bits + 32 nibbles
        case .q5_1: 24
        case .q8_0: 34               // f16 scale + 32 bytes
        case .q8_1: 36               // f16 scale and sum + 32 bytes
        case .q2_K: 84
        case .q3_K: 110
        case .q4_K: 144
        case .q5_K: 176
        case .q6_K: 210
        case .q8_K: 292
        case .iq2_xxs: 66
        case .iq2_xs: 74
        case .iq3_xxs: 98
        case .iq1_s: 50
        case .iq3_s: 110
        case .iq2_s: 82
        case .iq4_xs: 136
        case .iq1_m: 56
        case .tq1_0: 54
        case .tq2_0: 66
        case .mxfp4: 17
        case .nvfp4: 36
        case .q1_0: 18
        }
    }
}

/// One tensor's directory entry.
public struct GGUFTensorInfo: Sendable {
    public let name: String
    /// Shape in ggml order: `dimensions[0]` (ne0) is the row length, the fastest-varying axis.
    public let dimensions: [Int]
    public let type: GGMLType
    /// Absolute offset of the first byte in the file (already includes the data section start).
    public let offset: Int
    /// Bytes the tensor occupies: `elementCount / blockSize * bytesPerBlock`.
    public let byteCount: Int

    public init(name: String, dimensions: [Int], type: GGMLType, offset: Int, byteCount: Int) {
        self.name = name
        self.dimensions = dimensions
        self.type = type
        self.offset = offset
        self.byteCount = byteCount
    }

    /// Product of the dimensions (1 for a scalar with no dimensions).
    public var elementCount: Int { dimensions.reduce(1, *) }
}

/// A metadata value. Arrays hold values of one type (GGUF arrays are homogeneous).
public indirect enum GGUFValue: Sendable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case float32(Float), bool(Bool), string(String), array([GGUFValue])
    case uint64(UInt64), int64(Int64), float64(Double)

    /// The value as an `Int` if it is an integer of any width that fits.
    public var intValue: Int? {
        switch self {
        case .uint8(let v): Int(v)
        case .int8(let v): Int(v)
        case .uint16(let v): Int(v)
        case .int16(let v): Int(v)
        case .uint32(let v): Int(v)
        case .int32(let v): Int(v)
        case .uint64(let v): Int(exactly: v)
        case .int64(let v): Int(v)
        default: nil
        }
    }

    /// The value as a `Float` if it is a float or integer of any width.
    public var floatValue: Float? {
        switch self {
        case .float32(let v): v
        case .float64(let v): Float(v)
        default: intValue.map { Float($0) }
        }
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var arrayValue: [GGUFValue]? {
        if case .array(let a) = self { return a }
        return nil
    }
}

/// A GGUF file (versions 2 and 3), mapped into memory and fully validated on open.
///
/// Every length, count, dimension, offset and size in the header is checked against the file
/// size before it is used, so a corrupt or hostile file produces a `WeightsError` naming the
/// file rather than a trap or a huge allocation. Tensor data is not copied: `bytes(of:)`
/// returns a view into the mapping, valid while this object lives.
public final class GGUFFile: @unchecked Sendable {
    public let file: MappedFile
    public let version: UInt32
    /// Alignment of the data section and of every tensor offset (`general.alignment`, default 32).
    public let alignment: Int
    /// Absolute offset where the tensor data section starts.
    public let dataOffset: Int
    public let metadata: [String: GGUFValue]
    /// Tensors in the order the file lists them.
    public let tensors: [GGUFTensorInfo]
    private let tensorIndexByName: [String: Int]

    /// Deepest array nesting accepted; real files use one level. Bounds recursion on hostile input.
    static let maximumArrayNesting = 8
    /// ggml tensors have at most four dimensions (`GGML_MAX_DIMS`).
    static let maximumDimensions = 4

    /// Opens, maps and validates the GGUF file at `path`.
    /// - Throws: `WeightsError` naming the file for any I/O failure or malformed content.
    public convenience init(path: String) throws {
        try self.init(mappedFile: MappedFile(path: path))
    }

    /// Parses an already-mapped file.
    public init(mappedFile: MappedFile) throws {
        file = mappedFile
        var reader = ByteReader(bytes: mappedFile.bytes, path: mappedFile.path)

        let magic = try reader.readBytes(4)
        guard magic.elementsEqual("GGUF".utf8) else {
            throw reader.error(at: 0, "not a GGUF file (bad magic)")
        }
        let rawVersion: UInt32 = try reader.readInteger()
        if rawVersion.byteSwapped == 2 || rawVersion.byteSwapped == 3 {
            throw reader.error(at: 4, "big-endian GGUF files are not supported")
        }
        guard rawVersion == 2 || rawVersion == 3 else {
            throw reader.error(at: 4, "unsupported GGUF version \(rawVersion) (supported: 2, 3)")
        }
        version = rawVersion

        let tensorCount = try reader.readCount(minimumBytesPerElement: 24, what: "tensor count")
        let metadataCount = try reader.readCount(minimumBytesPerElement: 13, what: "metadata count")

        var metadata: [String: GGUFValue] = [:]
        metadata.reserveCapacity(metadataCount)
        for _ in 0..<metadataCount {
            let keyOffset = reader.position
            let key = try reader.readString(what: "metadata key")
            let rawType: UInt32 = try reader.readInteger()
            let value = try reader.readValue(rawType: rawType, depth: 0, key: key)
            guard metadata.updateValue(value, forKey: key) == nil else {
                throw reader.error(at: keyOffset, "duplicate metadata key \"\(key)\"")
            }
        }

        var alignment = 32
        if let alignmentValue = metadata["general.alignment"] {
            guard case .uint32(let declared) = alignmentValue else {
                throw reader.error(at: nil, "general.alignment must be a uint32")
            }
            guard declared > 0, declared & (declared - 1) == 0 else {
                throw reader.error(at: nil, "general.alignment \(declared) is not a power of two")
            }
            alignment = Int(declared)
        }

        struct PendingTensor {
            let name: String, dimensions: [Int], type: GGMLType, relativeOffset: Int, byteCount: Int
            let entryOffset: Int
        }
        var pending: [PendingTensor] = []
        pending.reserveCapacity(tensorCount)
        var indexByName: [String: Int] = [:]
        indexByName.reserveCapacity(tensorCount)
        for index in 0..<tensorCount {
            let entryOffset = reader.position
            let name = try reader.readString(what: "tensor name")
            let dimensionCount: UInt32 = try reader.readInteger()
            guard dimensionCount <= UInt32(Self.maximumDimensions) else {
                throw reader.error(at: entryOffset, "tensor \"\(name)\" has \(dimensionCount) dimensions (at most \(Self.maximumDimensions))")
            }
            var dimensions: [Int] = []
            var elementCount = 1
            for _ in 0..<Int(dimensionCount) {
                let raw: UInt64 = try reader.readInteger()
                guard let dimension = Int(exactly: raw), dimension >= 0 else {
                    throw reader.error(at: entryOffset, "tensor \"\(name)\" has dimension \(raw)")
                }
                let (product, overflow) = elementCount.multipliedReportingOverflow(by: dimension)
                guard !overflow, product <= mappedFile.bytes.count * 256 else {
                    // No encoding packs more than a few elements per byte; this bound rejects
                    // absurd shapes before any size arithmetic can overflow.
                    throw reader.error(at: entryOffset, "tensor \"\(name)\" has an absurd shape \(dimensions + [dimension])")
                }
                elementCount = product
                dimensions.append(dimension)
            }
            let rawType: UInt32 = try reader.readInteger()
            guard let type = GGMLType(rawValue: rawType) else {
                throw reader.error(at: entryOffset, "tensor \"\(name)\" has unknown ggml type \(rawType)")
            }
            let rowLength = dimensions.first ?? 1
            guard rowLength % type.blockSize == 0 else {
                throw reader.error(at: entryOffset, "tensor \"\(name)\": row length \(rowLength) is not a multiple of the \(type) block size \(type.blockSize)")
            }
            let byteCount = elementCount / type.blockSize * type.bytesPerBlock
            let rawOffset: UInt64 = try reader.readInteger()
            guard let relativeOffset = Int(exactly: rawOffset), relativeOffset <= mappedFile.bytes.count else {
                throw reader.error(at: entryOffset, "tensor \"\(name)\" has data offset \(rawOffset) beyond the file")
            }
            guard relativeOffset % alignment == 0 else {
                throw reader.error(at: entryOffset, "tensor \"\(name)\" data offset \(relativeOffset) is not aligned to \(alignment)")
            }
            guard indexByName.updateValue(index, forKey: name) == nil else {
                throw reader.error(at: entryOffset, "duplicate tensor name \"\(name)\"")
            }
            pending.append(PendingTensor(
                name: name, dimensions: dimensions, type: type, relativeOffset: relativeOffset,
                byteCount: byteCount, entryOffset: entryOffset))
        }

        // The data section starts at the next multiple of the alignment after the directory.
        let directoryEnd = reader.position
        let dataStart = (directoryEnd + alignment - 1) / alignment * alignment
        let fileSize = mappedFile.bytes.count
        if !pending.isEmpty, dataStart > fileSize {
            throw reader.error(at: directoryEnd, "data section would start at \(dataStart), past the end of the file (\(fileSize) bytes)")
        }

        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(pending.count)
        for entry in pending {
            // Both terms are bounded by the file size (checked above), so the sums cannot overflow.
            let start = dataStart + entry.relativeOffset
            let end = start + entry.byteCount
            guard end <= fileSize else {
                throw reader.error(at: entry.entryOffset, "tensor \"\(entry.name)\" data [\(start), \(end)) runs past the end of the file (\(fileSize) bytes)")
            }
            tensors.append(GGUFTensorInfo(
                name: entry.name, dimensions: entry.dimensions, type: entry.type,
                offset: start, byteCount: entry.byteCount))
        }

        // Overlapping tensors mean a corrupt directory: two names for the same bytes.
        let byStart = tensors.filter { $0.byteCount > 0 }.sorted { $0.offset < $1.offset }
        for (earlier, later) in zip(byStart, byStart.dropFirst()) where earlier.offset + earlier.byteCount > later.offset {
            throw WeightsError(path: mappedFile.path, message: "tensors \"\(earlier.name)\" and \"\(later.name)\" overlap")
        }

        self.alignment = alignment
        self.dataOffset = dataStart
        self.metadata = metadata
        self.tensors = tensors
        self.tensorIndexByName = indexByName
    }

    /// The tensor called `name`, if the file has one.
    public func tensor(_ name: String) -> GGUFTensorInfo? {
        tensorIndexByName[name].map { tensors[$0] }
    }

    /// The tensor's bytes inside the mapping (validated on open, so this cannot go out of bounds
    /// for a `GGUFTensorInfo` that came from this file).
    public func bytes(of tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        precondition(tensor.offset >= 0 && tensor.offset + tensor.byteCount <= file.bytes.count,
                     "tensor \(tensor.name) does not belong to \(file.path)")
        return UnsafeRawBufferPointer(rebasing: file.bytes[tensor.offset..<(tensor.offset + tensor.byteCount)])
    }

    // MARK: Typed metadata accessors

    /// An integer value of any width (nil if absent, not an integer, or out of `Int` range).
    public func int(_ key: String) -> Int? { metadata[key]?.intValue }
    /// A float value of any width; integers convert too.
    public func float(_ key: String) -> Float? { metadata[key]?.floatValue }
    public func string(_ key: String) -> String? { metadata[key]?.stringValue }
    public func bool(_ key: String) -> Bool? { metadata[key]?.boolValue }

    /// An array whose every element is a string (nil if any element is not).
    public func stringArray(_ key: String) -> [String]? {
        guard let elements = metadata[key]?.arrayValue else { return nil }
        var result: [String] = []
        result.reserveCapacity(elements.count)
        for element in elements {
            guard case .string(let s) = element else { return nil }
            result.append(s)
        }
        return result
    }

    /// An array of numbers of any width, as `Float` (nil if any element is not a number).
    public func floatArray(_ key: String) -> [Float]? {
        guard let elements = metadata[key]?.arrayValue else { return nil }
        var result: [Float] = []
        result.reserveCapacity(elements.count)
        for element in elements {
            guard let value = element.floatValue else { return nil }
            result.append(value)
        }
        return result
    }

    /// An array of integers of any width, as `Int` (nil if any element is not an integer).
    public func intArray(_ key: String) -> [Int]? {
        guard let elements = metadata[key]?.arrayValue else { return nil }
        var result: [Int] = []
        result.reserveCapacity(elements.count)
        for element in elements {
            guard let value = element.intValue else { return nil }
            result.append(value)
        }
        return result
    }
}

/// A bounds-checked little-endian cursor over the mapped bytes.
private struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var position = 0

    init(bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        self.path = path
    }

    var remaining: Int { bytes.count - position }

    func error(at offset: Int?, _ message: String) -> WeightsError {
        WeightsError(path: path, message: offset.map { "\(message) (at byte \($0))" } ?? message)
    }

    private func truncated(_ what: String, needing count: Int) -> WeightsError {
        error(at: position, "file truncated: \(what) needs \(count) bytes, \(remaining) remain")
    }

    mutating func readBytes(_ count: Int, what: String = "header") throws -> UnsafeRawBufferPointer {
        guard count >= 0, count <= remaining else { throw truncated(what, needing: count) }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
        position += count
        return slice
    }

    mutating func readInteger<T: FixedWidthInteger>(_: T.Type = T.self) throws -> T {
        let size = MemoryLayout<T>.size
        guard size <= remaining else { throw truncated(String(describing: T.self), needing: size) }
        let value = bytes.loadUnaligned(fromByteOffset: position, as: T.self)
        position += size
        return T(littleEndian: value)
    }

    /// Reads a u64 count and rejects it if that many elements of at least
    /// `minimumBytesPerElement` bytes could not fit in the rest of the file.
    mutating func readCount(minimumBytesPerElement: Int, what: String) throws -> Int {
        let countOffset = position
        let raw: UInt64 = try readInteger()
        guard raw <= UInt64(remaining / max(minimumBytesPerElement, 1)) else {
            throw error(at: countOffset, "\(what) \(raw) cannot fit in the remaining \(remaining) bytes")
        }
        return Int(raw)
    }

    mutating func readString(what: String) throws -> String {
        let lengthOffset = position
        let raw: UInt64 = try readInteger()
        guard raw <= UInt64(remaining) else {
            throw error(at: lengthOffset, "\(what) length \(raw) exceeds the remaining \(remaining) bytes")
        }
        let utf8 = try readBytes(Int(raw), what: what)
        guard let string = String(validating: utf8, as: UTF8.self) else {
            throw error(at: lengthOffset, "\(what) is not valid UTF-8")
        }
        return string
    }

    /// Smallest encoded size of one value of a GGUF value type (for bounding array counts).
    static func minimumEncodedSize(ofType rawType: UInt32) -> Int? {
        switch rawType {
        case 0, 1, 7: 1          // uint8, int8, bool
        case 2, 3: 2             // uint16, int16
        case 4, 5, 6: 4          // uint32, int32, float32
        case 8: 8                // string: u64 length
        case 9: 12               // array: u32 type + u64 count
        case 10, 11, 12: 8       // uint64, int64, float64
        default: nil
        }
    }

    mutating func readValue(rawType: UInt32, depth: Int, key: String) throws -> GGUFValue {
        switch rawType {
        case 0: return .uint8(try readInteger())
        case 1: return .int8(try readInteger())
        case 2: return .uint16(try readInteger())
        case 3: return .int16(try readInteger())
        case 4: return .uint32(try readInteger())
        case 5: return .int32(try readInteger())
        case 6: return .float32(Float(bitPattern: try readInteger()))
        case 7:
            let byte: UInt8 = try readInteger()
            guard byte <= 1 else { throw error(at: position - 1, "metadata \"\(key)\": bool byte \(byte)") }
            return .bool(byte == 1)
        case 8: return .string(try readString(what: "metadata \"\(key)\" string"))
        case 9:
            guard depth < GGUFFile.maximumArrayNesting else {
                throw error(at: position, "metadata \"\(key)\": arrays nested deeper than \(GGUFFile.maximumArrayNesting)")
            }
            let elementType: UInt32 = try readInteger()
            guard let minimumSize = Self.minimumEncodedSize(ofType: elementType) else {
                throw error(at: position - 4, "metadata \"\(key)\": unknown array element type \(elementType)")
            }
            let count = try readCount(minimumBytesPerElement: minimumSize, what: "metadata \"\(key)\" array length")
            var elements: [GGUFValue] = []
            elements.reserveCapacity(count)
            for _ in 0..<count {
                elements.append(try readValue(rawType: elementType, depth: depth + 1, key: key))
            }
            return .array(elements)
        case 10: return .uint64(try readInteger())
        case 11: return .int64(try readInteger())
        case 12: return .float64(Double(bitPattern: try readInteger()))
        default:
            throw error(at: position - 4, "metadata \"\(key)\": unknown value type \(rawType)")
        }
    }
}
