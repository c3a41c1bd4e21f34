import Foundation
import GemmaAPI
import GemmaRPC
import GemmaText

/// One generation as the engine runs it: its cache, sampler and limits, and the events its
/// request handler reads (tokens as they are sampled, or why the generation ended).
final class Generation: @unchecked Sendable {
    enum Event: Sendable {
        /// A sampled token, with the logits it was sampled from when log-probabilities are asked
        /// for (the handler computes them, off the inference thread); `limit` is `.length` or
        /// `.context` when the generation ends with it.
        case token(Int32, logits: [Float]?, limit: V1.FinishReason)
        /// The model chose `<eos>` or `<end_of_turn>` (not sent as a token).
        case endOfText
        case failed(any Error)
    }

    struct Limits {
        var maxTokens: Int
        var ignoreEos: Bool
        var topLogprobs: Int
        /// The service's context: a cache this long ends with `.context`, a shorter one with
        /// `.length` (it was sized to the request).
        var serviceContext: Int
    }

    fileprivate enum State { case waiting, ready, running, parked, detached }

    let cache: KVCache
    let events: AsyncStream<Event>
    fileprivate let continuation: AsyncStream<Event>.Continuation
    fileprivate let limits: Limits
    // The inference thread's alone.
    fileprivate var sampler: Sampler
    fileprivate var history: [Int32]  // what the penalties see, grown in place
    fileprivate var generated = 0
    // Under the engine's lock.
    fileprivate var state = State.waiting
    fileprivate var unacknowledged = 0
    fileprivate var detachWaiters: [CheckedContinuation<Void, Never>] = []

    init(cache: KVCache, prompt: [Int32], sampling: SamplingParameters, limits: Limits) {
        self.cache = cache
        self.limits = limits
        sampler = Sampler(parameters: sampling)
        history = prompt
        (events, continuation) = AsyncStream.makeStream(of: Event.self)
    }
}

/// Runs the decode loops of every generation on the inference thread. After each forward pass
/// it samples each generation's next token there and queues the next pass at once, so no
/// hand-off to another thread sits between two steps (it cost ~0.4 ms per token, 3–4% of a
/// step on the 270M); the generations decoding together share each pass over the weights
/// (`TextModel.appendBatch`). Request handlers read the tokens as events, detokenize and send
/// them while the next pass runs, and acknowledge each one.
///
/// Passes go to the back of the inference queue, so the pieces of a long prompt's prefill run
/// between them and other streams keep decoding meanwhile.
final class GenerationEngine: @unchecked Sendable {
    /// Tokens a generation may have sampled that its handler has not acknowledged: with two,
    /// the pass that appends token t runs while the handler still sends t − 1, so a handler's
    /// hiccup (a slow send, a tokenizer round trip) does not hold its stream out of a pass. A
    /// handler acknowledges only tokens after which its stream goes on, so when it stops at a
    /// stop string in token t the cache holds at most t (as the sequential loop left it).
    static let window = 2
    /// Gemma 3's vocabulary ends turns with `<end_of_turn>` and texts with `<eos>`.
    static let endOfText: Int32 = 1
    static let endOfTurn: Int32 = 106

    private let model: TextModel
    private let queue: InferenceQueue
    private let lock = NSLock()
    private var ready: [Generation] = []
    private var scheduled = false

    init(model: TextModel, queue: InferenceQueue) {
        self.model = model
        self.queue = queue
    }

    /// On the inference thread, with the logits after the prompt (its cache holds the prompt):
    /// samples the first token and enters the decode loop.
    func admit(_ generation: Generation, logits: [Float]) {
        let continues = advance(generation, logits: logits)
        let (waiters, submit) = lock.withLock { (settle(generation, continues: continues), claimPass()) }
        for waiter in waiters { waiter.resume() }
        if submit { submitPass() }
    }

    /// The handler has sent one of the generation's tokens.
    func acknowledge(_ generation: Generation) {
        let submit = lock.withLock {
            generation.unacknowledged -= 1
            if generation.state == .parked && generation.unacknowledged < Self.window {
                generation.state = .ready
                ready.append(generation)
            }
            return claimPass()
        }
        if submit { submitPass() }
    }

    /// Takes the generation out of the loop; returns once no pass uses its cache. Its
    /// handler calls this however it ends, before the cache is reused.
    func detach(_ generation: Generation) async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            lock.lock()
            if generation.state == .running {
                generation.detachWaiters.append(waiter)
                lock.unlock()
                return
            }
            if generation.state == .ready { ready.removeAll { $0 === generation } }
            generation.state = .detached
            lock.unlock()
            waiter.resume()
        }
        generation.continuation.finish()
    }

    /// Under the lock: whether the caller should queue a pass (generations are ready and no
    /// pass is queued yet); if so, one counts as queued from now.
    private func claimPass() -> Bool {
        guard !scheduled && !ready.isEmpty else { return false }
        scheduled = true
        return true
    }

    private func submitPass() { queue.submit { self.runPass() } }

    /// On the inference thread: one forward pass for every ready generation, then each one's
    /// next token. If the batch fails, each runs alone so that only the one at fault fails.
    private func runPass() {
        let batch = lock.withLock {
            scheduled = false
            let batch = ready
            ready = []
            for generation in batch { generation.state = .running }
            return batch
        }
        guard !batch.isEmpty else { return }
        let results: [Result<[Float], any Error>]
        do {
            results = try model.appendBatch(batch.map { DecodeStep(cache: $0.cache, token: $0.history.last!) }).map { .success($0) }
        } catch {
            // A batch of one was that step alone already.
            results = batch.count == 1 ? [.failure(error)]
                : batch.map { generation in Result { try model.append(tokens: [generation.history.last!], cache: generation.cache) } }
        }
        var waiters: [CheckedContinuation<Void, Never>] = []
        for (generation, result) in zip(batch, results) {
            var continues = false
            if lock.withLock({ generation.detachWaiters.isEmpty }) {
                switch result {
                case .success(let logits): continues = advance(generation, logits: logits)
                case .failure(let error): generation.continuation.yield(.failed(error))
                }
            }
            waiters += lock.withLock { settle(generation, continues: continues) }
        }
        if lock.withLock(claimPass) { submitPass() }
        for waiter in waiters { waiter.resume() }
    }

    /// Samples the generation's next token from `logits` and hands it to the handler; whether
    /// the loop goes on (no end of text, no limit reached).
    private func advance(_ generation: Generation, logits: [Float]) -> Bool {
        let limits = generation.limits
        let token = generation.sampler.sample(logits: logits, history: generation.history)
        if !limits.ignoreEos && (token == Self.endOfText || token == Self.endOfTurn) {
            generation.continuation.yield(.endOfText)
            return false
        }
        generation.generated += 1
        generation.history.append(token)
        var limit = V1.FinishReason.notFinished
        let cache = generation.cache
        if generation.generated >= limits.maxTokens {
            limit = .length
        } else if cache.count + 1 >= cache.maxContext {
            limit = cache.maxContext >= limits.serviceContext ? .context : .length
        }
        generation.continuation.yield(.token(token, logits: limits.topLogprobs > 0 ? logits : nil, limit: limit))
        return limit == .notFinished
    }

    /// Under the lock, after a generation's step: where it goes next, and who waits for it to
    /// leave the loop.
    private func settle(_ generation: Generation, continues: Bool) -> [CheckedContinuation<Void, Never>] {
        let waiters = generation.detachWaiters
        generation.detachWaiters = []
        if !waiters.isEmpty || !continues {
            generation.state = .detached
            return waiters
        }
        generation.unacknowledged += 1
        if generation.unacknowledged >= Self.window {
            generation.state = .parked
        } else {
            generation.state = .ready
            ready.append(generation)
        }
        return []
    }
}
