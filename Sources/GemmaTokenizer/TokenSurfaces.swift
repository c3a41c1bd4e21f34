/// The bytes every id stands for, and which ids `skipSpecial` leaves out: all that
/// detokenization needs. A `Tokenizer` builds it from its pieces; a process without the
/// tokenizer model (the decoder) gets the same table from the tokenizer service.
public struct TokenSurfaces: Sendable, Equatable {
    /// Piece `i`'s bytes are `bytes[offsets[i]..<offsets[i + 1]]`.
    private let bytes: [UInt8]
    private let offsets: [Int32]
    /// Per piece: dropped by `skipSpecial` (control, unknown and unused pieces).
    private let skippable: [Bool]
    /// Tokens beyond the pieces, by id (always dropped by `skipSpecial`).
    public let added: [Int32: String]

    /// - Parameters:
    ///   - bytes: every piece's bytes, one after another in id order.
    ///   - offsets: where each piece starts in `bytes`, then the end (pieces + 1 entries,
    ///     from 0, never decreasing, the last `bytes.count`).
    ///   - skippable: per piece, whether `skipSpecial` drops it.
    ///   - added: tokens beyond the pieces, by id (at or above the piece count).
    /// - Throws: `TokenizerError.invalidModel` when these do not fit together.
    public init(bytes: [UInt8], offsets: [Int32], skippable: [Bool], added: [Int32: String]) throws {
        guard offsets.first == 0, offsets.last.map(Int.init) == bytes.count, skippable.count == offsets.count - 1,
              zip(offsets, offsets.dropFirst()).allSatisfy({ $0 <= $1 }) else {
            throw TokenizerError.invalidModel("piece offsets do not fit \(bytes.count) bytes and \(skippable.count) pieces")
        }
        guard added.keys.allSatisfy({ Int($0) >= skippable.count }) else {
            throw TokenizerError.invalidModel("an added token's id is inside the vocabulary")
        }
        (self.bytes, self.offsets, self.skippable, self.added) = (bytes, offsets, skippable, added)
    }

    /// Number of pieces (ids `0..<count`; added tokens come after).
    public var count: Int { skippable.count }

    public func isValid(_ id: Int32) -> Bool { (id >= 0 && Int(id) < count) || added[id] != nil }

    /// Piece `id`'s bytes (`id` in `0..<count`).
    public func surface(of id: Int) -> ArraySlice<UInt8> { bytes[Int(offsets[id])..<Int(offsets[id + 1])] }

    /// Whether `skipSpecial` drops piece `id` (`id` in `0..<count`).
    public func isSkippable(_ id: Int) -> Bool { skippable[id] }

    /// Appends the bytes `id` stands for (possibly part of a character).
    /// - Throws: `TokenizerError.idOutOfRange`.
    func append(_ id: Int32, skipSpecial: Bool, to output: inout [UInt8]) throws {
        if id >= 0, Int(id) < count {
            if skipSpecial, skippable[Int(id)] { return }
            output.append(contentsOf: surface(of: Int(id)))
        } else if let text = added[id] {
            if !skipSpecial { output.append(contentsOf: text.utf8) }
        } else {
            throw TokenizerError.idOutOfRange(id: id, vocabularySize: count)
        }
    }
}
