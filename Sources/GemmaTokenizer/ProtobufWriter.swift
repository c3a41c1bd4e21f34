/// Just enough of the protobuf wire format to serialize a SentencePiece `ModelProto`
/// (varints, 32-bit floats, length-delimited strings and nested messages).
struct ProtobufWriter {
    private(set) var bytes: [UInt8] = []

    private enum WireType: UInt64 {
        case varint = 0, lengthDelimited = 2, fixed32 = 5
    }

    private mutating func appendVarint(_ value: UInt64) {
        var remaining = value
        while remaining >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: remaining) | 0x80)
            remaining >>= 7
        }
        bytes.append(UInt8(remaining))
    }

    private mutating func appendKey(_ field: Int, _ wireType: WireType) {
        appendVarint(UInt64(field) << 3 | wireType.rawValue)
    }

    mutating func writeVarint(_ field: Int, _ value: UInt64) {
        appendKey(field, .varint)
        appendVarint(value)
    }

    /// int32 fields encode negative values as ten-byte two's complement varints.
    mutating func writeInt32(_ field: Int, _ value: Int32) {
        writeVarint(field, UInt64(bitPattern: Int64(value)))
    }

    mutating func writeBool(_ field: Int, _ value: Bool) {
        writeVarint(field, value ? 1 : 0)
    }

    mutating func writeFloat(_ field: Int, _ value: Float) {
        appendKey(field, .fixed32)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func writeBytes<C: Collection>(_ field: Int, _ value: C) where C.Element == UInt8 {
        appendKey(field, .lengthDelimited)
        appendVarint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    mutating func writeString(_ field: Int, _ value: String) {
        writeBytes(field, value.utf8)
    }

    mutating func writeMessage(_ field: Int, _ message: ProtobufWriter) {
        writeBytes(field, message.bytes)
    }
}
