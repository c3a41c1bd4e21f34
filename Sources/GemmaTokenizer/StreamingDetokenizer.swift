/// Turns ids arriving one at a time into text deltas that are always whole characters.
///
/// Bytes of a character still being built (byte-fallback pieces such as `<0xF0>`, or a
/// character whose pieces have not all arrived) are held back until it completes. The
/// concatenation of every delta and `finish()` equals `tokenizer.decode(allIDs, skipSpecial:)`
/// (from the tokenizer's `surfaces`, or the same table fetched from the tokenizer service).
/// Holding is per Unicode scalar: a ZWJ emoji sequence may arrive over several deltas, each
/// of them valid UTF-8.
public struct StreamingDetokenizer {
    public let surfaces: TokenSurfaces
    public let skipSpecial: Bool
    private var pending: [UInt8] = []

    /// - Parameter pendingBytes: bytes an earlier detokenizer held back (`pendingBytes`), so
    ///   that a stateless service can continue a stream its client carries between calls.
    public init(surfaces: TokenSurfaces, skipSpecial: Bool, pendingBytes: [UInt8] = []) {
        self.surfaces = surfaces
        self.skipSpecial = skipSpecial
        self.pending = pendingBytes
    }

    public init(tokenizer: Tokenizer, skipSpecial: Bool, pendingBytes: [UInt8] = []) {
        self.init(surfaces: tokenizer.surfaces, skipSpecial: skipSpecial, pendingBytes: pendingBytes)
    }

    /// The bytes of an unfinished character being held back.
    public var pendingBytes: [UInt8] { pending }

    /// Feeds one id; returns the text that became complete (often empty while a character
    /// is being assembled).
    /// - Throws: `TokenizerError.idOutOfRange`; the detokenizer's state is unchanged then.
    public mutating func append(_ id: Int32) throws -> String {
        try surfaces.append(id, skipSpecial: skipSpecial, to: &pending)
        let held = UTF8Validation.incompleteTailLength(pending)
        let ready = pending.count - held
        guard ready > 0 else { return "" }
        // Invalid bytes before the held tail cannot be completed by later tokens: they are
        // replaced now exactly as `decode` replaces them.
        let delta = String(decoding: pending[..<ready], as: UTF8.self)
        pending.removeFirst(ready)
        return delta
    }

    /// Feeds several ids and returns their combined delta.
    /// - Throws: `TokenizerError.idOutOfRange` before consuming any id if one is invalid.
    public mutating func append(contentsOf ids: [Int32]) throws -> String {
        if let invalid = ids.first(where: { !surfaces.isValid($0) }) {
            throw TokenizerError.idOutOfRange(id: invalid, vocabularySize: surfaces.count)
        }
        var text = ""
        for id in ids { text += try append(id) }
        return text
    }

    /// Ends the stream: returns held bytes, an unfinished character becoming U+FFFD.
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Whether bytes of an unfinished character are being held.
    public var hasPendingBytes: Bool { !pending.isEmpty }
}
