import Foundation
import GemmaKernels
import XCTest

final class ThreadPoolTests: XCTestCase {
    /// Every index runs exactly once, whatever the thread and task counts (shares of zero tasks,
    /// counts not a multiple of the threads, more threads than tasks).
    func testEveryIndexRunsOnce() {
        for threads in 1...4 {
            let context = KernelContext(threads: threads)
            for count in [1, 2, 3, 5, 7, 16, 67, 1000] {
                let lock = NSLock()
                var runs = [Int](repeating: 0, count: count)
                for _ in 0..<3 {
                    context.parallelFor(count) { index in lock.withLock { runs[index] += 1 } }
                }
                XCTAssertEqual(runs, Array(repeating: 3, count: count), "threads \(threads), count \(count)")
            }
        }
    }

    /// Two threads get contiguous halves; when the second is held up in its first task (until
    /// the caller has run index 33), the caller takes the rest of that half from the far end
    /// (last index first), so a stalled thread costs the batch one task, not its share.
    func testAStalledThreadsShareIsTakenFromTheFarEnd() {
        let context = KernelContext(threads: 2)
        let count = 64
        let caller = pthread_self()
        let lock = NSLock()
        var sequence = 0
        var order = [Int](repeating: -1, count: count)
        var ranOnCaller = [Bool](repeating: false, count: count)
        let release = DispatchSemaphore(value: 0)
        context.parallelFor(count) { index in
            // Whoever runs index 32 (the worker, or the caller if the worker came late) waits
            // for 33, which only the caller can run while 32 is held.
            if index == count / 2 { XCTAssertEqual(release.wait(timeout: .now() + 10), .success) }
            lock.withLock {
                order[index] = sequence
                sequence += 1
                ranOnCaller[index] = pthread_equal(pthread_self(), caller) != 0
            }
            if index == count / 2 + 1 { release.signal() }
        }
        let taken = (count / 2 + 1..<count)
        XCTAssertTrue(taken.allSatisfy { ranOnCaller[$0] })
        let steps = taken.map { order[$0] }
        XCTAssertEqual(steps, steps.sorted(by: >), "taken from the far end, last index first")
        XCTAssertTrue((0..<count / 2).allSatisfy { ranOnCaller[$0] })
    }
}
