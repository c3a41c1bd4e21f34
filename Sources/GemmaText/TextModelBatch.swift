import GemmaKernels

/// One session's next decode step in a batch: `token` appended to `cache`.
public struct DecodeStep: @unchecked Sendable {
    public let cache: KVCache
    public let token: Int32

    public init(cache: KVCache, token: Int32) {
        self.cache = cache
        self.token = token
    }
}

extension TextModel {
    /// Appends one token to each of several caches in a single forward pass: every weight
    /// matrix is read once for the whole batch (the int8 kernels apply each decoded row to
    /// every session's vector), while each session attends only to its own cache. Returns each
    /// step's logits (`vocabSize` floats), in order.
    ///
    /// Results equal `append(tokens: [token], cache:)` on each cache separately, bit for bit
    /// with quantized weights (float weights go through sgemm above four sessions). The caches
    /// must be distinct objects; a full cache throws before any cache changes.
    public func appendBatch(_ steps: [DecodeStep]) throws -> [[Float]] {
        guard !steps.isEmpty else { return [] }
        if steps.count == 1 { return [try append(tokens: [steps[0].token], cache: steps[0].cache)] }
        var seen = Set<ObjectIdentifier>()
        for step in steps {
            guard seen.insert(ObjectIdentifier(step.cache)).inserted else {
                throw TextModelError.badInput("a cache appears twice in one batch")
            }
            guard step.token >= 0 && Int(step.token) < config.vocabSize else {
                throw TextModelError.badInput("token \(step.token) outside the vocabulary of \(config.vocabSize)")
            }
            guard step.cache.count + 1 <= step.cache.maxContext else {
                throw TextModelError.contextFull(needed: step.cache.count + 1, capacity: step.cache.maxContext)
            }
        }
        let width = config.hiddenSize
        let count = steps.count
        let hidden = UnsafeMutablePointer<Float>.allocate(capacity: count * width)
        defer { hidden.deallocate() }
        for (row, step) in steps.enumerated() {
            let destination = hidden + row * width
            weights.embedding.dequantizeRow(Int(step.token), into: destination)
            for j in 0..<width { destination[j] *= weights.embeddingScale }
        }
        let segments = steps.enumerated().map { row, step in
            Segment(cache: step.cache, firstPosition: step.cache.count, rows: row..<(row + 1), groupIDs: [-1])
        }
        for layer in 0..<config.layerCount {
            runLayer(layer, hidden: hidden, count: count, segments: segments)
        }
        for step in steps {
            step.cache.record(TextInput(tokens: [step.token]).fingerprints(hiddenSize: width), groups: [])
        }
        let logits = outputLogits(hidden: hidden, rows: 0..<count)
        let vocabulary = config.vocabSize
        return (0..<count).map { Array(logits[($0 * vocabulary)..<(($0 + 1) * vocabulary)]) }
    }
}
