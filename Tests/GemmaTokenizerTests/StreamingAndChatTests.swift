import Foundation
import GemmaKernels
import XCTest
@testable import GemmaTokenizer

final class StreamingDetokenizerTests: XCTestCase {
    private var fixture: TokenizerFixture { TokenizerFixture.shared }

    /// Feeds ids one by one; checks that no delta carries a replacement character the full
    /// decode does not have (a split character would) and that deltas add up to decode.
    private func assertStreams(_ ids: [Int32], tokenizer: Tokenizer, skipSpecial: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        var stream = StreamingDetokenizer(tokenizer: tokenizer, skipSpecial: skipSpecial)
        var joined = ""
        let expected = try tokenizer.decode(ids, skipSpecial: skipSpecial)
        for id in ids {
            let delta = try stream.append(id)
            if delta.unicodeScalars.contains("\u{FFFD}") {
                XCTAssertTrue(expected.unicodeScalars.contains("\u{FFFD}"), "delta \(delta.debugDescription) splits a character", file: file, line: line)
            }
            joined += delta
        }
        joined += stream.finish()
        XCTAssertEqual(Array(joined.utf8), Array(expected.utf8), file: file, line: line)
        XCTAssertFalse(stream.hasPendingBytes, file: file, line: line)
    }

    func testDeltasConcatenateToDecodeOnTheCorpus() throws {
        let tokenizer = try SharedTokenizer.require()
        var byteFallbackCases = 0
        for testCase in fixture.cases {
            if try testCase.ids.contains(where: { try tokenizer.pieceType(of: $0) == .byte }) { byteFallbackCases += 1 }
            try assertStreams(testCase.ids, tokenizer: tokenizer, skipSpecial: false)
            try assertStreams(testCase.special_ids ?? testCase.ids, tokenizer: tokenizer, skipSpecial: true)
        }
        XCTAssertGreaterThan(byteFallbackCases, 5, "the corpus must exercise byte-fallback pieces")
    }

    func testByteFallbackCharacterIsHeldUntilComplete() throws {
        let tokenizer = try SharedTokenizer.require()
        let bytePieces = try [0xF0, 0x9F, 0x98, 0x80].map { byte in
            try XCTUnwrap(tokenizer.id(forPiece: String(format: "<0x%02X>", byte)))
        }
        var stream = StreamingDetokenizer(tokenizer: tokenizer, skipSpecial: false)
        XCTAssertEqual(try stream.append(bytePieces[0]), "")
        XCTAssertEqual(try stream.append(bytePieces[1]), "")
        XCTAssertEqual(try stream.append(bytePieces[2]), "")
        XCTAssertTrue(stream.hasPendingBytes)
        XCTAssertEqual(try stream.append(bytePieces[3]), "😀")
        XCTAssertEqual(stream.finish(), "")

        // A broken tail is flushed as one replacement character, as decode renders it.
        var broken = StreamingDetokenizer(tokenizer: tokenizer, skipSpecial: false)
        XCTAssertEqual(try broken.append(contentsOf: Array(bytePieces.prefix(2))), "")
        XCTAssertEqual(broken.finish(), "\u{FFFD}")
        XCTAssertEqual(try tokenizer.decode(Array(bytePieces.prefix(2)), skipSpecial: false), "\u{FFFD}")

        // An interrupted character cannot be completed later: it is replaced at once.
        let letter = try XCTUnwrap(tokenizer.encode("a", addBOS: false, parseSpecial: false).first)
        var interrupted = StreamingDetokenizer(tokenizer: tokenizer, skipSpecial: false)
        XCTAssertEqual(try interrupted.append(bytePieces[0]), "")
        XCTAssertEqual(try interrupted.append(letter), "\u{FFFD}a")
        try assertStreams([bytePieces[0], letter, bytePieces[0], bytePieces[1], bytePieces[2], bytePieces[3]], tokenizer: tokenizer, skipSpecial: false)
    }

    /// A stateless service hands `pendingBytes` to its client and gets them back next call.
    func testPendingBytesCarryStateAcrossDetokenizers() throws {
        let tokenizer = try SharedTokenizer.require()
        for testCase in fixture.cases where !testCase.ids.isEmpty {
            var pending: [UInt8] = []
            var joined = ""
            for id in testCase.ids {
                var stream = StreamingDetokenizer(tokenizer: tokenizer, skipSpecial: false, pendingBytes: pending)
                joined += try stream.append(id)
                pending = stream.pendingBytes
                XCTAssertLessThanOrEqual(pending.count, 3)
            }
            var last = StreamingDetokenizer(tokenizer: tokenizer, skipSpecial: false, pendingBytes: pending)
            joined += last.finish()
            XCTAssertEqual(joined, try tokenizer.decode(testCase.ids, skipSpecial: false))
        }
    }

    func testUnknownIDLeavesStateUnchanged() throws {
        let tokenizer = try SharedTokenizer.require()
        let first = try XCTUnwrap(tokenizer.id(forPiece: "<0xE6>"))
        var stream = StreamingDetokenizer(tokenizer: tokenizer, skipSpecial: false)
        XCTAssertEqual(try stream.append(first), "")
        XCTAssertThrowsError(try stream.append(-5))
        let rest = try ["<0x97>", "<0xA5>"].map { try XCTUnwrap(tokenizer.id(forPiece: $0)) }
        XCTAssertEqual(try stream.append(contentsOf: rest), "日")
    }
}

final class UTF8ValidationTests: XCTestCase {
    func testIncompleteTailLength() {
        let cases: [([UInt8], Int)] = [
            ([], 0), ([0x61], 0), ([0xC3], 1), ([0xC3, 0xA9], 0), ([0xE6, 0x97], 2), ([0xE6], 1),
            ([0xF0, 0x9F, 0x98], 3), ([0xF0, 0x9F, 0x98, 0x80], 0), ([0x61, 0xF0], 1),
            ([0xE0, 0x80], 0),       // cannot become valid (overlong), so nothing is held
            ([0xF4, 0x90], 0),       // beyond U+10FFFF
            ([0x80, 0x80, 0x80], 0), // stray continuations
            ([0xFF], 0),
        ]
        for (bytes, expected) in cases {
            XCTAssertEqual(UTF8Validation.incompleteTailLength(bytes), expected, "\(bytes)")
        }
    }

    func testFirstInvalidOffsetAgreesWithTheStandardLibrary() {
        var generator = SplitMix64(seed: 0x0DF8)
        for _ in 0..<5000 {
            let bytes = (0..<Int.random(in: 0...6, using: &generator)).map { _ in
                [UInt8(0x61), 0x80, 0xBF, 0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0xA0, 0x90].randomElement(using: &generator)!
            }
            let valid = String(validating: bytes, as: UTF8.self) != nil
            let offset = bytes.withUnsafeBytes { UTF8Validation.firstInvalidOffset($0) }
            XCTAssertEqual(offset == nil, valid, "\(bytes)")
        }
    }
}

final class ChatTemplateTests: XCTestCase {
    private var fixture: TokenizerFixture { TokenizerFixture.shared }

    func testMatchesTransformersApplyChatTemplate() throws {
        XCTAssertGreaterThanOrEqual(fixture.chats.count, 10, "fixture lacks the chat references")
        let tokenizer = try? SharedTokenizer.require()
        for chat in fixture.chats {
            let messages = try chat.messages.map(ChatMessage.init(fixture:))
            let template = ChatTemplate(mode: .instruct, imageTokenCount: chat.image_seq_length)
            let text = try template.render(messages, addGenerationPrompt: chat.add_generation_prompt, imageCropCounts: chat.crops)
            XCTAssertEqual(text, chat.text)
            if let tokenizer {
                XCTAssertEqual(try template.renderIDs(messages, tokenizer: tokenizer, addGenerationPrompt: chat.add_generation_prompt,
                                                      imageCropCounts: chat.crops), chat.ids, chat.text.debugDescription)
            }
        }
    }

    func testImageIDsUseTheImageTokens() throws {
        let tokenizer = try SharedTokenizer.require()
        let template = ChatTemplate(imageTokenCount: 256)
        let ids = try template.renderIDs([ChatMessage(role: .user, content: [.image, .text("What is this?")])], tokenizer: tokenizer)
        let special = tokenizer.specialTokens
        XCTAssertEqual(ids.first, special.bos)
        XCTAssertEqual(ids.filter { $0 == special.imageSoftToken }.count, 256)
        XCTAssertEqual(ids.filter { $0 == special.startOfImage }.count, 1)
        XCTAssertEqual(ids.filter { $0 == special.endOfImage }.count, 1)
        let start = try XCTUnwrap(ids.firstIndex(of: special.startOfImage))
        XCTAssertEqual(Array(ids[(start + 1)...(start + 256)]), Array(repeating: special.imageSoftToken, count: 256))
        XCTAssertEqual(ids[start + 257], special.endOfImage)
    }

    func testRolesMustAlternate() {
        let template = ChatTemplate()
        let badConversations: [[ChatMessage]] = [
            [],
            [ChatMessage(role: .model, text: "I speak first")],
            [ChatMessage(role: .user, text: "a"), ChatMessage(role: .user, text: "b")],
            [ChatMessage(role: .system, text: "s"), ChatMessage(role: .assistant, text: "a")],
            [ChatMessage(role: .system, content: [.image, .text("s")]), ChatMessage(role: .user, text: "u")],
        ]
        for messages in badConversations {
            XCTAssertThrowsError(try template.render(messages)) { error in
                guard case .invalidConversation? = error as? TokenizerError else { return XCTFail("\(error)") }
            }
        }
    }

    func testPretrainedModeIsBOSAndText() throws {
        let tokenizer = try SharedTokenizer.require()
        let template = ChatTemplate(mode: .pretrained)
        let plain = try XCTUnwrap(fixture.cases.first { $0.text == "The quick brown fox jumps over the lazy dog." })
        let messages = [ChatMessage(role: .user, text: plain.text)]
        XCTAssertEqual(try template.render(messages), "<bos>" + plain.text)
        XCTAssertEqual(try template.renderIDs(messages, tokenizer: tokenizer), [fixture.bos_id] + plain.ids)
    }

    func testPythonStripMatchesStrSet() {
        XCTAssertEqual(ChatTemplate.pythonStrip("\u{1F}\u{3000} a b \u{85}\u{A0}"), "a b")
        XCTAssertEqual(ChatTemplate.pythonStrip(" \u{200B}x\u{200B} "), "\u{200B}x\u{200B}", "U+200B is not whitespace in Python")
        XCTAssertEqual(ChatTemplate.pythonStrip(" \n\t "), "")
    }
}
