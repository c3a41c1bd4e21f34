import Foundation
import GemmaRPC
import GemmaText

/// Gathers the decode steps of concurrent generations and runs them as one batch, so that
/// several sessions share each pass over the weights (`TextModel.appendBatch`).
///
/// A step waits on the inference queue; when its job starts, it waits up to `gatherWindow` for
/// the other generations in their decode loops to submit their steps too (they arrive a
/// sampling and a detokenization apart), then runs every step waiting. With one stream this
/// is exactly `append`; with several, each pass serves all of them.
final class DecodeBatcher: @unchecked Sendable {
    private let model: TextModel
    private let queue: InferenceQueue
    private let lock = NSLock()
    private var pending: [(step: DecodeStep, continuation: CheckedContinuation<[Float], any Error>)] = []
    private var scheduled = false
    /// Generations between `begin` and `end`: the most steps a batch can expect.
    private var active = 0
    private let gatherWindow: Duration = .milliseconds(3)

    init(model: TextModel, queue: InferenceQueue) {
        self.model = model
        self.queue = queue
    }

    /// A generation enters its decode loop.
    func begin() { lock.withLock { active += 1 } }

    /// A generation leaves its decode loop (finished, failed or cancelled).
    func end() { lock.withLock { active -= 1 } }

    /// Appends `token` to `cache` (alongside whatever other sessions are stepping) and returns
    /// the logits after it.
    func step(cache: KVCache, token: Int32) async throws -> [Float] {
        try Task.checkCancellation()
        return try await withCheckedThrowingContinuation { continuation in
            lock.lock()
            pending.append((DecodeStep(cache: cache, token: token), continuation))
            let schedule = !scheduled
            scheduled = true
            lock.unlock()
            if schedule { queue.submit { self.runPending() } }
        }
    }

    /// On the inference thread: every step waiting now, in one pass. If the batch fails, each
    /// step runs alone so that only the one at fault gets the error.
    private func runPending() {
        let deadline = ContinuousClock.now + gatherWindow
        lock.lock()
        while pending.count < active && ContinuousClock.now < deadline {
            lock.unlock()
            usleep(50)
            lock.lock()
        }
        let batch = pending
        pending = []
        scheduled = false
        lock.unlock()
        do {
            let logits = try model.appendBatch(batch.map(\.step))
            for (item, result) in zip(batch, logits) { item.continuation.resume(returning: result) }
        } catch {
            for item in batch {
                item.continuation.resume(with: Result { try model.append(tokens: [item.step.token], cache: item.step.cache) })
            }
        }
    }
}
