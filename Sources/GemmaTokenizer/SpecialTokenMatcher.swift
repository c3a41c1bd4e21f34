/// Finds special-token strings (control and user-defined pieces, added tokens) in text,
/// leftmost-longest, the way Hugging Face tokenizers split text on added tokens before
/// running the model on the pieces between them.
struct SpecialTokenMatcher: Sendable {
    private struct Entry: Sendable {
        let bytes: [UInt8]
        let id: Int32
    }
    /// Sorted by bytes (lexicographically), so tokens sharing a prefix are contiguous and a
    /// shorter token precedes its extensions.
    private let entries: [Entry]
    /// Which bytes start at least one token: positions with other first bytes are skipped fast.
    private let isFirstByte: [Bool]

    init(tokens: [(text: String, id: Int32)]) {
        var unique: [[UInt8]: Int32] = [:]
        for token in tokens where !token.text.isEmpty {
            unique[Array(token.text.utf8)] = unique[Array(token.text.utf8)] ?? token.id
        }
        entries = unique.map { Entry(bytes: $0.key, id: $0.value) }
            .sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }
        var firstBytes = [Bool](repeating: false, count: 256)
        for entry in entries { firstBytes[Int(entry.bytes[0])] = true }
        isFirstByte = firstBytes
    }

    /// The longest token starting at `position`, if any.
    func longestMatch(in text: UnsafeRawBufferPointer, at position: Int) -> (id: Int32, length: Int)? {
        guard isFirstByte[Int(text[position])] else { return nil }
        var low = 0, high = entries.count  // candidate range [low, high)
        var best: (id: Int32, length: Int)?
        var depth = 0
        while low < high, position + depth < text.count {
            let byte = text[position + depth]
            // Narrow to entries whose byte at `depth` equals `byte` (entries in range share
            // the first `depth` bytes and are sorted, so that is one contiguous block;
            // entries exactly `depth` long sort first and are excluded).
            low = partition(low, high) { $0.bytes.count > depth && $0.bytes[depth] >= byte }
            high = partition(low, high) { $0.bytes.count > depth && $0.bytes[depth] > byte }
            depth += 1
            if low < high, entries[low].bytes.count == depth {
                best = (entries[low].id, depth)
            }
        }
        return best
    }

    /// First index in [low, high) where `predicate` holds (it must be monotonic there).
    private func partition(_ low: Int, _ high: Int, _ predicate: (Entry) -> Bool) -> Int {
        var low = low, high = high
        while low < high {
            let middle = (low + high) / 2
            if predicate(entries[middle]) { high = middle } else { low = middle + 1 }
        }
        return low
    }
}
