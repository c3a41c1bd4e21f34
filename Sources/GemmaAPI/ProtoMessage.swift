#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import GemmaProto

/// A gemma.v1 message as a Swift value, serialized through protobuf-c.
public protocol ProtoMessage: Sendable, Equatable {
    init()
    /// Parses the protobuf encoding. Throws ``ProtoError`` on malformed bytes.
    init(serializedBytes bytes: UnsafeRawBufferPointer) throws
    func serializedBytes() -> [UInt8]
}

extension ProtoMessage {
    public init(serializedBytes bytes: [UInt8]) throws {
        self = try bytes.withUnsafeBytes { try Self(serializedBytes: $0) }
    }
}

public enum ProtoError: Error, CustomStringConvertible, Equatable {
    /// The bytes are not a valid encoding of the message.
    case malformed(String)
    /// A string field holds bytes that are not UTF-8.
    case invalidUTF8

    public var description: String {
        switch self {
        case .malformed(let name): return "malformed \(name) message"
        case .invalidUTF8: return "a string field is not valid UTF-8"
        }
    }
}

/// Owns the C memory that a message's protobuf-c struct points into while it is packed.
/// Everything allocated here is freed with the arena.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit { for block in blocks { free(block) } }

    private func raw(_ bytes: Int) -> UnsafeMutableRawPointer {
        let block = calloc(1, max(bytes, 1))!
        blocks.append(block)
        return block
    }

    func allocate<T>(_ type: T.Type) -> UnsafeMutablePointer<T> {
        raw(MemoryLayout<T>.stride).bindMemory(to: T.self, capacity: 1)
    }

    func bytes(_ b: [UInt8]) -> ProtobufCBinaryData {
        let p = raw(b.count).bindMemory(to: UInt8.self, capacity: b.count)
        b.withUnsafeBufferPointer { if let base = $0.baseAddress { p.update(from: base, count: $0.count) } }
        return ProtobufCBinaryData(len: b.count, data: p)
    }

    func array<T>(_ values: [T]) -> UnsafeMutablePointer<T>? {
        if values.isEmpty { return nil }
        let p = raw(MemoryLayout<T>.stride * values.count).bindMemory(to: T.self, capacity: values.count)
        p.initialize(from: values, count: values.count)
        return p
    }
}

/// A string field, which the C code holds as bytes (so that U+0000 survives); throws when the
/// bytes are not UTF-8.
func readString(_ b: ProtobufCBinaryData) throws -> String {
    guard let data = b.data, b.len > 0 else { return "" }
    guard let s = String(validating: UnsafeBufferPointer(start: data, count: b.len), as: UTF8.self) else {
        throw ProtoError.invalidUTF8
    }
    return s
}

func readBytes(_ b: ProtobufCBinaryData) -> [UInt8] {
    guard let data = b.data, b.len > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: b.len))
}

func readArray<T>(_ p: UnsafeMutablePointer<T>?, _ n: Int) -> [T] {
    guard let p, n > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: p, count: n))
}
