import Foundation
import XCTest
import GemmaText

/// Folder of the goldens written by tools/make_fixtures.py.
let textFixtures = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/text")

struct ExpectedRun: Decodable {
    let prompt: [Int32]
    let continuation: [Int32]
    let vocab_size: Int
    let positions: Int
}

struct MultimodalRun: Decodable {
    struct Override: Decodable {
        let start: Int
        let values: [Float]
    }
    let tokens: [Int32]
    let groups: [[Int]]
    let overrides: [Override]
}

func readFloats(_ url: URL) throws -> [Float] {
    let data = try Data(contentsOf: url)
    return data.withUnsafeBytes { raw in
        (0..<(raw.count / 4)).map {
            Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)))
        }
    }
}

/// Asserts each position's logits are within `relative` × (largest |logit| of that position).
func assertLogitsClose(_ actual: [Float], _ expected: [Float], vocab: Int, relative: Float = 1e-4,
                       _ label: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, "\(label): logit count", file: file, line: line)
    guard actual.count == expected.count else { return }
    for position in 0..<(expected.count / vocab) {
        let row = expected[(position * vocab)..<((position + 1) * vocab)]
        let bound = relative * row.map(abs).max()!
        var worst: Float = 0
        for i in row.indices { worst = max(worst, abs(actual[i] - expected[i])) }
        XCTAssertLessThanOrEqual(worst, bound, "\(label): position \(position)", file: file, line: line)
    }
}

func argmax(_ values: ArraySlice<Float>) -> Int32 {
    var best = values.startIndex
    for i in values.indices where values[i] > values[best] { best = i }
    return Int32(best - values.startIndex)
}

final class FixtureParityTests: XCTestCase {
    static let models = ["gqa_causal", "gqa_bf16", "mqa_released", "untied_softcapped"]

    func load(_ name: String) throws -> (TextModel, ExpectedRun, [Float]) {
        let folder = textFixtures.appendingPathComponent(name)
        let model = try TextModel(path: folder.path, threads: 2)
        let expected = try JSONDecoder().decode(ExpectedRun.self, from: Data(contentsOf: folder.appendingPathComponent("expected.json")))
        let logits = try readFloats(folder.appendingPathComponent("logits.f32"))
        return (model, expected, logits)
    }

    /// Logits for every prompt position, in one batch and in batches smaller than the window
    /// (so the rings roll between batches), match transformers.
    func testAllPositionLogitsMatchTransformers() throws {
        for name in Self.models {
            let (model, expected, reference) = try load(name)
            XCTAssertLessThan(model.config.slidingWindow, expected.positions, "\(name): prompt must outgrow the window")
            for batchSize in [512, 3, 1] {
                model.batchSize = batchSize
                let cache = model.makeCache(maxContext: 64)
                let logits = try model.appendReturningAllLogits(TextInput(tokens: expected.prompt), cache: cache)
                assertLogitsClose(logits, reference, vocab: expected.vocab_size, "\(name) batch \(batchSize)")
            }
        }
    }

    /// Greedy decoding with the cache reproduces transformers' `generate`.
    func testGreedyContinuationMatchesTransformers() throws {
        for name in Self.models {
            let (model, expected, _) = try load(name)
            let cache = model.makeCache(maxContext: 64)
            var logits = try model.prefill(tokens: expected.prompt, cache: cache)
            var generated: [Int32] = []
            for _ in expected.continuation.indices {
                let next = argmax(logits[...])
                generated.append(next)
                logits = try model.append(tokens: [next], cache: cache)
            }
            XCTAssertEqual(generated, expected.continuation, name)
        }
    }

    /// Image-like inputs: unscaled embedding overrides and bidirectional groups (one crossing a
    /// sliding-window boundary) match transformers' token_type_ids masks.
    func testEmbeddingOverridesAndBidirectionalGroupsMatchTransformers() throws {
        let folder = textFixtures.appendingPathComponent("mqa_released")
        let model = try TextModel(path: folder.path, threads: 2)
        let run = try JSONDecoder().decode(MultimodalRun.self, from: Data(contentsOf: folder.appendingPathComponent("multimodal.json")))
        let reference = try readFloats(folder.appendingPathComponent("multimodal_logits.f32"))
        let input = TextInput(
            tokens: run.tokens,
            embeddingOverrides: run.overrides.map { EmbeddingOverride(start: $0.start, values: $0.values) },
            bidirectionalGroups: run.groups.map { $0[0]..<$0[1] })
        for batchSize in [512, 5, 1] {
            model.batchSize = batchSize
            let cache = model.makeCache(maxContext: 64)
            let logits = try model.appendReturningAllLogits(input, cache: cache)
            assertLogitsClose(logits, reference, vocab: model.config.vocabSize, "multimodal batch \(batchSize)")
        }
        // Without the groups the result must differ: the test sees the mask.
        let causal = try model.appendReturningAllLogits(
            TextInput(tokens: input.tokens, embeddingOverrides: input.embeddingOverrides), cache: model.makeCache(maxContext: 64))
        XCTAssertNotEqual(causal, reference)
    }

    func testConfigsReadBothConfigStyles() throws {
        let (causal, _, _) = try load("gqa_causal")
        XCTAssertEqual(causal.config.globalLayers, [false, true, false, true, false, true])
        XCTAssertEqual(causal.config.globalRopeScaling, 4)
        XCTAssertEqual(causal.config.queryPreAttnScalar, 24)
        XCTAssertEqual(causal.config.headDim, 16)
        let (released, _, _) = try load("mqa_released")
        XCTAssertEqual(released.config.globalLayers, TextConfig.defaultGlobalLayers(count: 12))
        XCTAssertEqual(released.config.globalLayers.filter { $0 }.count, 2)
        XCTAssertEqual(released.config.globalRopeScaling, 8)
        XCTAssertEqual(released.config.localRopeBase, 10_000)
        XCTAssertEqual(released.config.kvHeadCount, 1)
        XCTAssertNil(released.config.finalLogitSoftcap)
        let (capped, _, _) = try load("untied_softcapped")
        XCTAssertEqual(capped.config.finalLogitSoftcap, 4)
    }

    /// transformers caps the final logits in Gemma3ForCausalLM (a flat config) but not in
    /// Gemma3ForConditionalGeneration (the same key under `text_config`).
    func testFinalLogitSoftcapIsReadFromTextOnlyConfigs() throws {
        let flat = #"{"final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0}"#
        XCTAssertEqual(try TextConfig(configJSON: Data(flat.utf8)).finalLogitSoftcap, 30)
        let nested = #"{"text_config": {"final_logit_softcapping": 30.0}}"#
        XCTAssertNil(try TextConfig(configJSON: Data(nested.utf8)).finalLogitSoftcap)
        XCTAssertNil(try TextConfig(configJSON: Data(#"{"final_logit_softcapping": null}"#.utf8)).finalLogitSoftcap)
        XCTAssertThrowsError(try TextConfig(configJSON: Data(#"{"final_logit_softcapping": -1}"#.utf8)))
    }

    /// A config that unties the head from the embedding needs the head in the checkpoint.
    func testUntiedConfigWithoutItsHeadIsRefused() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("untied-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = textFixtures.appendingPathComponent("gqa_causal")
        try FileManager.default.copyItem(at: source.appendingPathComponent("model.safetensors"),
                                         to: folder.appendingPathComponent("model.safetensors"))
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("config.json"))) as! [String: Any]
        config["tie_word_embeddings"] = false
        try JSONSerialization.data(withJSONObject: config).write(to: folder.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try TextModel(path: folder.path, threads: 1)) { error in
            XCTAssertTrue("\(error)".contains("lm_head.weight"), "\(error)")
        }
        config["tie_word_embeddings"] = true
        try JSONSerialization.data(withJSONObject: config).write(to: folder.appendingPathComponent("config.json"))
        XCTAssertNoThrow(try TextModel(path: folder.path, threads: 1))
    }

    /// Configs this model would compute differently from transformers are refused by name.
    func testActivationsAndBidirectionalAttentionOtherThanGemma3sAreRefused() throws {
        XCTAssertNoThrow(try TextConfig(configJSON: Data(#"{"hidden_activation": "gelu_pytorch_tanh"}"#.utf8)))
        XCTAssertNoThrow(try TextConfig(configJSON: Data(#"{"use_bidirectional_attention": false}"#.utf8)))
        // transformers' Gemma 3 never reads `hidden_act`.
        XCTAssertNoThrow(try TextConfig(configJSON: Data(#"{"hidden_act": "gelu"}"#.utf8)))
        for (json, word) in [(#"{"hidden_activation": "silu"}"#, "silu"), (#"{"hidden_activation": "gelu"}"#, "gelu"),
                             (#"{"use_bidirectional_attention": true}"#, "bidirectional")] {
            XCTAssertThrowsError(try TextConfig(configJSON: Data(json.utf8))) { error in
                XCTAssertTrue("\(error)".contains(word), "\(error)")
            }
        }
    }
}
