import Foundation
import XCTest
import GemmaText

final class SamplerTests: XCTestCase {
    /// Logits with a clear order: token i has logit (i mod 7) − i/100.
    let logits: [Float] = (0..<64).map { Float($0 % 7) - Float($0) / 100 }

    func draws(_ parameters: SamplingParameters, count: Int = 200, history: [Int32] = []) -> [Int32] {
        var sampler = Sampler(parameters: parameters)
        return (0..<count).map { _ in sampler.sample(logits: logits, history: history) }
    }

    func testGreedyPicksTheFirstMaximum() {
        XCTAssertEqual(Set(draws(SamplingParameters(), count: 5)), [6])
        var sampler = Sampler(parameters: SamplingParameters())
        XCTAssertEqual(sampler.sample(logits: [1, 3, 3, 2], history: []), 1)
    }

    func testSameSeedSameTokensDifferentSeedDifferentTokens() {
        var parameters = SamplingParameters()
        parameters.temperature = 1.5
        parameters.seed = 42
        let first = draws(parameters), second = draws(parameters)
        XCTAssertEqual(first, second)
        parameters.seed = 43
        XCTAssertNotEqual(draws(parameters), first)
        XCTAssertGreaterThan(Set(first).count, 3, "temperature sampling should vary")
    }

    func testTopKAndTopPAndMinPRestrictCandidates() {
        var parameters = SamplingParameters()
        parameters.temperature = 1
        parameters.seed = 7
        parameters.topK = 1
        XCTAssertEqual(Set(draws(parameters)), [6])

        // The six tokens with value 6 (ids 6, 13, 20, …) dominate; top-k 3 keeps the three best.
        parameters.topK = 3
        XCTAssertEqual(Set(draws(parameters)), [6, 13, 20])

        parameters.topK = 0
        parameters.topP = 0.05
        XCTAssertEqual(Set(draws(parameters)), [6])

        parameters.topP = 1
        // min-p 0.9 keeps logits within ln(1/0.9) ≈ 0.105 of the best: 6 (5.94) and 13 (5.87).
        parameters.minP = 0.9
        XCTAssertEqual(Set(draws(parameters)), [6, 13])
    }

    func testPenaltiesDiscourageRepeats() {
        var parameters = SamplingParameters()
        parameters.repetitionPenalty = 2
        var sampler = Sampler(parameters: parameters)
        // 6 has logit 5.94, 13 has 5.87: penalizing 6 (5.94 / 2) makes 13 the greedy pick.
        XCTAssertEqual(sampler.sample(logits: logits, history: [6]), 13)

        parameters = SamplingParameters()
        parameters.presencePenalty = 0.2
        sampler = Sampler(parameters: parameters)
        XCTAssertEqual(sampler.sample(logits: logits, history: [6, 13]), 20)

        parameters = SamplingParameters()
        parameters.frequencyPenalty = 0.05
        sampler = Sampler(parameters: parameters)
        XCTAssertEqual(sampler.sample(logits: logits, history: [6, 6]), 13)
        XCTAssertEqual(sampler.sample(logits: logits, history: [6]), 6)
    }

    func testLogProbabilitiesAreNormalized() {
        let result = LogProbabilities.of(13, in: logits, top: 3)
        XCTAssertEqual(result.top.map(\.id), [6, 13, 20])
        let total = logits.map { exp(Double($0)) }.reduce(0, +)
        XCTAssertEqual(Double(result.chosen), log(exp(Double(logits[13])) / total), accuracy: 1e-5)
    }
}
