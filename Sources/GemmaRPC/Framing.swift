import GemmaAPI
import NIOCore

/// gRPC's length-prefixed message framing: a flag byte, a 4-byte big-endian length, then the
/// serialized `gemma.v1.Frame`. Flag 0 is the only one accepted (no compression).
enum Framing {
    static let prefixBytes = 5

    /// Encodes a frame with its prefix, ready to write.
    static func encode(_ frame: V1.Frame, allocator: ByteBufferAllocator) -> ByteBuffer {
        let body = frame.serializedBytes()
        var buffer = allocator.buffer(capacity: prefixBytes + body.count)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(body.count), endianness: .big)
        buffer.writeBytes(body)
        return buffer
    }

    /// Reads the call id from the start of a serialized Frame, without parsing the rest:
    /// field 1 (varint) comes first in every encoder we know. Nil when the bytes do not start
    /// that way.
    static func leadingCallID(_ bytes: ByteBufferView) -> UInt64? {
        var iterator = bytes.makeIterator()
        guard iterator.next() == 0x08 else { return nil }
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while let byte = iterator.next(), shift < 64 {
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        return nil
    }
}

/// What the frame decoder hands up the pipeline.
enum InboundFrame {
    /// A complete frame's serialized bytes (without the prefix).
    case frame(ByteBuffer)
    /// A frame longer than the limit. Its bytes are skipped; `callID` was read from its start
    /// when possible so that the call can be answered.
    case oversized(callID: UInt64?, length: Int)
    /// A well-framed message with the compressed flag set; skipped.
    case compressed(callID: UInt64?)
}

enum FramingError: Error, CustomStringConvertible {
    case badFlag(UInt8)
    var description: String {
        switch self {
        case .badFlag(let flag): "frame flag byte \(flag) is not 0 or 1: the stream is not gemma.v1 framing"
        }
    }
}

/// Splits a byte stream into frames, enforcing `maxFrameBytes` without buffering oversized
/// frames: their payload is discarded as it arrives and the connection stays usable.
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = InboundFrame

    let maxFrameBytes: Int
    private var bytesToSkip = 0

    init(maxFrameBytes: Int) {
        self.maxFrameBytes = maxFrameBytes
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if bytesToSkip > 0 {
            let n = min(bytesToSkip, buffer.readableBytes)
            buffer.moveReaderIndex(forwardBy: n)
            bytesToSkip -= n
            return bytesToSkip == 0 ? .continue : .needMoreData
        }
        guard buffer.readableBytes >= Framing.prefixBytes,
              let flag = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
              let length32 = buffer.getInteger(at: buffer.readerIndex + 1, endianness: .big, as: UInt32.self)
        else { return .needMoreData }
        guard flag <= 1 else { throw FramingError.badFlag(flag) }
        let length = Int(length32)
        if length > maxFrameBytes || flag == 1 {
            // Wait for enough of the payload to read the call id (tag + 10-byte varint).
            let peek = min(length, 11)
            guard buffer.readableBytes >= Framing.prefixBytes + peek else { return .needMoreData }
            let start = buffer.readerIndex + Framing.prefixBytes
            let callID = Framing.leadingCallID(buffer.readableBytesView[start..<(start + peek)])
            buffer.moveReaderIndex(forwardBy: Framing.prefixBytes)
            bytesToSkip = length
            let event: InboundFrame = flag == 1 ? .compressed(callID: callID) : .oversized(callID: callID, length: length)
            context.fireChannelRead(wrapInboundOut(event))
            return .continue
        }
        guard buffer.readableBytes >= Framing.prefixBytes + length else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: Framing.prefixBytes)
        let payload = buffer.readSlice(length: length)!
        context.fireChannelRead(wrapInboundOut(.frame(payload)))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A truncated frame at EOF is dropped: its sender is gone and cannot be answered.
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}

extension V1.Frame {
    static func status(_ callID: UInt64, _ code: StatusCode, _ message: String) -> V1.Frame {
        var status = V1.CallStatus()
        status.code = code
        status.message = message
        var frame = V1.Frame()
        frame.callID = callID
        frame.kind = .status(status)
        return frame
    }

    static func message(_ callID: UInt64, _ bytes: [UInt8]) -> V1.Frame {
        var frame = V1.Frame()
        frame.callID = callID
        frame.kind = .message(bytes)
        return frame
    }
}

extension ByteBuffer {
    /// The readable bytes as a protobuf message.
    func decodeMessage<M: ProtoMessage>(_ type: M.Type) throws -> M {
        try withUnsafeReadableBytes { try M(serializedBytes: $0) }
    }
}
