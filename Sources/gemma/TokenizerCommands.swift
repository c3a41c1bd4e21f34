import ArgumentParser
import Foundation
import GemmaAPI
import GemmaRPC

struct Tokenize: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Text → token ids, through the tokenizer service.")

    @Option(help: "The text.") var text: String
    @Flag(help: "Do not prepend <bos>.") var noBos = false
    @Flag(help: "Leave special-token text (\"<start_of_turn>\") as plain text.") var noSpecial = false
    @Flag(help: "Print a JSON array of ids.") var json = false
    @OptionGroup var services: ServiceAddresses

    func run() async throws {
        var request = V1.EncodeRequest()
        request.texts = [text]
        request.addBos = !noBos
        request.parseSpecial = !noSpecial
        let response = try await call(services, .tokenizer, "Encode", request, as: V1.EncodeResponse.self)
        let ids = response.encodings.first?.ids ?? []
        print(json ? "[" + ids.map(String.init).joined(separator: ", ") + "]" : ids.map(String.init).joined(separator: " "))
    }
}

struct Detokenize: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Token ids → text, through the tokenizer service.")

    @Option(help: "Comma-separated ids.") var tokens: String
    @Flag(help: "Leave out control tokens.") var skipSpecial = false
    @OptionGroup var services: ServiceAddresses

    func run() async throws {
        var request = V1.DecodeRequest()
        request.ids = try parseIDs(tokens)
        request.skipSpecial = skipSpecial
        print(try await call(services, .tokenizer, "Decode", request, as: V1.DecodeResponse.self).text)
    }
}

struct ChatTemplateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-template",
        abstract: "Render chat messages (JSON on standard input) into the Gemma prompt.",
        discussion: """
        Input: [{"role": "system"|"user"|"model", "content": "text"}] — content may also be a list of \
        {"type": "text", "text": …} and {"type": "image"} parts.
        """)

    @Flag(help: "Print the ids too, as JSON.") var ids = false
    @Flag(help: "The plain template of pretrained models.") var plain = false
    @Option(help: "Image tokens per image.") var tokensPerImage: UInt32 = 256
    @OptionGroup var services: ServiceAddresses

    func run() async throws {
        let input = FileHandle.standardInput.readDataToEndOfFile()
        var request = V1.ChatTemplateRequest()
        request.messages = try parseMessages(input)
        request.addGenerationPrompt = true
        request.tokensPerImage = tokensPerImage
        request.kind = plain ? .plain : .instruct
        let response = try await call(services, .tokenizer, "ApplyChatTemplate", request, as: V1.ChatTemplateResponse.self)
        print(response.text, terminator: "")
        if ids { print("\n[" + response.ids.map(String.init).joined(separator: ", ") + "]") }
    }
}

/// One call to a service, with the command line's timeout; failures exit with the status.
func call<Request: ProtoMessage, Response: ProtoMessage>(
    _ services: ServiceAddresses, _ kind: ServiceKind, _ method: String, _ request: Request, as: Response.Type
) async throws -> Response {
    do {
        return try await services.client(kind).unary(kind.method(method), request, as: Response.self,
                                                     timeout: services.callTimeout)
    } catch let error as RPCError {
        fail("\(kind.rawValue) \(services.address(of: kind)): \(error)")
    }
}

func parseIDs(_ text: String) throws -> [Int32] {
    try text.split(whereSeparator: { $0 == "," || $0 == " " }).map { piece in
        guard let id = Int32(piece.trimmingCharacters(in: .whitespaces)) else {
            throw ValidationError("'\(piece)' is not a token id")
        }
        return id
    }
}

/// Chat messages from JSON: content is a string or a list of text/image parts.
func parseMessages(_ data: Data) throws -> [V1.ChatMessage] {
    guard let array = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
        throw ValidationError("expected a JSON array of {\"role\", \"content\"} objects")
    }
    return try array.map { object in
        var message = V1.ChatMessage()
        guard let role = object["role"] as? String else { throw ValidationError("a message has no role") }
        message.role = role
        if let text = object["content"] as? String {
            message.parts = [textPart(text)]
        } else if let parts = object["content"] as? [[String: Any]] {
            message.parts = try parts.map { part in
                switch part["type"] as? String {
                case "text": return textPart(part["text"] as? String ?? "")
                case "image":
                    var image = V1.ContentPart()
                    var value = V1.Image()
                    if let path = part["path"] as? String {
                        value.source = .png(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
                    }
                    image.part = .image(value)
                    return image
                default: throw ValidationError("unknown content part type \(part["type"] ?? "nil")")
                }
            }
        } else {
            throw ValidationError("a message has no content")
        }
        return message
    }
}

func textPart(_ text: String) -> V1.ContentPart {
    var part = V1.ContentPart()
    part.part = .text(text)
    return part
}
