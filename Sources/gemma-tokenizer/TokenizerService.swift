import ArgumentParser
import Foundation
import GemmaAPI
import GemmaRPC
import GemmaTokenizer

@main
struct TokenizerServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemma-tokenizer",
        abstract: "The gemma.v1.Tokenizer service: SentencePiece encode/decode, chat template, streaming detokenization.")

    @Option(help: "A tokenizer.model, a Hugging Face model folder, or a GGUF file.")
    var model: String

    @Option(help: "Largest text accepted, in bytes (larger: RESOURCE_EXHAUSTED).")
    var maxTextBytes: Int = 4 << 20

    @Option(help: "Most texts in one Encode call.")
    var maxBatch: Int = 4096

    @OptionGroup var service: ServiceOptions

    func run() async throws {
        let code = await ServiceRunner.run(name: "gemma-tokenizer", options: service) {
            let tokenizer = try Tokenizer.load(path: model)
            let handlers = TokenizerHandlers(tokenizer: tokenizer, modelPath: model,
                                             limits: .init(maxTextBytes: maxTextBytes, maxBatch: maxBatch))
            return ([handlers.service()], "tokenizer \(model) (\(tokenizer.vocabularySize) tokens)")
        }
        throw ExitCode(code)
    }
}

struct TokenizerHandlers: Sendable {
    struct Limits: Sendable {
        var maxTextBytes: Int
        var maxBatch: Int
    }

    let tokenizer: Tokenizer
    let modelPath: String
    let limits: Limits
    let started = ContinuousClock.now

    func service() -> RPCService {
        var service = RPCService(name: "gemma.v1.Tokenizer")
        service.addHealth()
        // Lookups and decoding are quick (a client that streams through DecodeIncremental
        // calls once per token): answered on the event loop. Encoding and the chat template can take
        // milliseconds for a long text, so they run in tasks.
        service.quickUnary("Info") { (_: V1.InfoRequest, _) in info() }
        service.unary("Encode") { (request: V1.EncodeRequest, _) in try encode(request) }
        service.quickUnary("Decode") { (request: V1.DecodeRequest, _) in
            var response = V1.DecodeResponse()
            response.text = try mapErrors { try tokenizer.decode(request.ids, skipSpecial: request.skipSpecial) }
            return response
        }
        service.quickUnary("DecodeIncremental") { (request: V1.DecodeIncrementalRequest, _) in
            try decodeIncremental(request)
        }
        service.unary("ApplyChatTemplate") { (request: V1.ChatTemplateRequest, _) in try applyChatTemplate(request) }
        service.serverStreaming("Surfaces") { (_: V1.SurfacesRequest, _, stream: ResponseStream<V1.SurfacesPage>) in
            for page in surfacePages() { try await stream.send(page) }
        }
        return service
    }

    /// The detokenization table in pages of `idsPerPage` ids (~150 KB each for Gemma 3), the
    /// added tokens on the last.
    func surfacePages(idsPerPage: Int = 16_384) -> [V1.SurfacesPage] {
        let surfaces = tokenizer.surfaces
        var pages = stride(from: 0, to: max(surfaces.count, 1), by: idsPerPage).map { first in
            var page = V1.SurfacesPage()
            page.vocabularySize = UInt32(surfaces.count)
            page.firstID = UInt32(first)
            for id in first..<min(surfaces.count, first + idsPerPage) {
                let surface = surfaces.surface(of: id)
                page.lengths.append(UInt32(surface.count))
                page.bytes += surface
                page.skippable.append(surfaces.isSkippable(id) ? 1 : 0)
            }
            return page
        }
        pages[pages.count - 1].added = surfaces.added.sorted { $0.key < $1.key }.map { id, text in
            var token = V1.AddedToken()
            (token.id, token.text) = (id, text)
            return token
        }
        return pages
    }

    func info() -> V1.TokenizerInfo {
        var info = V1.TokenizerInfo()
        info.service = serviceInfo(service: "gemma.v1.Tokenizer", modelPath: modelPath, format: "sentencepiece", started: started)
        let special = tokenizer.specialTokens
        info.vocabularySize = UInt32(tokenizer.vocabularySize)
        info.bosID = special.bos
        info.eosID = special.eos
        info.padID = special.pad
        info.unkID = special.unk
        info.startOfTurnID = special.startOfTurn
        info.endOfTurnID = special.endOfTurn
        info.startOfImageID = special.startOfImage
        info.endOfImageID = special.endOfImage
        info.imageTokenID = special.imageSoftToken
        return info
    }

    func encode(_ request: V1.EncodeRequest) throws -> V1.EncodeResponse {
        guard !request.texts.isEmpty else { throw RPCError.invalidArgument("Encode needs at least one text") }
        guard request.texts.count <= limits.maxBatch else {
            throw RPCError.resourceExhausted("\(request.texts.count) texts in one call; the limit is \(limits.maxBatch)")
        }
        for (i, text) in request.texts.enumerated() where text.utf8.count > limits.maxTextBytes {
            throw RPCError.resourceExhausted("text \(i) has \(text.utf8.count) bytes; the limit is \(limits.maxTextBytes)")
        }
        var response = V1.EncodeResponse()
        response.encodings = try request.texts.map { text in
            var encoding = V1.Encoding()
            if request.withOffsets {
                let encoded = try mapErrors {
                    try tokenizer.encodeWithOffsets(text, addBOS: request.addBos, parseSpecial: request.parseSpecial)
                }
                encoding.ids = encoded.ids
                encoding.offsetsBegin = encoded.byteRanges.map { UInt32($0.lowerBound) }
                encoding.offsetsEnd = encoded.byteRanges.map { UInt32($0.upperBound) }
            } else {
                encoding.ids = try mapErrors { try tokenizer.encode(text, addBOS: request.addBos, parseSpecial: request.parseSpecial) }
            }
            return encoding
        }
        return response
    }

    func decodeIncremental(_ request: V1.DecodeIncrementalRequest) throws -> V1.DecodeIncrementalResponse {
        guard request.pending.count <= 16 else {
            throw RPCError.invalidArgument("pending holds \(request.pending.count) bytes: a client sends back at most the few bytes of one unfinished character")
        }
        var detokenizer = StreamingDetokenizer(tokenizer: tokenizer, skipSpecial: request.skipSpecial,
                                               pendingBytes: request.pending)
        var response = V1.DecodeIncrementalResponse()
        response.text = try mapErrors { try detokenizer.append(contentsOf: request.ids) }
        if request.final {
            response.text += detokenizer.finish()
        } else {
            response.pending = detokenizer.pendingBytes
        }
        return response
    }

    func applyChatTemplate(_ request: V1.ChatTemplateRequest) throws -> V1.ChatTemplateResponse {
        guard !request.messages.isEmpty else { throw RPCError.invalidArgument("no messages") }
        let messages = try request.messages.map(chatMessage)
        let images = messages.reduce(0) { $0 + $1.content.filter { $0 == .image }.count }
        var crops = request.cropsPerImage.map(Int.init)
        guard crops.isEmpty || crops.count == images else {
            throw RPCError.invalidArgument("crops_per_image has \(crops.count) entries for \(images) images")
        }
        if crops.isEmpty { crops = Array(repeating: 0, count: images) }
        let template = ChatTemplate(mode: request.kind == .plain ? .pretrained : .instruct,
                                    imageTokenCount: request.tokensPerImage == 0 ? 256 : Int(request.tokensPerImage))
        var response = V1.ChatTemplateResponse()
        response.text = try mapErrors {
            try template.render(messages, addGenerationPrompt: request.addGenerationPrompt, imageCropCounts: crops)
        }
        guard response.text.utf8.count <= limits.maxTextBytes else {
            throw RPCError.resourceExhausted("the rendered prompt has \(response.text.utf8.count) bytes; the limit is \(limits.maxTextBytes)")
        }
        response.ids = try mapErrors { try tokenizer.encode(response.text, addBOS: false, parseSpecial: true) }
        return response
    }

    private func chatMessage(_ message: V1.ChatMessage) throws -> ChatMessage {
        guard let role = ChatMessage.Role(rawValue: message.role) else {
            throw RPCError.invalidArgument("unknown role '\(message.role)' (system, user, model or assistant)")
        }
        let parts: [ChatMessage.Part] = message.parts.compactMap { part in
            switch part.part {
            case .text(let text)?: .text(text)
            case .image?: .image
            case nil: nil
            }
        }
        return ChatMessage(role: role, content: parts)
    }
}

/// Tokenizer failures are the caller's: INVALID_ARGUMENT with the tokenizer's message.
private func mapErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as TokenizerError {
        throw RPCError.invalidArgument(error.description)
    }
}
