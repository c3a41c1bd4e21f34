import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GemmaKernels
import GemmaWeights

/// The Gemma 3 text decoder: weights, forward pass, and the calls a decoder service makes.
///
/// ```swift
/// let model = try TextModel(path: "gemma-3-270m.gguf", threads: 2)   // or a Hugging Face folder
/// let cache = model.makeCache(maxContext: 4096)
/// var logits = try model.prefill(tokens: promptIDs, cache: cache)     // keeps the cached prefix
/// var sampler = Sampler(parameters: parameters)
/// let next = sampler.sample(logits: logits, history: promptIDs)
/// logits = try model.append(tokens: [next], cache: cache)             // one decode step
/// let rows = try model.appendReturningAllLogits(TextInput(tokens: ids), cache: other)  // scoring
/// ```
/// Images: pass a `TextInput` whose `embeddingOverrides` hold the soft tokens (not scaled) and
/// whose `bidirectionalGroups` cover each image's positions.
///
/// Numerics: activations are f32; weights stay in their stored format. Quantized weights use
/// int8 activation blocks as ggml does, with one arithmetic per product whatever the batch
/// (`WeightMatrix.matmul`): a prompt prefilled at once, in pieces or token by token, and
/// sessions decoded alone or together (`appendBatch`), give the same logits bit for bit, on
/// any instruction set. GGUF models keep K/V in f16 and round Q and attention weights to f16
/// like llama.cpp, safetensors models compute attention in f32 like transformers. Float
/// weights in batches above four positions go through sgemm.
///
/// A model may serve many caches but runs one call at a time (its thread pool is shared):
/// callers serialize calls, e.g. on one dedicated thread.
public final class TextModel: @unchecked Sendable {
    public let config: TextConfig
    let weights: TextWeights
    let kernels: KernelContext
    /// Positions processed per forward batch during prefill (bounds scratch memory).
    public var batchSize = 512
    private let localInverseFrequencies: [Float]
    private let globalInverseFrequencies: [Float]

    /// Threads the kernels split work across.
    public var threads: Int { kernels.threads }

    /// Loads a checkpoint: a `.gguf` file, or a Hugging Face folder (`config.json` and
    /// `model.safetensors` or sharded safetensors with an index).
    public init(path: String, threads: Int = 2) throws {
        let weights = try TextWeights.load(path: path)
        self.weights = weights
        self.config = weights.config
        self.kernels = KernelContext(threads: threads)
        localInverseFrequencies = Self.inverseFrequencies(
            base: config.localRopeBase, scaling: config.localRopeScaling, headDim: config.headDim)
        globalInverseFrequencies = Self.inverseFrequencies(
            base: config.globalRopeBase, scaling: config.globalRopeScaling, headDim: config.headDim)
    }

    /// A new, empty cache for up to `maxContext` positions (at most the trained context).
    public func makeCache(maxContext: Int) -> KVCache {
        KVCache(config: config, maxContext: max(1, min(maxContext, config.maxPositions)))
    }

    // MARK: public entry points

    /// Runs `input` as the whole sequence held by `cache`: keeps the longest prefix the cache
    /// already holds (as far as its rings still allow), computes the rest, and returns the last
    /// position's logits (`vocabSize` floats). At least the last position is always computed.
    public func prefill(_ input: TextInput, cache: KVCache) throws -> [Float] {
        guard input.count > 0 else { throw TextModelError.badInput("empty input") }
        try input.validate(hiddenSize: config.hiddenSize)
        let reuse = reusablePrefix(of: input, cache: cache)
        if reuse == 0 { cache.reset() } else { cache.truncate(to: reuse) }
        return try forward(input.dropping(first: reuse, hiddenSize: config.hiddenSize), cache: cache, allLogits: false)
    }

    public func prefill(tokens: [Int32], cache: KVCache) throws -> [Float] {
        try prefill(TextInput(tokens: tokens), cache: cache)
    }

    /// Appends `input` after the cached positions and returns the last position's logits.
    public func append(_ input: TextInput, cache: KVCache) throws -> [Float] {
        guard input.count > 0 else { throw TextModelError.badInput("empty input") }
        try input.validate(hiddenSize: config.hiddenSize)
        return try forward(input, cache: cache, allLogits: false)
    }

    public func append(tokens: [Int32], cache: KVCache) throws -> [Float] {
        try append(TextInput(tokens: tokens), cache: cache)
    }

    /// Appends `input` and returns logits for every appended position (`count × vocabSize`,
    /// row after row): position i's row predicts the token after position i (for scoring).
    public func appendReturningAllLogits(_ input: TextInput, cache: KVCache) throws -> [Float] {
        guard input.count > 0 else { throw TextModelError.badInput("empty input") }
        try input.validate(hiddenSize: config.hiddenSize)
        return try forward(input, cache: cache, allLogits: true)
    }

    /// Where to cut a long prefill of `input` into pieces of at most `chunk` positions after
    /// the first `reused` (none inside a bidirectional group): prefilling `input.prefix(cut)`
    /// for each cut in order and then `input` computes exactly what one `prefill(input)`
    /// computes (every kernel's result for a position is independent of the batch it is in),
    /// while other work can run between the pieces — a serving loop keeps other streams
    /// decoding during a long prompt. Empty when the rest fits in one piece.
    public func prefillCuts(of input: TextInput, after reused: Int, chunk: Int) -> [Int] {
        guard chunk > 0 else { return [] }
        var cuts: [Int] = []
        var cut = reused + chunk
        while cut < input.count {
            if let group = input.bidirectionalGroups.first(where: { $0.lowerBound < cut && cut < $0.upperBound }) {
                cut = group.lowerBound > (cuts.last ?? reused) ? group.lowerBound : group.upperBound
            }
            if cut >= input.count { break }
            cuts.append(cut)
            cut += chunk
        }
        return cuts
    }

    /// How many leading positions of `input` `cache` can keep: the common prefix, short of
    /// the last position (whose logits are needed), not ending inside a bidirectional group,
    /// and 0 when a local layer's ring has rolled past what the first new position needs.
    public func reusablePrefix(of input: TextInput, cache: KVCache) -> Int {
        let fingerprints = input.fingerprints(hiddenSize: config.hiddenSize)
        var length = 0
        let limit = min(cache.count, fingerprints.count - 1)
        while length < limit && cache.history[length] == fingerprints[length] { length += 1 }
        // Keys inside a group were computed with the whole group visible: a group must be
        // kept whole and identical, or recomputed.
        var changed = true
        while changed {
            changed = false
            for group in cache.groups + input.bidirectionalGroups where group.lowerBound < length {
                let inBoth = cache.groups.contains(group) && input.bidirectionalGroups.contains(group)
                if group.upperBound > length || !inBoth {
                    length = group.lowerBound
                    changed = true
                }
            }
        }
        return cache.canTruncate(to: length) ? length : 0
    }

    // MARK: the forward pass

    /// Appends `input` to `cache` in batches; returns the last position's logits, or every
    /// position's when `allLogits`.
    private func forward(_ input: TextInput, cache: KVCache, allLogits: Bool) throws -> [Float] {
        let needed = cache.count + input.count
        guard needed <= cache.maxContext else {
            throw TextModelError.contextFull(needed: needed, capacity: cache.maxContext)
        }
        var overridden = [Bool](repeating: false, count: input.count)
        for override in input.embeddingOverrides {
            for i in override.start..<(override.start + override.values.count / config.hiddenSize) { overridden[i] = true }
        }
        for (i, token) in input.tokens.enumerated() where !overridden[i] && (token < 0 || Int(token) >= config.vocabSize) {
            throw TextModelError.badInput("token \(token) outside the vocabulary of \(config.vocabSize)")
        }
        let fingerprints = input.fingerprints(hiddenSize: config.hiddenSize)
        var logits: [Float] = []
        if allLogits { logits.reserveCapacity(input.count * config.vocabSize) }
        var start = 0
        while start < input.count {
            let end = batchEnd(from: start, input: input)
            let batch = start..<end
            let hidden = embed(input, positions: batch)
            defer { hidden.deallocate() }
            let firstPosition = cache.count
            let groupIDs = batch.map { i in input.bidirectionalGroups.firstIndex { $0.contains(i) } ?? -1 }
            let segments = [Segment(cache: cache, firstPosition: firstPosition, rows: 0..<batch.count, groupIDs: groupIDs)]
            for layer in 0..<config.layerCount {
                runLayer(layer, hidden: hidden, count: batch.count, segments: segments)
            }
            cache.record(Array(fingerprints[batch]),
                         groups: input.bidirectionalGroups.filter { batch.contains($0.lowerBound) }
                             .map { ($0.lowerBound + firstPosition - start)..<($0.upperBound + firstPosition - start) })
            if allLogits {
                logits += outputLogits(hidden: hidden, rows: 0..<batch.count)
            } else if end == input.count {
                logits = outputLogits(hidden: hidden, rows: (batch.count - 1)..<batch.count)
            }
            start = end
        }
        return logits
    }

    /// End of the batch starting at `start`: at most `batchSize` positions, moved so no
    /// bidirectional group is split (a group longer than a batch gets a batch of its own).
    private func batchEnd(from start: Int, input: TextInput) -> Int {
        var end = min(input.count, start + max(1, batchSize))
        if let group = input.bidirectionalGroups.first(where: { $0.lowerBound < end && end < $0.upperBound }) {
            end = group.lowerBound > start ? group.lowerBound : group.upperBound
        }
        return end
    }

    /// Token embeddings × scale, or overrides as given, for `positions` of `input`:
    /// a new `count × hidden` buffer the caller deallocates.
    private func embed(_ input: TextInput, positions: Range<Int>) -> UnsafeMutablePointer<Float> {
        let width = config.hiddenSize
        let hidden = UnsafeMutablePointer<Float>.allocate(capacity: positions.count * width)
        for (row, i) in positions.enumerated() {
            let destination = hidden + row * width
            if let override = input.embeddingOverrides.first(where: { i >= $0.start && i < $0.start + $0.values.count / width }) {
                let offset = (i - override.start) * width
                override.values.withUnsafeBufferPointer { destination.update(from: $0.baseAddress! + offset, count: width) }
            } else {
                weights.embedding.dequantizeRow(Int(input.tokens[i]), into: destination)
                for j in 0..<width { destination[j] *= weights.embeddingScale }
            }
        }
        return hidden
    }

    /// Rows of a forward batch that extend one cache: rows `rows` of the hidden state are
    /// positions `firstPosition…` of `cache` (`groupIDs`: bidirectional group per row, or −1).
    struct Segment {
        let cache: KVCache
        let firstPosition: Int
        let rows: Range<Int>
        let groupIDs: [Int]
    }

    /// One decoder layer over `count` rows, in place: `x += postNorm(attention(inputNorm(x)))`,
    /// then `x += postNorm(mlp(preNorm(x)))`. Each segment's rows attend to their own cache; the
    /// matrix products run over all rows at once (several sessions' decode steps share one pass
    /// over the weights).
    func runLayer(_ index: Int, hidden x: UnsafeMutablePointer<Float>, count: Int, segments: [Segment]) {
        let c = config
        let layer = weights.layers[index]
        let width = c.hiddenSize
        let normed = UnsafeMutableBufferPointer<Float>.allocate(capacity: count * width)
        defer { normed.deallocate() }

        // Attention block.
        normed.baseAddress!.update(from: x, count: count * width)
        rmsNorm(normed, layer.inputNorm)
        let attended = attention(layer: index, weights: layer, input: normed.baseAddress!, count: count,
                                 segments: segments)
        defer { attended.deallocate() }
        rmsNorm(attended, layer.postAttentionNorm)
        for i in 0..<(count * width) { x[i] += attended[i] }

        // Feed-forward block: down(gelu_tanh(gate(h)) · up(h)).
        normed.baseAddress!.update(from: x, count: count * width)
        rmsNorm(normed, layer.preFeedForwardNorm)
        let gate = UnsafeMutableBufferPointer<Float>.allocate(capacity: count * c.intermediateSize)
        let up = UnsafeMutableBufferPointer<Float>.allocate(capacity: count * c.intermediateSize)
        defer { gate.deallocate(); up.deallocate() }
        WeightMatrix.multiplyGroup([layer.gate, layer.up], normed.baseAddress!, count: count,
                                   into: [gate.baseAddress!, up.baseAddress!], context: kernels)
        // GELU(gate) · up, in row chunks across the pool.
        let intermediate = c.intermediateSize
        kernels.parallelFor(count) { row in
            Dense.gatedGelu(UnsafeMutableBufferPointer(rebasing: gate[(row * intermediate)..<((row + 1) * intermediate)]),
                            up: up.baseAddress! + row * intermediate, halfPrecision: c.halfPrecisionGELU)
        }
        let down = UnsafeMutableBufferPointer<Float>.allocate(capacity: count * width)
        defer { down.deallocate() }
        layer.down.matmul(gate.baseAddress!, count: count, into: down.baseAddress!, context: kernels)
        rmsNorm(down, layer.postFeedForwardNorm)
        for i in 0..<(count * width) { x[i] += down[i] }
    }

    /// Self-attention for `count` new rows: projections over all rows, then per segment
    /// (`attend`) per-head RMSNorm of q and k, RoPE, query scaling, cache update, masked
    /// softmax attention; then the output projection. Returns a new `count × hidden` buffer.
    private func attention(layer index: Int, weights layer: LayerWeights, input: UnsafeMutablePointer<Float>,
                           count: Int, segments: [Segment]) -> UnsafeMutableBufferPointer<Float> {
        let c = config
        let (qDim, kvDim) = (c.queryDim, c.kvDim)
        let queries = UnsafeMutableBufferPointer<Float>.allocate(capacity: count * qDim)
        let keys = UnsafeMutableBufferPointer<Float>.allocate(capacity: count * kvDim)
        let values = UnsafeMutableBufferPointer<Float>.allocate(capacity: count * kvDim)
        defer { queries.deallocate(); keys.deallocate(); values.deallocate() }
        // The three projections in one pass of the thread pool.
        WeightMatrix.multiplyGroup([layer.query, layer.key, layer.value], input, count: count,
                                   into: [queries.baseAddress!, keys.baseAddress!, values.baseAddress!],
                                   context: kernels)
        let mixed = UnsafeMutableBufferPointer<Float>.allocate(capacity: count * qDim)
        defer { mixed.deallocate() }
        for segment in segments {
            let rows = segment.rows
            attend(layer: index, weights: layer,
                   queries: UnsafeMutableBufferPointer(rebasing: queries[(rows.lowerBound * qDim)..<(rows.upperBound * qDim)]),
                   keys: UnsafeMutableBufferPointer(rebasing: keys[(rows.lowerBound * kvDim)..<(rows.upperBound * kvDim)]),
                   values: UnsafeMutableBufferPointer(rebasing: values[(rows.lowerBound * kvDim)..<(rows.upperBound * kvDim)]),
                   mixed: UnsafeMutableBufferPointer(rebasing: mixed[(rows.lowerBound * qDim)..<(rows.upperBound * qDim)]),
                   count: rows.count, firstPosition: segment.firstPosition, groupIDs: segment.groupIDs,
                   cache: segment.cache)
        }
        let output = UnsafeMutableBufferPointer<Float>.allocate(capacity: count * c.hiddenSize)
        layer.output.matmul(mixed.baseAddress!, count: count, into: output.baseAddress!, context: kernels)
        return output
    }

    /// Attention of one segment's `count` rows (projected `queries`, `keys`, `values`) over
    /// `cache`, into `mixed` (`count × queryDim`); stores the new keys and values.
    private func attend(layer index: Int, weights layer: LayerWeights, queries: UnsafeMutableBufferPointer<Float>,
                        keys: UnsafeMutableBufferPointer<Float>, values: UnsafeMutableBufferPointer<Float>,
                        mixed: UnsafeMutableBufferPointer<Float>, count: Int, firstPosition: Int, groupIDs: [Int],
                        cache: KVCache) {
        let c = config
        let isGlobal = c.globalLayers[index]
        let (qDim, kvDim, headDim) = (c.queryDim, c.kvDim, c.headDim)

        // QK-norm is per head (rows of head_dim), before RoPE.
        rmsNorm(queries, layer.queryNorm)
        rmsNorm(keys, layer.keyNorm)
        let frequencies = isGlobal ? globalInverseFrequencies : localInverseFrequencies
        let (rotatedQueries, rotatedKeys) = (queries.baseAddress!, keys.baseAddress!)
        kernels.parallelFor(count) { t in
            // One position's rotation serves every query and key head.
            withUnsafeTemporaryAllocation(of: Float.self, capacity: headDim) { rotation in
                Self.rotation(position: firstPosition + t, frequencies, into: rotation.baseAddress!)
                for h in 0..<c.headCount { Self.applyRoPE(rotatedQueries + t * qDim + h * headDim, rotation: rotation.baseAddress!, half: headDim / 2) }
                for h in 0..<c.kvHeadCount { Self.applyRoPE(rotatedKeys + t * kvDim + h * headDim, rotation: rotation.baseAddress!, half: headDim / 2) }
            }
        }
        let scale = c.queryScale
        for i in queries.indices { queries[i] *= scale }
        if c.halfPrecisionAttention {
            // llama.cpp keeps K and V in f16 and converts Q to f16 for the K·Q product.
            HalfFloat.roundToHalf(queries)
            HalfFloat.roundToHalf(keys)
            HalfFloat.roundToHalf(values)
        }

        // The keys this batch attends to, as one contiguous run of positions
        // `keyStart ..< firstPosition + count`.
        let window = c.slidingWindow
        let keyStart = isGlobal ? 0 : max(0, firstPosition - window + 1)
        let keyCount = firstPosition + count - keyStart
        // A batch reads keys from one contiguous f32 run in position order: the older keys it
        // may see (a ring's slots are not in position order, and an f16 cache needs
        // converting), then the batch's own. Taken before the batch overwrites ring slots. A
        // global layer with an f32 cache is such a run already (slot = position). A single
        // position (decode) otherwise reads the cache in place (`attendDecode`).
        var keyRun: UnsafePointer<Float>?, valueRun: UnsafePointer<Float>?
        var ownedRuns: [UnsafeMutablePointer<Float>] = []
        defer { ownedRuns.forEach { $0.deallocate() } }
        if isGlobal && cache.elementBytes == 4 {
            keyRun = cache.rows(layer: index, value: false).assumingMemoryBound(to: Float.self)
            valueRun = cache.rows(layer: index, value: true).assumingMemoryBound(to: Float.self)
        } else if count > 1 {
            // An f16 cache is converted once per layer here, not once per head in the loop below.
            let k = UnsafeMutablePointer<Float>.allocate(capacity: keyCount * kvDim)
            let v = UnsafeMutablePointer<Float>.allocate(capacity: keyCount * kvDim)
            ownedRuns = [k, v]
            for p in keyStart..<firstPosition {
                let slot = cache.slot(layer: index, position: p)
                cache.load(layer: index, slot: slot, count: kvDim, value: false, into: k + (p - keyStart) * kvDim)
                cache.load(layer: index, slot: slot, count: kvDim, value: true, into: v + (p - keyStart) * kvDim)
            }
            (k + (firstPosition - keyStart) * kvDim).update(from: keys.baseAddress!, count: count * kvDim)
            (v + (firstPosition - keyStart) * kvDim).update(from: values.baseAddress!, count: count * kvDim)
            keyRun = UnsafePointer(k)
            valueRun = UnsafePointer(v)
        }

        // Store the batch in the cache (a ring keeps only its last `capacity` positions).
        let capacity = cache.capacities[index]
        for t in max(0, count - capacity)..<count {
            cache.store(layer: index, slot: cache.slot(layer: index, position: firstPosition + t),
                        key: keys.baseAddress! + t * kvDim, value: values.baseAddress! + t * kvDim)
        }

        let groupSize = c.headCount / c.kvHeadCount
        // Every (query, key) product has the arithmetic of one `dot` call and every mix that of
        // `axpy` calls in key order, whether the blocked kernels run over a contiguous run of
        // keys (a batch) or over the cache's rows in place (decode, `attendDecode`): attention
        // gives the same values in prefill and in decode. A batch's work is split over (head,
        // run of 8 queries); each task writes only its own outputs.
        let mixedBase = mixed.baseAddress!, queryBase = queries.baseAddress!
        let halfPrecision = c.halfPrecisionAttention
        // Split across the pool from a few hundred (query, key, head) triples: within a forward
        // pass the pool's threads are polling, so a split costs ~1 µs (the 270M's decode, one
        // K/V head, ran its attention on one thread below 512 keys: ~5% of that thread's step).
        let parallel = count * keyCount * c.headCount >= 256
        guard let keyRun, let valueRun else {
            // Decode reads the cache in place: each key's slot, worked out once for all heads.
            let slots = (0..<keyCount).map { Int32(cache.slot(layer: index, position: keyStart + $0)) }
            attendDecode(layer: index, queries: queryBase, mixed: mixedBase, slots: slots, cache: cache,
                         roundWeights: halfPrecision, parallel: parallel)
            return
        }
        let queryRuns = (count + 7) / 8
        // The keys row t may see form one run: causal, plus the rest of its bidirectional group
        // (members ahead of the query are keys of this batch: a group never spans batches);
        // local layers drop keys at or before query − window (transformers' one-sided window,
        // so group members ahead stay visible). Computed once per row, for every head.
        var groupAhead = [Int](repeating: 0, count: count)  // following rows of the same group
        if count > 1 {
            for t in stride(from: count - 2, through: 0, by: -1) where groupIDs[t] >= 0 && groupIDs[t + 1] == groupIDs[t] {
                groupAhead[t] = groupAhead[t + 1] + 1
            }
        }
        let visibleKeys = (0..<count).map { t -> Range<Int> in
            let queryPosition = firstPosition + t
            let first = isGlobal ? keyStart : max(keyStart, queryPosition - window + 1)
            return (first - keyStart)..<(queryPosition + groupAhead[t] + 1 - keyStart)
        }
        // Blocked products over the keys some query of a run may see.
        let attendTask = { (task: Int) in
            let h = task % c.headCount
            let kvOffset = (h / groupSize) * headDim
            let firstQuery = (task / c.headCount) * 8
            let queryRange = firstQuery..<min(count, firstQuery + 8)
            let low = visibleKeys[queryRange].map(\.lowerBound).min()!
            let high = visibleKeys[queryRange].map(\.upperBound).max()!
            let width = high - low
            let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, queryRange.count * width))
            defer { scores.deallocate() }
            VectorOps.attentionScores(queryBase + firstQuery * qDim + h * headDim, queries: queryRange.count,
                                      queryStride: qDim, rows: keyRun + low * kvDim + kvOffset, rowStride: kvDim, keys: width,
                                      count: headDim, into: scores.baseAddress!, scoreStride: width)
            for (r, t) in queryRange.enumerated() {
                let row = UnsafeMutableBufferPointer(rebasing: scores[(r * width)..<((r + 1) * width)])
                for j in low..<visibleKeys[t].lowerBound { row[j - low] = -.infinity }
                for j in visibleKeys[t].upperBound..<high { row[j - low] = -.infinity }
                Dense.softmax(row)
                if halfPrecision { HalfFloat.roundToHalf(row) }
            }
            VectorOps.attentionMix(scores.baseAddress!, queries: queryRange.count, weightStride: width,
                                   rows: valueRun + low * kvDim + kvOffset, rowStride: kvDim, keys: width,
                                   count: headDim, into: mixedBase + firstQuery * qDim + h * headDim, outStride: qDim)
        }
        let tasks = queryRuns * c.headCount
        if parallel {
            kernels.parallelFor(tasks, attendTask)
        } else {
            for task in 0..<tasks { attendTask(task) }
        }
    }

    /// Decode (one position): the cache's slots are read in place and the query heads that share
    /// a K/V head go through the blocked kernels together, so each key and value row is loaded
    /// (and an f16 row widened) once for all of them; scores are split across the pool by keys,
    /// the mix by dimensions. Bit for bit the per-key `dot`/`axpy` calls (the kernels' contract).
    private func attendDecode(layer index: Int, queries: UnsafeMutablePointer<Float>, mixed: UnsafeMutablePointer<Float>,
                              slots: [Int32], cache: KVCache, roundWeights: Bool, parallel: Bool) {
        let c = config
        let (headDim, keyCount) = (c.headDim, slots.count)
        let groupSize = c.headCount / c.kvHeadCount
        let (half, elementBytes) = (cache.elementBytes == 2, cache.elementBytes)
        // K/V head g's rows start g · headDim elements into each slot's row.
        let (keys, values) = (cache.rows(layer: index, value: false), cache.rows(layer: index, value: true))
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: c.headCount * keyCount)
        defer { scores.deallocate() }
        // Four runs of keys per K/V head (whole blocks of 4, rounded up so that no fifth, short
        // run is left to one thread).
        let keyChunk = parallel ? max(4, ((keyCount + 3) / 4 + 3) / 4 * 4) : keyCount
        let keyTasks = (keyCount + keyChunk - 1) / keyChunk
        // Dimensions of the mix in two halves (whole 64-wide blocks where the head allows).
        let pieces = parallel && headDim % 128 == 0 ? 2 : 1
        let width = headDim / pieces
        slots.withUnsafeBufferPointer { slots in
            let score = { (task: Int) in
                let g = task / keyTasks, first = (task % keyTasks) * keyChunk
                VectorOps.attentionScores(queries + g * groupSize * headDim, queries: groupSize, queryStride: headDim,
                                          rows: keys + g * headDim * elementBytes, half: half, slots: slots.baseAddress! + first,
                                          rowStride: c.kvDim, keys: min(keyChunk, keyCount - first), count: headDim,
                                          into: scores + g * groupSize * keyCount + first, scoreStride: keyCount)
            }
            if parallel { kernels.parallelFor(c.kvHeadCount * keyTasks, score) } else { (0..<(c.kvHeadCount * keyTasks)).forEach(score) }
            for h in 0..<c.headCount {
                let row = UnsafeMutableBufferPointer(start: scores + h * keyCount, count: keyCount)
                Dense.softmax(row)
                if roundWeights { HalfFloat.roundToHalf(row) }
            }
            let mix = { (task: Int) in
                let g = task / pieces, offset = g * headDim + (task % pieces) * width
                VectorOps.attentionMix(scores + g * groupSize * keyCount, queries: groupSize, weightStride: keyCount,
                                       rows: values + offset * elementBytes, half: half, slots: slots.baseAddress!,
                                       rowStride: c.kvDim, keys: keyCount, count: width,
                                       into: mixed + g * groupSize * headDim + (task % pieces) * width, outStride: headDim)
            }
            if parallel { kernels.parallelFor(c.kvHeadCount * pieces, mix) } else { (0..<(c.kvHeadCount * pieces)).forEach(mix) }
        }
    }

    /// Final norm, then logits from the output head (usually the tied embedding) for `rows` of `hidden`,
    /// soft-capped where the config says so.
    func outputLogits(hidden: UnsafeMutablePointer<Float>, rows: Range<Int>) -> [Float] {
        let width = config.hiddenSize
        let normed = UnsafeMutableBufferPointer(start: hidden + rows.lowerBound * width, count: rows.count * width)
        rmsNorm(normed, weights.finalNorm)
        // Every element is written by the product: no zero-filling first.
        return [Float](unsafeUninitializedCapacity: rows.count * config.vocabSize) { out, initialized in
            weights.outputHead.matmul(normed.baseAddress!, count: rows.count, into: out.baseAddress!, context: kernels)
            initialized = rows.count * config.vocabSize
            if let cap = config.finalLogitSoftcap {
                // 262k tanhf calls per position: split across the pool (all-position logits of
                // the test models take several chunks too).
                let (logits, count, chunk) = (out.baseAddress!, initialized, 4096)
                kernels.parallelFor((count + chunk - 1) / chunk) { c in
                    for i in (c * chunk)..<min(count, (c + 1) * chunk) { logits[i] = tanhf(logits[i] / cap) * cap }
                }
            }
        }
    }

    // MARK: blocks

    /// RMSNorm of every row (row length = weight length); weights already hold `1 + w`. Many
    /// rows (prefill) are split across the pool.
    private func rmsNorm(_ x: UnsafeMutableBufferPointer<Float>, _ weight: [Float]) {
        let width = weight.count, rows = x.count / weight.count
        let perTask = rows < 32 ? rows : (rows + 4 * kernels.threads - 1) / (4 * kernels.threads)
        kernels.parallelFor((rows + perTask - 1) / perTask) { task in
            let chunk = UnsafeMutableBufferPointer(rebasing: x[(task * perTask * width)..<(min(rows, (task + 1) * perTask) * width)])
            weight.withUnsafeBufferPointer { Dense.rmsNorm(chunk, weight: $0, eps: config.rmsNormEps, addOne: false) }
        }
    }

    /// cos and sin of RoPE's angles at `position` (`half` of each), angles as transformers
    /// computes them (inv_freq · position in f32).
    private static func rotation(position: Int, _ inverseFrequencies: [Float], into rotation: UnsafeMutablePointer<Float>) {
        let half = inverseFrequencies.count
        let p = Float(position)
        for i in 0..<half {
            let angle = inverseFrequencies[i] * p
            rotation[i] = cosf(angle)
            rotation[half + i] = sinf(angle)
        }
    }

    /// RoPE on one head vector, pairing element i with i + headDim/2 (the "rotate half" /
    /// NeoX layout used by transformers and llama.cpp for Gemma).
    private static func applyRoPE(_ v: UnsafeMutablePointer<Float>, rotation: UnsafePointer<Float>, half: Int) {
        for i in 0..<half {
            let cosine = rotation[i], sine = rotation[half + i]
            let a = v[i], b = v[i + half]
            v[i] = a * cosine - b * sine
            v[i + half] = b * cosine + a * sine
        }
    }

    /// `1 / base^(2i/d) / scaling` in f32, as transformers builds `inv_freq` (linear scaling
    /// divides the frequencies, i.e. the positions).
    static func inverseFrequencies(base: Float, scaling: Float, headDim: Int) -> [Float] {
        (0..<(headDim / 2)).map { i in
            let exponent = Float(2 * i) / Float(headDim)
            return (1 / powf(base, exponent)) / scaling
        }
    }
}
