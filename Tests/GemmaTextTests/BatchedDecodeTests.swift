import XCTest
import GemmaKernels
@testable import GemmaText

/// `appendBatch` must give every session exactly the logits of decoding it alone.
final class BatchedDecodeTests: XCTestCase {
    func testBatchedDecodeMatchesSeparateSteps() throws {
        let model = try TextModel(path: try realModelPath(), threads: 2)
        let prompts: [[Int32]] = [[2, 818, 5279, 529, 7001, 563], [2, 9259, 1902], [2, 1437, 236764, 2002, 3040, 1015, 6107]]
        let alone = prompts.map { _ in model.makeCache(maxContext: 64) }
        let batched = prompts.map { _ in model.makeCache(maxContext: 64) }
        var next: [Int32] = []
        for (i, prompt) in prompts.enumerated() {
            let a = try model.prefill(tokens: prompt, cache: alone[i])
            let b = try model.prefill(tokens: prompt, cache: batched[i])
            XCTAssertEqual(a, b)
            next.append(Int32(a.indices.max { a[$0] < a[$1] }!))
        }
        for _ in 0..<4 {
            let together = try model.appendBatch(zip(batched, next).map { DecodeStep(cache: $0, token: $1) })
            for i in prompts.indices {
                let separate = try model.append(tokens: [next[i]], cache: alone[i])
                XCTAssertEqual(separate, together[i], "session \(i) differs")
                next[i] = Int32(separate.indices.max { separate[$0] < separate[$1] }!)
            }
        }
        XCTAssertEqual(alone.map(\.count), batched.map(\.count))
        XCTAssertThrowsError(try model.appendBatch([DecodeStep(cache: batched[0], token: 5), DecodeStep(cache: batched[0], token: 6)]))
    }
}
