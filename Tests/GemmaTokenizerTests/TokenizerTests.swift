import Foundation
import GemmaKernels
import XCTest
import GemmaWeights
@testable import GemmaTokenizer

final class TokenizerTests: XCTestCase {
    private var fixture: TokenizerFixture { TokenizerFixture.shared }

    func testFixtureIsLargeEnough() {
        XCTAssertGreaterThanOrEqual(fixture.cases.count, 300)
        XCTAssertTrue(fixture.cases.contains { $0.text.isEmpty })
        XCTAssertNotNil(fixture.transformers_version, "fixture lacks the transformers references")
    }

    func testVocabularyAndSpecialIDs() throws {
        let tokenizer = try SharedTokenizer.require()
        XCTAssertEqual(tokenizer.vocabularySize, fixture.vocab_size)
        let special = tokenizer.specialTokens
        XCTAssertEqual(special.bos, fixture.bos_id)
        XCTAssertEqual(special.eos, fixture.eos_id)
        XCTAssertEqual(special.unk, fixture.unk_id)
        XCTAssertEqual(special.pad, fixture.pad_id)
        XCTAssertEqual(special.startOfTurn, fixture.special_token_ids["<start_of_turn>"])
        XCTAssertEqual(special.endOfTurn, fixture.special_token_ids["<end_of_turn>"])
        XCTAssertEqual(special.startOfImage, fixture.special_token_ids["<start_of_image>"])
        XCTAssertEqual(special.endOfImage, fixture.special_token_ids["<end_of_image>"])
        XCTAssertEqual(special.imageSoftToken, fixture.image_soft_token_id)
        XCTAssertEqual(try tokenizer.pieceType(of: special.startOfTurn), .control)
        XCTAssertEqual(try tokenizer.pieceType(of: special.startOfImage), .userDefined)
        XCTAssertEqual(try tokenizer.piece(for: special.imageSoftToken), "<image_soft_token>")
        XCTAssertEqual(tokenizer.id(forPiece: "<end_of_turn>"), special.endOfTurn)
        XCTAssertNil(tokenizer.id(forPiece: "no such piece, surely"))
        // The whitespace-run pieces llama.cpp stores with real spaces get U+2581 back.
        XCTAssertEqual(tokenizer.id(forPiece: "\u{2581}\u{2581}"), try XCTUnwrap(fixture.cases.first { $0.text == "  " }).ids.first)
    }

    func testPlainEncodingMatchesSentencePiece() throws {
        let tokenizer = try SharedTokenizer.require()
        var mismatches: [String] = []
        for testCase in fixture.cases {
            let ids = try tokenizer.encode(testCase.text, addBOS: false, parseSpecial: false)
            if ids != testCase.ids { mismatches.append("\(testCase.text.debugDescription): \(ids) != \(testCase.ids)") }
            XCTAssertEqual(try tokenizer.encode(testCase.text, addBOS: true, parseSpecial: false), [fixture.bos_id] + testCase.ids)
        }
        XCTAssertEqual(mismatches, [], "\(mismatches.count) of \(fixture.cases.count) differ")
    }

    func testOffsetsMatchSentencePiece() throws {
        let tokenizer = try SharedTokenizer.require()
        for testCase in fixture.cases {
            let encoded = try tokenizer.encodeWithOffsets(testCase.text, addBOS: true, parseSpecial: false)
            XCTAssertEqual(encoded.ids, [fixture.bos_id] + testCase.ids)
            XCTAssertEqual(encoded.byteRanges.first, 0..<0)
            XCTAssertEqual(encoded.byteRanges.dropFirst().map { [$0.lowerBound, $0.upperBound] }, testCase.offsets,
                           testCase.text.debugDescription)
        }
    }

    func testSpecialParsingMatchesTransformers() throws {
        let tokenizer = try SharedTokenizer.require()
        var mismatches: [String] = []
        var checked = 0
        for testCase in fixture.cases {
            guard let expected = testCase.expectedSpecialIDs else { continue }
            checked += 1
            let ids = try tokenizer.encode(testCase.text, addBOS: false, parseSpecial: true)
            if ids != expected { mismatches.append("\(testCase.text.debugDescription): \(ids) != \(expected)") }
            // Offsets of the special-parsing path must cover the same ids.
            XCTAssertEqual(try tokenizer.encodeWithOffsets(testCase.text, addBOS: false, parseSpecial: true).ids, ids)
        }
        XCTAssertEqual(checked, fixture.cases.count)
        XCTAssertEqual(mismatches, [], "\(mismatches.count) of \(checked) differ")
        XCTAssertEqual(try tokenizer.encode("<start_of_turn>user\n", addBOS: false, parseSpecial: true).first,
                       tokenizer.specialTokens.startOfTurn)
    }

    func testSpecialTokenOffsetsPointAtTheirText() throws {
        let tokenizer = try SharedTokenizer.require()
        let text = "é<start_of_turn>user\n<image_soft_token>x<eos>"
        let encoded = try tokenizer.encodeWithOffsets(text, addBOS: false, parseSpecial: true)
        let utf8 = Array(text.utf8)
        for (id, range) in zip(encoded.ids, encoded.byteRanges) where id == tokenizer.specialTokens.startOfTurn
            || id == tokenizer.specialTokens.imageSoftToken || id == tokenizer.specialTokens.eos {
            XCTAssertEqual(String(decoding: utf8[range], as: UTF8.self), try tokenizer.piece(for: id))
        }
        XCTAssertEqual(encoded.byteRanges.last?.upperBound, utf8.count)
    }

    func testDecodeRoundTrips() throws {
        let tokenizer = try SharedTokenizer.require()
        for testCase in fixture.cases {
            let expected = testCase.decoded ?? testCase.text
            XCTAssertEqual(try tokenizer.decode(testCase.ids, skipSpecial: false), expected, testCase.text.debugDescription)
            XCTAssertEqual(try tokenizer.sentencePieceDecode(testCase.ids), expected)
            if let specialIDs = testCase.special_ids {
                // Special tokens decode to their own text, so special parsing round-trips too.
                XCTAssertEqual(try tokenizer.decode(specialIDs, skipSpecial: false), expected, testCase.text.debugDescription)
            }
        }
    }

    /// Random text from many scripts, emoji pieces, whitespace and special-token fragments:
    /// every encoding must decode back to the text and stream to the same text.
    func testRandomTextRoundTrips() throws {
        let tokenizer = try SharedTokenizer.require()
        let alphabet: [Unicode.Scalar] = Array("aZ09 \t\n\r<>_/éßЖλ中日ひカ한אعह๑ก\u{200D}\u{FE0F}\u{301}\u{E000}\u{A0}\u{3000}".unicodeScalars)
            + ["\u{1F600}", "\u{1F469}", "\u{1F3FD}", "\u{10FFFD}", "\u{1D400}", "\u{0}", "\u{7F}", "\u{FFFD}"]
        let fragments = ["<start_of_turn>", "<end_of_turn>", "<eos>", "<image_soft_token>", "<start_of_image>", "\n\n", "    "]
        var generator = SplitMix64(seed: 0x7E57)
        for _ in 0..<300 {
            var text = ""
            for _ in 0..<Int.random(in: 0...40, using: &generator) {
                if Int.random(in: 0..<10, using: &generator) == 0 {
                    text += fragments.randomElement(using: &generator)!
                } else {
                    text.unicodeScalars.append(alphabet.randomElement(using: &generator)!)
                }
            }
            for parseSpecial in [false, true] {
                let ids = try tokenizer.encode(text, addBOS: false, parseSpecial: parseSpecial)
                XCTAssertEqual(try tokenizer.decode(ids, skipSpecial: false), text, text.debugDescription)
                XCTAssertEqual(try tokenizer.encode(utf8: Array(text.utf8), addBOS: false, parseSpecial: parseSpecial), ids)
                var stream = StreamingDetokenizer(tokenizer: tokenizer, skipSpecial: false)
                let streamed = try ids.map { try stream.append($0) }.joined() + stream.finish()
                XCTAssertEqual(streamed, text)
            }
        }
    }

    func testSkipSpecialDropsControlTokens() throws {
        let tokenizer = try SharedTokenizer.require()
        let ids = try tokenizer.encode("<start_of_turn>model\nHi!<end_of_turn><image_soft_token>", addBOS: true, parseSpecial: true)
        XCTAssertEqual(try tokenizer.decode(ids, skipSpecial: true), "model\nHi!")
        XCTAssertEqual(try tokenizer.decode(ids, skipSpecial: false), "<bos><start_of_turn>model\nHi!<end_of_turn><image_soft_token>")
    }

    func testGGUFAndTokenizerModelAgree() throws {
        let fromGGUF = try SharedTokenizer.require()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let modelPath = directory.appendingPathComponent("tokenizer.model").path
        try fromGGUF.writeModel(to: modelPath)

        let fromFile = try Tokenizer(modelFile: modelPath)
        let fromFolder = try Tokenizer.load(path: directory.path)
        XCTAssertEqual(fromFile.specialTokens, fromGGUF.specialTokens)
        XCTAssertEqual(fromFolder.specialTokens, fromGGUF.specialTokens)
        for testCase in fixture.cases {
            for parseSpecial in [false, true] {
                let expected = try fromGGUF.encode(testCase.text, addBOS: true, parseSpecial: parseSpecial)
                XCTAssertEqual(try fromFile.encode(testCase.text, addBOS: true, parseSpecial: parseSpecial), expected)
                XCTAssertEqual(try fromFolder.encode(testCase.text, addBOS: true, parseSpecial: parseSpecial), expected)
            }
        }
    }

    /// A Hugging Face folder's tokenizer_config.json may number tokens beyond the vocabulary.
    func testHuggingFaceFolderAddedTokens() throws {
        let fromGGUF = try SharedTokenizer.require()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tok-hf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try fromGGUF.writeModel(to: directory.appendingPathComponent("tokenizer.model").path)
        let configURL = directory.appendingPathComponent("tokenizer_config.json")
        let config = """
            {"added_tokens_decoder": {"106": {"content": "<end_of_turn>", "special": true},
             "262144": {"content": "<image_soft_token>", "special": true},
             "262145": {"content": "<extra_token>", "special": true}}}
            """
        try Data(config.utf8).write(to: configURL)
        let tokenizer = try Tokenizer(huggingFaceDirectory: directory.path)
        XCTAssertEqual(tokenizer.specialTokens.imageSoftToken, 262_144)
        XCTAssertEqual(tokenizer.addedTokens, [262_144: "<image_soft_token>", 262_145: "<extra_token>"])
        XCTAssertEqual(try tokenizer.encode("a<extra_token>b", addBOS: false, parseSpecial: true),
                       try fromGGUF.encode("a", addBOS: false, parseSpecial: false) + [262_145]
                        + fromGGUF.encode("b", addBOS: false, parseSpecial: false))
        XCTAssertEqual(try tokenizer.decode([262_145], skipSpecial: false), "<extra_token>")
        XCTAssertEqual(try tokenizer.decode([262_145], skipSpecial: true), "")

        try Data("{not json".utf8).write(to: configURL)
        XCTAssertThrowsError(try Tokenizer(huggingFaceDirectory: directory.path)) { error in
            XCTAssertTrue(String(describing: error).contains("tokenizer_config.json"), "\(error)")
        }
    }

    /// The tokenizer.model rebuilt from the GGUF by the Python script (protobuf library,
    /// not our writer) must be byte-identical to ours, and load to the same tokenizer.
    func testSerializedModelEqualsPythonReference() throws {
        let tokenizer = try SharedTokenizer.require()
        let script = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("../../tools/make_tokenizer_fixtures.py").standardized.path
        let reference = FileManager.default.temporaryDirectory.appendingPathComponent("ref-\(UUID().uuidString).model").path
        defer { try? FileManager.default.removeItem(atPath: reference) }
        let python = FileManager.default.isExecutableFile(atPath: "/work/venv/bin/python") ? "/work/venv/bin/python" : "python3"
        guard runProcess([python, script, "--write-model", reference, "--model-only"]) != nil,
              let bytes = FileManager.default.contents(atPath: reference)
        else {
            throw XCTSkip("python with sentencepiece, gguf and protobuf is not available")
        }
        XCTAssertEqual(Array(bytes), tokenizer.serializedModelProto)
        let loaded = try Tokenizer(modelFile: reference)
        XCTAssertEqual(try loaded.encode("Hello <start_of_turn> world  \n\n", addBOS: true, parseSpecial: true),
                       try tokenizer.encode("Hello <start_of_turn> world  \n\n", addBOS: true, parseSpecial: true))
    }

    func testBatchEncodeMatchesSingleEncodes() throws {
        let tokenizer = try SharedTokenizer.require()
        let texts = fixture.cases.map(\.text)
        let batch = try tokenizer.encodeBatch(texts, addBOS: true, parseSpecial: true)
        XCTAssertEqual(batch.count, texts.count)
        for (text, ids) in zip(texts, batch) {
            XCTAssertEqual(ids, try tokenizer.encode(text, addBOS: true, parseSpecial: true))
        }
        XCTAssertEqual(try tokenizer.encodeBatch([], addBOS: true, parseSpecial: true), [])
    }

    func testUTF8ByteInput() throws {
        let tokenizer = try SharedTokenizer.require()
        for testCase in fixture.cases.prefix(80) {
            XCTAssertEqual(try tokenizer.encode(utf8: Array(testCase.text.utf8), addBOS: false, parseSpecial: false), testCase.ids)
        }
        let invalid: [([UInt8], Int)] = [
            ([0x80], 0),                            // lone continuation byte
            ([0x61, 0xC0, 0x80], 1),                // overlong NUL
            ([0x61, 0x62, 0xED, 0xA0, 0x80], 2),    // UTF-16 surrogate
            ([0xF0, 0x9F, 0x98], 0),                // truncated emoji
            ([0xF4, 0x90, 0x80, 0x80], 0),          // above U+10FFFF
            ([0x68, 0x69, 0xFF], 2),                // never valid
            ([0xE2, 0x28, 0xA1], 0),                // bad continuation
        ]
        for (bytes, offset) in invalid {
            XCTAssertThrowsError(try tokenizer.encode(utf8: bytes, addBOS: false, parseSpecial: true)) { error in
                XCTAssertEqual(error as? TokenizerError, .invalidUTF8(offset: offset), "\(bytes)")
            }
            XCTAssertThrowsError(try tokenizer.encodeWithOffsets(utf8: bytes, addBOS: false, parseSpecial: false))
        }
    }

    func testIDsOutsideTheVocabularyThrow() throws {
        let tokenizer = try SharedTokenizer.require()
        let outside: [Int32] = [-1, Int32(tokenizer.vocabularySize) + 1, Int32.max, Int32.min]
        for id in outside {
            XCTAssertThrowsError(try tokenizer.decode([2, id], skipSpecial: false)) { error in
                XCTAssertEqual(error as? TokenizerError, .idOutOfRange(id: id, vocabularySize: tokenizer.vocabularySize))
                XCTAssertTrue(String(describing: error).contains("\(id)"))
            }
            XCTAssertThrowsError(try tokenizer.decode([id], skipSpecial: true))
            XCTAssertThrowsError(try tokenizer.sentencePieceDecode([id]))
            XCTAssertThrowsError(try tokenizer.piece(for: id))
            XCTAssertFalse(tokenizer.isValid(id))
        }
        XCTAssertTrue(tokenizer.isValid(tokenizer.specialTokens.imageSoftToken))
    }

    func testLoadingErrors() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tok-bad-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        let garbage = directory.appendingPathComponent("garbage.model").path
        try Data("this is not a protobuf".utf8).write(to: URL(fileURLWithPath: garbage))
        XCTAssertThrowsError(try Tokenizer(modelFile: garbage)) { error in
            guard case .invalidModel(let message)? = error as? TokenizerError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains(garbage), message)
        }
        XCTAssertThrowsError(try Tokenizer(serializedModelProto: []))
        XCTAssertThrowsError(try Tokenizer.load(path: directory.appendingPathComponent("missing").path))
        XCTAssertThrowsError(try Tokenizer(huggingFaceDirectory: directory.path)) { error in
            XCTAssertTrue(String(describing: error).contains("tokenizer.model"))
        }

        // A valid GGUF with no tokenizer in it.
        var empty: [UInt8] = Array("GGUF".utf8)
        empty += withUnsafeBytes(of: UInt32(3).littleEndian, Array.init)
        empty += withUnsafeBytes(of: UInt64(0), Array.init) + withUnsafeBytes(of: UInt64(0), Array.init)
        let emptyGGUF = directory.appendingPathComponent("empty.gguf").path
        try Data(empty).write(to: URL(fileURLWithPath: emptyGGUF))
        XCTAssertThrowsError(try Tokenizer.load(path: emptyGGUF)) { error in
            XCTAssertTrue(String(describing: error).contains("tokenizer.ggml.model"), "\(error)")
        }
        // A truncated GGUF reports the GGUF error with the file name.
        try Data(empty.prefix(10)).write(to: URL(fileURLWithPath: emptyGGUF))
        XCTAssertThrowsError(try Tokenizer.load(path: emptyGGUF)) { error in
            XCTAssertTrue(String(describing: error).contains(emptyGGUF), "\(error)")
        }
    }

    func testBenchmarkMeasures() throws {
        let tokenizer = try SharedTokenizer.require()
        let text = fixture.cases.map(\.text).joined(separator: "\n")
        let measurement = try TokenizerBenchmark.measureEncode(tokenizer: tokenizer, text: text, minimumSeconds: 0.2)
        XCTAssertEqual(measurement.textBytes, text.utf8.count)
        XCTAssertEqual(measurement.tokenCount, try tokenizer.encode(text, addBOS: false, parseSpecial: false).count)
        XCTAssertGreaterThanOrEqual(measurement.iterations, 3)
        XCTAssertGreaterThan(measurement.bytesPerSecond, 0)
        print(String(format: "encode throughput: %.2f MB/s, %.0f tokens/s (%d bytes x %d)",
                     measurement.megabytesPerSecond, measurement.tokensPerSecond, measurement.textBytes, measurement.iterations))
    }
}
