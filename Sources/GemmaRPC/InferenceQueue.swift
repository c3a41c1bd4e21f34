import Foundation

/// Runs model work on one dedicated thread, in submission order. The forward pass has its own
/// worker pool; keeping it off Swift's cooperative threads leaves those (and the event
/// loops) free to answer Health calls and stream tokens while a long prefill runs. Jobs run
/// one at a time: a decoder's batched decode passes and the pieces of a long prefill take turns.
public final class InferenceQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var thread: Thread?

    public init(name: String) {
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = name
        thread.stackSize = 16 << 20
        self.thread = thread
        thread.start()
    }

    /// Runs `body` on the inference thread and returns its result. Throws
    /// `CancellationError` without running it if the calling task is already cancelled.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try Task.checkCancellation()
        return try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            jobs.append { continuation.resume(with: Result { try body() }) }
            condition.signal()
            condition.unlock()
        }
    }

    /// Queues `job` to run on the inference thread, without waiting for it.
    public func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Jobs waiting, not counting the one running.
    public var waiting: Int {
        condition.lock()
        defer { condition.unlock() }
        return jobs.count
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }
}
