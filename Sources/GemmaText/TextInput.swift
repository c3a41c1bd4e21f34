/// Embeddings that replace the token embeddings of consecutive positions (image soft tokens).
/// They are used as given: not multiplied by √hidden.
public struct EmbeddingOverride: Sendable, Equatable {
    /// Index into `TextInput.tokens` of the first replaced position.
    public var start: Int
    /// `rows × hidden` floats, row after row; replaces positions `start ..< start + rows`.
    public var values: [Float]

    public init(start: Int, values: [Float]) {
        self.start = start
        self.values = values
    }
}

/// What the model reads for a run of positions: token ids, optional embedding overrides, and
/// optional bidirectional groups.
///
/// A bidirectional group is a range of positions (indices into `tokens`) whose members attend
/// to each other in both directions — an image's soft tokens; attention is causal elsewhere,
/// and local layers still apply their sliding window. A group is always computed within one
/// batch, never split.
public struct TextInput: Sendable, Equatable {
    public var tokens: [Int32]
    public var embeddingOverrides: [EmbeddingOverride]
    public var bidirectionalGroups: [Range<Int>]

    public init(tokens: [Int32], embeddingOverrides: [EmbeddingOverride] = [], bidirectionalGroups: [Range<Int>] = []) {
        self.tokens = tokens
        self.embeddingOverrides = embeddingOverrides
        self.bidirectionalGroups = bidirectionalGroups
    }

    public var count: Int { tokens.count }

    /// Checks overrides and groups lie inside the input and do not overlap.
    func validate(hiddenSize: Int) throws {
        var covered = [Bool](repeating: false, count: tokens.count)
        for override in embeddingOverrides {
            guard override.values.count % hiddenSize == 0, !override.values.isEmpty else {
                throw TextModelError.badInput("override at \(override.start) is not whole rows of \(hiddenSize)")
            }
            let rows = override.values.count / hiddenSize
            guard override.start >= 0, override.start + rows <= tokens.count else {
                throw TextModelError.badInput("override \(override.start)..<\(override.start + rows) outside \(tokens.count) positions")
            }
            for p in override.start..<(override.start + rows) {
                guard !covered[p] else { throw TextModelError.badInput("overrides overlap at \(p)") }
                covered[p] = true
            }
        }
        let sorted = bidirectionalGroups.sorted { $0.lowerBound < $1.lowerBound }
        var end = 0
        for group in sorted {
            guard !group.isEmpty, group.lowerBound >= end, group.upperBound <= tokens.count else {
                throw TextModelError.badInput("bidirectional group \(group) is empty, overlaps, or exceeds the input")
            }
            end = group.upperBound
        }
    }

    /// The input without its first `count` positions (overrides are cut and re-indexed).
    func dropping(first count: Int, hiddenSize: Int) -> TextInput {
        var overrides: [EmbeddingOverride] = []
        for override in embeddingOverrides {
            let rows = override.values.count / hiddenSize
            let end = override.start + rows
            guard end > count else { continue }
            let skip = max(0, count - override.start)
            overrides.append(EmbeddingOverride(
                start: override.start + skip - count,
                values: Array(override.values[(skip * hiddenSize)...])))
        }
        let groups = bidirectionalGroups.compactMap { group -> Range<Int>? in
            guard group.lowerBound >= count else { return nil }
            return (group.lowerBound - count)..<(group.upperBound - count)
        }
        return TextInput(tokens: Array(tokens[count...]), embeddingOverrides: overrides, bidirectionalGroups: groups)
    }

    /// The first `count` positions (overrides cut; groups reaching past `count` dropped, so cut
    /// only where no group straddles: see `TextModel.prefillCuts`).
    public func prefix(_ count: Int, hiddenSize: Int) -> TextInput {
        var overrides: [EmbeddingOverride] = []
        for override in embeddingOverrides where override.start < count {
            let rows = min(override.values.count / hiddenSize, count - override.start)
            overrides.append(EmbeddingOverride(start: override.start, values: Array(override.values[..<(rows * hiddenSize)])))
        }
        return TextInput(tokens: Array(tokens[..<count]), embeddingOverrides: overrides,
                         bidirectionalGroups: bidirectionalGroups.filter { $0.upperBound <= count })
    }

    /// One fingerprint per position for prefix matching: the token id, or, where an override
    /// applies, a hash of the override row (so two different images never match).
    func fingerprints(hiddenSize: Int) -> [UInt64] {
        var result = tokens.map { UInt64(UInt32(bitPattern: $0)) }
        for override in embeddingOverrides {
            for row in 0..<(override.values.count / hiddenSize) {
                var hash: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a
                for i in (row * hiddenSize)..<((row + 1) * hiddenSize) {
                    hash = (hash ^ UInt64(override.values[i].bitPattern)) &* 0x0000_0100_0000_01B3
                }
                result[override.start + row] = hash | (1 << 63)
            }
        }
        return result
    }
}
