import CSentencePiece

/// Owns one libsentencepiece processor through the C shim.
///
/// A value only exists for a model that loaded successfully, so no call can reach a
/// processor in the failed state. SentencePiece's encode/decode/lookup methods are `const`
/// and safe to call from several threads at once, hence `@unchecked Sendable`.
final class SentencePieceProcessor: @unchecked Sendable {
    private let handle: OpaquePointer
    let vocabularySize: Int

    init(serializedModel: [UInt8]) throws {
        var error: UnsafeMutablePointer<CChar>?
        let loaded = serializedModel.withUnsafeBytes { sp_load_from_serialized($0.baseAddress, $0.count, &error) }
        guard let loaded else { throw TokenizerError.invalidModel(Self.consume(error) ?? "cannot load model") }
        handle = loaded
        vocabularySize = Int(sp_vocab_size(loaded))
    }

    init(modelFile path: String) throws {
        var error: UnsafeMutablePointer<CChar>?
        guard let loaded = sp_load_from_file(path, &error) else {
            throw TokenizerError.invalidModel("\(path): \(Self.consume(error) ?? "cannot load model")")
        }
        handle = loaded
        vocabularySize = Int(sp_vocab_size(loaded))
    }

    deinit { sp_free(handle) }

    private static func consume(_ message: UnsafeMutablePointer<CChar>?) -> String? {
        guard let message else { return nil }
        defer { sp_free_string(message) }
        return String(cString: message)
    }

    /// Encodes valid UTF-8. `byteRanges` is filled only when `withOffsets`; ranges are
    /// relative to `text`.
    func encode(_ text: UnsafeRawBufferPointer, withOffsets: Bool) throws -> (ids: [Int32], byteRanges: [Range<Int>]) {
        if text.isEmpty { return ([], []) }
        // SentencePiece emits at most one piece per input byte here (byte fallback splits a
        // character into its bytes, never more); the retry below covers any other model.
        var capacity = text.count + 8
        while true {
            var ids = [Int32](repeating: 0, count: capacity)
            var begins = [UInt32](repeating: 0, count: withOffsets ? capacity : 0)
            var ends = [UInt32](repeating: 0, count: withOffsets ? capacity : 0)
            var error: UnsafeMutablePointer<CChar>?
            let count = ids.withUnsafeMutableBufferPointer { idBuffer in
                begins.withUnsafeMutableBufferPointer { beginBuffer in
                    ends.withUnsafeMutableBufferPointer { endBuffer in
                        sp_encode(handle, text.baseAddress!.assumingMemoryBound(to: CChar.self), text.count,
                                  idBuffer.baseAddress, withOffsets ? beginBuffer.baseAddress : nil,
                                  withOffsets ? endBuffer.baseAddress : nil, capacity, &error)
                    }
                }
            }
            guard count >= 0 else { throw TokenizerError.sentencePiece(Self.consume(error) ?? "encode failed") }
            if Int(count) > capacity {
                capacity = Int(count)
                continue
            }
            ids.removeLast(capacity - Int(count))
            guard withOffsets else { return (ids, []) }
            var ranges: [Range<Int>] = []
            ranges.reserveCapacity(Int(count))
            for index in 0..<Int(count) {
                let begin = min(Int(begins[index]), text.count)
                ranges.append(begin..<max(begin, min(Int(ends[index]), text.count)))
            }
            return (ids, ranges)
        }
    }

    /// SentencePiece's own decoding (control pieces vanish, byte pieces are fused).
    func decode(_ ids: [Int32]) throws -> [UInt8] {
        var error: UnsafeMutablePointer<CChar>?
        var length = 0
        let buffer = ids.withUnsafeBufferPointer { sp_decode(handle, $0.baseAddress, $0.count, &length, &error) }
        guard let buffer else { throw TokenizerError.sentencePiece(Self.consume(error) ?? "decode failed") }
        defer { sp_free_string(buffer) }
        return Array(UnsafeRawBufferPointer(start: buffer, count: length))
    }

    func pieceBytes(_ id: Int32) -> UnsafeRawBufferPointer? {
        var length = 0
        guard let pointer = sp_id_to_piece(handle, id, &length) else { return nil }
        return UnsafeRawBufferPointer(start: pointer, count: length)
    }

    func id(ofPiece piece: String) -> Int32? {
        var piece = piece
        let id = piece.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { sp_piece_to_id(handle, $0.baseAddress, $0.count) }
        }
        return id >= 0 ? id : nil
    }

    func type(_ id: Int32) -> PieceType? { PieceType(rawValue: Int32(sp_type(handle, id).rawValue)) }

    func score(_ id: Int32) -> Float { sp_score(handle, id) }

    var serializedModel: [UInt8] {
        var length = 0
        guard let buffer = sp_serialized_model(handle, &length) else { return [] }
        defer { sp_free_string(buffer) }
        return Array(UnsafeRawBufferPointer(start: buffer, count: length))
    }
}
