import GemmaRPC
import GemmaText

/// The KV caches that outlive a call, by session id, within a memory budget.
///
/// A call checks a session out (creating it if new), uses its cache alone, and checks it back
/// in. When a new cache would exceed the budget, idle sessions are evicted, least recently
/// used first; if that is not enough the call gets `RESOURCE_EXHAUSTED`.
actor SessionStore {
    private struct Entry {
        let cache: KVCache
        var busy: Bool
        var lastUsed: ContinuousClock.Instant
    }

    let budgetBytes: Int
    private var sessions: [String: Entry] = [:]
    /// Caches of one-off calls count against the budget too while they run.
    private var transientBytes = 0

    init(budgetBytes: Int) {
        self.budgetBytes = budgetBytes
    }

    var count: Int { sessions.count }
    var bytesInUse: Int { sessions.values.reduce(transientBytes) { $0 + $1.cache.kvBytes } }

    /// The session's cache, created with `make` when the id is new. Throws
    /// `FAILED_PRECONDITION` while another call uses the session.
    func checkOut(_ id: String, bytes: Int, make: () -> KVCache) throws -> KVCache {
        if var entry = sessions[id] {
            guard !entry.busy else {
                throw RPCError.failedPrecondition("session '\(id)' is in use by another call")
            }
            entry.busy = true
            entry.lastUsed = .now
            sessions[id] = entry
            return entry.cache
        }
        try reserve(bytes)
        let cache = make()
        sessions[id] = Entry(cache: cache, busy: true, lastUsed: .now)
        return cache
    }

    func checkIn(_ id: String) {
        sessions[id]?.busy = false
        sessions[id]?.lastUsed = .now
    }

    /// Reserves room for a one-off call's cache; `releaseTransient` gives it back.
    func reserveTransient(_ bytes: Int) throws {
        try reserve(bytes)
        transientBytes += bytes
    }

    func releaseTransient(_ bytes: Int) { transientBytes -= bytes }

    /// Drops a session; false when there was none. A busy session is dropped when its call
    /// ends (the call keeps its cache until then).
    func release(_ id: String) -> Bool {
        sessions.removeValue(forKey: id) != nil
    }

    private func reserve(_ bytes: Int) throws {
        guard bytes <= budgetBytes else {
            throw RPCError.resourceExhausted("a cache of \(bytes) bytes exceeds the KV budget of \(budgetBytes) bytes")
        }
        while bytesInUse + bytes > budgetBytes {
            let idle = sessions.filter { !$0.value.busy }.min { $0.value.lastUsed < $1.value.lastUsed }
            guard let (id, _) = idle else {
                throw RPCError.resourceExhausted("the KV budget of \(budgetBytes) bytes is taken by sessions in use")
            }
            sessions.removeValue(forKey: id)
        }
    }
}
