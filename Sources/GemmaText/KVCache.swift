import GemmaKernels

/// Keys and values of every layer for one sequence, and the inputs that produced them.
///
/// Global layers keep every position up to `maxContext`; sliding-window layers keep a ring of
/// `min(slidingWindow, maxContext)` positions (position p lives in slot p mod capacity), which
/// is all a window ever reads. Memory, in bytes, is exactly
/// `Σ over layers of capacity × kvHeads × headDim × 2 (K and V) × elementBytes`, where
/// `elementBytes` is 2 (f16) for GGUF models and 4 (f32) for safetensors ones — see `kvBytes`.
///
/// The cache records what it holds (`history`: one fingerprint per position, and the
/// bidirectional groups), so a caller can hand a whole new prompt to `TextModel.prefill` and
/// only the tokens after the longest reusable prefix are computed. A cache is used by one
/// model call at a time.
public final class KVCache: @unchecked Sendable {
    public let config: TextConfig
    /// Positions the cache can hold in total.
    public let maxContext: Int
    /// Per layer: slots in its buffers (`maxContext` for global layers, the window for local).
    public let capacities: [Int]
    /// Bytes per stored K or V element: 2 when `config.halfPrecisionAttention`, else 4.
    public let elementBytes: Int
    private let keys: [UnsafeMutableRawPointer]
    private let values: [UnsafeMutableRawPointer]
    /// One fingerprint per cached position: the token id, or a hash of an embedding override.
    public private(set) var history: [UInt64] = []
    /// Bidirectional groups among cached positions (absolute, sorted, disjoint).
    public private(set) var groups: [Range<Int>] = []

    /// Positions currently cached.
    public var count: Int { history.count }

    /// Bytes held by the K and V buffers (the formula in the type's documentation).
    public var kvBytes: Int {
        capacities.reduce(0) { $0 + $1 * config.kvDim * 2 * elementBytes }
    }

    /// The K/V bytes a cache for `maxContext` positions would take, without allocating it.
    public static func kvBytes(config: TextConfig, maxContext: Int) -> Int {
        let elementBytes = config.halfPrecisionAttention ? 2 : 4
        return capacities(config: config, maxContext: maxContext).reduce(0) { $0 + $1 * config.kvDim * 2 * elementBytes }
    }

    static func capacities(config: TextConfig, maxContext: Int) -> [Int] {
        config.globalLayers.map { $0 ? maxContext : min(config.slidingWindow, maxContext) }
    }

    init(config: TextConfig, maxContext: Int) {
        precondition(maxContext > 0, "maxContext must be positive")
        self.config = config
        self.maxContext = maxContext
        capacities = Self.capacities(config: config, maxContext: maxContext)
        let elementBytes = config.halfPrecisionAttention ? 2 : 4
        self.elementBytes = elementBytes
        func allocate(_ capacity: Int) -> UnsafeMutableRawPointer {
            let bytes = capacity * config.kvDim * elementBytes
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            buffer.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            return buffer
        }
        keys = capacities.map(allocate)
        values = capacities.map(allocate)
    }

    deinit {
        for buffer in keys { buffer.deallocate() }
        for buffer in values { buffer.deallocate() }
    }

    /// Forgets everything (buffers are reused).
    public func reset() {
        history.removeAll(keepingCapacity: true)
        groups.removeAll()
    }

    /// Writes one position's K and V rows (`kvDim` floats each) into `slot` of `layer`.
    func store(layer: Int, slot: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        let offset = slot * config.kvDim * elementBytes
        if elementBytes == 2 {
            HalfFloat.floatsToF16(key, (keys[layer] + offset).assumingMemoryBound(to: UInt16.self), count: config.kvDim)
            HalfFloat.floatsToF16(value, (values[layer] + offset).assumingMemoryBound(to: UInt16.self), count: config.kvDim)
        } else {
            (keys[layer] + offset).assumingMemoryBound(to: Float.self).update(from: key, count: config.kvDim)
            (values[layer] + offset).assumingMemoryBound(to: Float.self).update(from: value, count: config.kvDim)
        }
    }

    /// Reads `count` floats of slot `slot`'s K (or V) row of `layer`.
    func load(layer: Int, slot: Int, count: Int, value: Bool, into destination: UnsafeMutablePointer<Float>) {
        let base = (value ? values : keys)[layer] + slot * config.kvDim * elementBytes
        if elementBytes == 2 {
            HalfFloat.f16ToFloats(base.assumingMemoryBound(to: UInt16.self), destination, count: count)
        } else {
            destination.update(from: base.assumingMemoryBound(to: Float.self), count: count)
        }
    }

    /// Layer `layer`'s K (or V) rows in place: slot s's row starts `s · kvDim` elements
    /// (`elementBytes` each) in.
    func rows(layer: Int, value: Bool) -> UnsafeRawPointer {
        UnsafeRawPointer((value ? values : keys)[layer])
    }

    /// Slot of `position` in layer `layer`'s buffers.
    @inline(__always)
    func slot(layer: Int, position: Int) -> Int {
        position % capacities[layer]
    }

    /// The oldest position layer `layer` still holds when `count` positions are cached.
    func oldestHeld(layer: Int) -> Int {
        max(0, count - capacities[layer])
    }

    /// Whether the cache can be cut back to its first `length` positions and extended from
    /// there: every local layer must still hold the keys position `length` will attend to
    /// (`length − window + 1 ..< length`); a ring that rolled past them cannot.
    public func canTruncate(to length: Int) -> Bool {
        guard length >= 0, length <= count else { return false }
        if length == count || length == 0 { return true }
        for layer in capacities.indices where !config.globalLayers[layer] {
            let needed = max(0, length - config.slidingWindow + 1)
            if needed < oldestHeld(layer: layer) { return false }
        }
        return true
    }

    /// Cuts the cache back to `length` positions. Precondition: `canTruncate(to: length)` and
    /// `length` is not inside a cached bidirectional group.
    func truncate(to length: Int) {
        precondition(canTruncate(to: length), "cannot truncate a rolled window to \(length)")
        history.removeLast(count - length)
        groups.removeAll { $0.lowerBound >= length }
        precondition(groups.allSatisfy { $0.upperBound <= length }, "truncating inside a bidirectional group")
    }

    /// Records positions appended by the model.
    func record(_ fingerprints: [UInt64], groups newGroups: [Range<Int>]) {
        history.append(contentsOf: fingerprints)
        groups.append(contentsOf: newGroups)
    }
}
