import Foundation
import XCTest
import GemmaText

/// Speed on the real 270M; runs only when `GEMMA_BENCH=1` (use a release build:
/// `GEMMA_BENCH=1 swift test -c release --filter BenchmarkTests`).
final class BenchmarkTests: XCTestCase {
    func testBenchmarkRealModel() throws {
        guard ProcessInfo.processInfo.environment["GEMMA_BENCH"] == "1" else {
            throw XCTSkip("set GEMMA_BENCH=1 to run the benchmark")
        }
        let threads = Int(ProcessInfo.processInfo.environment["GEMMA_THREADS"] ?? "2") ?? 2
        let model = try TextModel(path: try realModelPath(), threads: threads)
        let result = try TextBenchmark.run(model: model, promptTokens: 512, decodeTokens: 64)
        print("BENCH \(result)")
        XCTAssertGreaterThan(result.decodeTokensPerSecond, 0)
        XCTAssertEqual(result.kvBytes, KVCache.kvBytes(config: model.config, maxContext: 576))
    }
}
