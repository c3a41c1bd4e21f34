import Foundation
import XCTest
import GemmaText

/// Prefix reuse, rolled windows and cache sizing, on the tiny fixture models (window 8 and 6,
/// prompts of 21 and 18 tokens), always compared with a fresh computation.
final class CacheReuseTests: XCTestCase {
    func model(_ name: String) throws -> (TextModel, [Int32]) {
        let folder = textFixtures.appendingPathComponent(name)
        let expected = try JSONDecoder().decode(ExpectedRun.self, from: Data(contentsOf: folder.appendingPathComponent("expected.json")))
        return (try TextModel(path: folder.path, threads: 2), expected.prompt)
    }

    func freshLogits(_ model: TextModel, _ tokens: [Int32]) throws -> [Float] {
        try model.prefill(tokens: tokens, cache: model.makeCache(maxContext: 64))
    }

    /// Reused and fresh runs split work into different batches; with f32 weights, batches of
    /// more than four positions use sgemm, so they agree to rounding, not bit for bit.
    func assertClose(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        let bound = 1e-5 * b.map(abs).max()!
        let worst = zip(a, b).map { abs($0 - $1) }.max()!
        XCTAssertLessThanOrEqual(worst, bound, file: file, line: line)
    }

    /// Extending a cached prompt computes only the new tokens and matches a fresh run.
    func testExtendingAPromptReusesTheCacheAndMatchesFreshRun() throws {
        let (model, prompt) = try model("gqa_causal")
        let cache = model.makeCache(maxContext: 64)
        _ = try model.prefill(tokens: prompt, cache: cache)
        let longer = prompt + [5, 6, 7]
        XCTAssertEqual(model.reusablePrefix(of: TextInput(tokens: longer), cache: cache), prompt.count)
        let reused = try model.prefill(tokens: longer, cache: cache)
        XCTAssertEqual(cache.count, longer.count)
        XCTAssertEqual(cache.history, longer.map { UInt64($0) })
        assertClose(reused, try freshLogits(model, longer))
    }

    /// The same prompt again recomputes only its last position.
    func testRepeatingAPromptRecomputesOnlyTheLastPosition() throws {
        let (model, prompt) = try model("gqa_causal")
        let cache = model.makeCache(maxContext: 64)
        let first = try model.prefill(tokens: prompt, cache: cache)
        XCTAssertEqual(model.reusablePrefix(of: TextInput(tokens: prompt), cache: cache), prompt.count - 1)
        assertClose(try model.prefill(tokens: prompt, cache: cache), first)
    }

    /// A prompt that diverges inside a window that has already rolled cannot reuse the local
    /// rings (they no longer hold what the first new token needs): the model recomputes, and
    /// the result is still exact.
    func testDivergingAfterTheWindowRolledRecomputesCorrectly() throws {
        let (model, prompt) = try model("gqa_causal")
        XCTAssertGreaterThan(prompt.count, model.config.slidingWindow + 4)
        let cache = model.makeCache(maxContext: 64)
        _ = try model.prefill(tokens: prompt, cache: cache)
        var diverged = prompt
        diverged[prompt.count - 6] = 9  // change a token long after the window rolled
        XCTAssertFalse(cache.canTruncate(to: prompt.count - 6))
        XCTAssertEqual(model.reusablePrefix(of: TextInput(tokens: diverged), cache: cache), 0)
        assertClose(try model.prefill(tokens: diverged, cache: cache), try freshLogits(model, diverged))
        XCTAssertEqual(cache.count, diverged.count)
    }

    /// Rolling back one position (the last token) is always possible, even after the rings
    /// rolled; rolling back within an unrolled window is too.
    func testShortRollbacksReuseTheCache() throws {
        let (model, prompt) = try model("mqa_released")
        let cache = model.makeCache(maxContext: 64)
        _ = try model.prefill(tokens: prompt, cache: cache)
        var changedLast = prompt
        changedLast[prompt.count - 1] = 11
        XCTAssertEqual(model.reusablePrefix(of: TextInput(tokens: changedLast), cache: cache), prompt.count - 1)
        assertClose(try model.prefill(tokens: changedLast, cache: cache), try freshLogits(model, changedLast))

        let short = Array(prompt.prefix(5))
        let shortCache = model.makeCache(maxContext: 64)
        _ = try model.prefill(tokens: short, cache: shortCache)
        let branch = Array(prompt.prefix(3)) + [12, 13]
        XCTAssertEqual(model.reusablePrefix(of: TextInput(tokens: branch), cache: shortCache), 3)
        assertClose(try model.prefill(tokens: branch, cache: shortCache), try freshLogits(model, branch))
    }

    /// Decoding far past the window with the rings, one token at a time, matches a single
    /// batched pass over the whole sequence.
    func testLongDecodeThroughRingsMatchesOneBatch() throws {
        let (model, prompt) = try model("mqa_released")
        let cache = model.makeCache(maxContext: 64)
        var logits = try model.prefill(tokens: Array(prompt.prefix(3)), cache: cache)
        var sequence = Array(prompt.prefix(3))
        for token in prompt.dropFirst(3) + [20, 21, 22, 23, 24, 25, 26, 27, 28, 29] {
            sequence.append(token)
            logits = try model.append(tokens: [token], cache: cache)
        }
        XCTAssertEqual(sequence.count, 28)
        let batched = try freshLogits(model, sequence)
        let bound = 1e-5 * batched.map(abs).max()!
        XCTAssertLessThan(zip(logits, batched).map { abs($0 - $1) }.max()!, bound)
    }

    func testKVBytesFollowTheFormula() throws {
        let (model, _) = try model("mqa_released")
        let c = model.config
        for maxContext in [4, 6, 50] {
            let cache = model.makeCache(maxContext: maxContext)
            let perPosition = c.kvHeadCount * c.headDim * 2 * 4
            let globals = c.globalLayers.filter { $0 }.count
            let locals = c.layerCount - globals
            XCTAssertEqual(cache.kvBytes, perPosition * (globals * maxContext + locals * min(c.slidingWindow, maxContext)))
            XCTAssertEqual(KVCache.kvBytes(config: c, maxContext: maxContext), cache.kvBytes)
        }
    }

    func testContextOverflowAndBadTokensThrow() throws {
        let (model, prompt) = try model("gqa_causal")
        let small = model.makeCache(maxContext: 4)
        XCTAssertThrowsError(try model.prefill(tokens: prompt, cache: small))
        XCTAssertThrowsError(try model.prefill(tokens: [2, 600], cache: model.makeCache(maxContext: 8)))
        XCTAssertThrowsError(try model.prefill(tokens: [], cache: model.makeCache(maxContext: 8)))
        XCTAssertThrowsError(try model.append(
            TextInput(tokens: [2, 3, 4], bidirectionalGroups: [1..<5]), cache: model.makeCache(maxContext: 8)))
    }

    /// Overrides and groups take part in prefix matching: a different image is not reused,
    /// and a cached group is reused only whole.
    func testOverridesAndGroupsInPrefixMatching() throws {
        let (model, _) = try model("mqa_released")
        let width = model.config.hiddenSize
        let image = (0..<(3 * width)).map { Float(($0 % 7) - 3) * 0.1 }
        let other = image.map { -$0 }
        // Six positions: within the window of 6, so the rings have not rolled.
        let tokens: [Int32] = [2, 5, 502, 502, 502, 6]
        func input(_ values: [Float], _ count: Int = 6) -> TextInput {
            TextInput(tokens: Array(tokens.prefix(count)), embeddingOverrides: [EmbeddingOverride(start: 2, values: values)],
                      bidirectionalGroups: [2..<5])
        }
        let cache = model.makeCache(maxContext: 32)
        _ = try model.prefill(input(image), cache: cache)
        XCTAssertEqual(model.reusablePrefix(of: input(image), cache: cache), 5)
        // Cutting inside the group (at 3) falls back to the group's start.
        var shorter = input(image)
        shorter.tokens[3] = 7
        shorter.embeddingOverrides = [EmbeddingOverride(start: 2, values: Array(image.prefix(width)))]
        shorter.bidirectionalGroups = [2..<3]
        XCTAssertEqual(model.reusablePrefix(of: shorter, cache: cache), 2)
        XCTAssertEqual(model.reusablePrefix(of: input(other), cache: cache), 2)
        let changed = try model.prefill(input(other), cache: cache)
        assertClose(changed, try model.prefill(input(other), cache: model.makeCache(maxContext: 32)))
    }

    /// A prefill cut into pieces (as the decoder service runs long prompts) computes what one
    /// prefill computes; cuts never fall inside an image's group.
    func testChunkedPrefillMatchesOnePrefill() throws {
        let (model, _) = try model("mqa_released")
        let width = model.config.hiddenSize
        let image = (0..<(3 * width)).map { Float(($0 % 5) - 2) * 0.1 }
        let input = TextInput(tokens: [2, 5, 9, 502, 502, 502, 6, 7, 8, 9, 10],
                              embeddingOverrides: [EmbeddingOverride(start: 3, values: image)], bidirectionalGroups: [3..<6])
        let cuts = model.prefillCuts(of: input, after: 0, chunk: 2)
        XCTAssertEqual(cuts, [2, 3, 6, 8, 10])  // 4 and 5 would split the group 3..<6: its ends instead
        XCTAssertEqual(model.prefillCuts(of: input, after: 3, chunk: 4), [7])
        XCTAssertEqual(model.prefillCuts(of: input, after: 0, chunk: 0), [])
        let cache = model.makeCache(maxContext: 32)
        for cut in cuts { _ = try model.prefill(input.prefix(cut, hiddenSize: width), cache: cache) }
        XCTAssertEqual(cache.count, cuts.last)
        let chunked = try model.prefill(input, cache: cache)
        XCTAssertEqual(cache.count, input.count)
        assertClose(chunked, try model.prefill(input, cache: model.makeCache(maxContext: 32)))
    }
}
