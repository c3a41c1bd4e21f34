import ArgumentParser
import Foundation
import GemmaAPI
import GemmaRPC

struct SamplingOptions: ParsableArguments {
    @Option(help: "Tokens to generate at most.") var maxTokens: UInt32 = 256
    @Option(help: "0 = greedy.") var temperature: Float = 0
    @Option(help: "Keep the k most likely tokens (0 = all).") var topK: UInt32 = 0
    @Option(help: "Nucleus sampling threshold (1 = off).") var topP: Float = 1
    @Option(help: "Drop tokens below min-p × the best probability.") var minP: Float = 0
    @Option(help: "Repetition penalty (1 = off).") var repetitionPenalty: Float = 1
    @Option(help: "Presence penalty.") var presencePenalty: Float = 0
    @Option(help: "Frequency penalty.") var frequencyPenalty: Float = 0
    @Option(help: "Random seed: the same seed gives the same output.") var seed: UInt64?
    @Option(help: "Stop before this text (repeatable).") var stop: [String] = []
    @Flag(help: "Keep going past <eos> and <end_of_turn>.") var ignoreEos = false

    func apply(to request: inout V1.GenerateRequest) {
        var sampling = V1.SamplingParams()
        sampling.temperature = temperature
        sampling.topK = topK
        sampling.topP = topP
        sampling.minP = minP
        sampling.repetitionPenalty = repetitionPenalty
        sampling.presencePenalty = presencePenalty
        sampling.frequencyPenalty = frequencyPenalty
        if let seed {
            sampling.seed = seed
            sampling.hasSeed = true
        }
        request.sampling = sampling
        request.maxTokens = maxTokens
        request.stop = stop
        request.ignoreEos = ignoreEos
    }
}

struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text through the decoder service, streaming it as it comes.")

    @Option(help: "The prompt (a user message, unless --raw).") var prompt: String?
    @Flag(help: "No chat template: the prompt is the text to continue (with <bos>).") var raw = false
    @Option(help: "Comma-separated prompt token ids instead of text.") var tokens: String?
    @Option(help: "Keep the KV cache under this session id.") var session: String?
    @Option(help: "Return the log-probabilities of this many alternatives per token.") var topLogprobs: UInt32 = 0
    @Option(help: "A PNG image (repeatable). With --prompt it goes before the text of the user message; with --tokens or --raw the vision service encodes it here and its soft tokens fill the prompt's runs of the image token, in order.")
    var image: [String] = []
    @Flag(help: "Add Pan & Scan crops to the images.") var panAndScan = false
    @Flag(help: "One JSON object per line.") var json = false
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var services: ServiceAddresses

    func validate() throws {
        guard (prompt != nil) != (tokens != nil) else { throw ValidationError("give exactly one of --prompt and --tokens") }
    }

    func run() async throws {
        var request = V1.GenerateRequest()
        let images = try image.map { path -> V1.Image in
            guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
            return imageMessage(png: data, panAndScan: panAndScan)
        }
        if let tokens {
            var input = V1.TokenInput()
            input.ids = try parseIDs(tokens)
            request.input = .tokens(input)
        } else if raw {
            request.input = .text(prompt!)
        } else {
            var chat = V1.ChatInput()
            var message = V1.ChatMessage()
            message.role = "user"
            message.parts = images.map { image in
                var part = V1.ContentPart()
                part.part = .image(image)
                return part
            } + [textPart(prompt!)]
            chat.messages = [message]
            request.input = .chat(chat)
        }
        if !images.isEmpty && (tokens != nil || raw) {
            // No chat template to expand them: the soft tokens travel with the request.
            var encode = V1.EncodeImageRequest()
            encode.images = images
            encode.type = .f32
            request.imageEmbeddings = try await call(services, .vision, "EncodeImage", encode, as: V1.EncodeImageResponse.self).images
        }
        request.sessionID = session ?? ""
        request.topLogprobs = topLogprobs
        sampling.apply(to: &request)
        _ = try await streamGeneration(request, services: services, json: json)
        if !json { print() }
    }
}

/// Streams one Generate call to standard output; returns the generated text.
func streamGeneration(_ request: V1.GenerateRequest, services: ServiceAddresses, json: Bool) async throws -> String {
    var text = ""
    let client = try services.client(.decoder)
    do {
        for try await chunk in client.serverStreaming(ServiceKind.decoder.method("Generate"), request,
                                                      as: V1.GenerateResponse.self, timeout: services.callTimeout) {
            text += chunk.text
            if json {
                print(jsonLine(chunk))
            } else {
                FileHandle.standardOutput.write(Data(chunk.text.utf8))
            }
        }
    } catch let error as RPCError {
        if !json { print() }
        fail("decoder \(services.address(of: .decoder)): \(error)")
    }
    return text
}

func jsonLine(_ chunk: V1.GenerateResponse) -> String {
    var object: [String: Any] = ["token_ids": chunk.tokenIDs.map(Int.init), "text": chunk.text]
    if !chunk.logprobs.isEmpty {
        object["logprobs"] = chunk.logprobs.map { entry in
            ["id": Int(entry.chosen?.id ?? 0), "logprob": Double(entry.chosen?.logprob ?? 0),
             "top": entry.top.map { ["id": Int($0.id), "logprob": Double($0.logprob)] }] as [String: Any]
        }
    }
    if chunk.finishReason != .notFinished {
        object["finish_reason"] = ["", "stop", "length", "context"][Int(chunk.finishReason.rawValue)]
        if let usage = chunk.usage {
            object["usage"] = [
                "prompt_tokens": Int(usage.promptTokens), "cached_prompt_tokens": Int(usage.cachedPromptTokens),
                "generated_tokens": Int(usage.generatedTokens),
                "prefill_ms": Double(usage.prefillUs) / 1000, "decode_ms": Double(usage.decodeUs) / 1000,
            ]
        }
    }
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    return String(decoding: data, as: UTF8.self)
}

struct Chat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Interactive multi-turn chat; the decoder keeps the conversation's KV cache.")

    @Option(help: "A system message.") var system: String?
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var services: ServiceAddresses

    func run() async throws {
        let session = "chat-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var messages: [V1.ChatMessage] = []
        if let system { messages.append(message("system", [textPart(system)])) }
        var pendingImages: [V1.ContentPart] = []
        FileHandle.standardError.write(Data("Type a message; /image PATH attaches an image; /quit or end of input leaves.\n".utf8))
        while true {
            FileHandle.standardError.write(Data("> ".utf8))
            guard let line = readLine() else { break }
            if line == "/quit" { break }
            if line.hasPrefix("/image ") {
                let path = String(line.dropFirst(7)).trimmingCharacters(in: .whitespaces)
                guard let data = FileManager.default.contents(atPath: path) else {
                    FileHandle.standardError.write(Data("cannot read \(path)\n".utf8))
                    continue
                }
                var image = V1.Image()
                image.source = .png(Array(data))
                var part = V1.ContentPart()
                part.part = .image(image)
                pendingImages.append(part)
                continue
            }
            guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
            messages.append(message("user", pendingImages + [textPart(line)]))
            pendingImages = []
            var request = V1.GenerateRequest()
            var chat = V1.ChatInput()
            chat.messages = messages
            request.input = .chat(chat)
            request.sessionID = session
            sampling.apply(to: &request)
            let reply = try await streamGeneration(request, services: services, json: false)
            print()
            messages.append(message("model", [textPart(reply)]))
        }
        var release = V1.ReleaseSessionRequest()
        release.sessionID = session
        _ = try? await services.client(.decoder).unary(ServiceKind.decoder.method("ReleaseSession"), release,
                                                       as: V1.ReleaseSessionResponse.self, timeout: .seconds(5))
    }

    private func message(_ role: String, _ parts: [V1.ContentPart]) -> V1.ChatMessage {
        var message = V1.ChatMessage()
        message.role = role
        message.parts = parts
        return message
    }
}

struct Score: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Logits for every position of a token sequence, written as little-endian float32 (positions × vocabulary).")

    @Option(help: "Comma-separated token ids.") var tokens: String
    @Option(help: "Output file.") var output: String
    @Flag(help: "Log-probabilities instead of logits.") var logprobs = false
    @Option(help: "A PNG image (repeatable): the images fill the runs of the image token in the sequence, in order (each crop one run of tokens-per-image ids).")
    var image: [String] = []
    @Flag(help: "Add Pan & Scan crops to the images (each crop needs its own run).") var panAndScan = false
    @OptionGroup var services: ServiceAddresses

    func run() async throws {
        var request = V1.ScoreRequest()
        request.ids = try parseIDs(tokens)
        request.images = image.map { path in
            guard let data = FileManager.default.contents(atPath: path) else { fail("cannot read \(path)") }
            return imageMessage(png: data, panAndScan: panAndScan)
        }
        request.output = logprobs ? .logprobs : .logits
        guard FileManager.default.createFile(atPath: output, contents: nil),
              let file = FileHandle(forWritingAtPath: output) else { fail("cannot write \(output)") }
        var positions = 0
        var vocabulary = 0
        do {
            for try await chunk in try services.client(.decoder).serverStreaming(
                ServiceKind.decoder.method("Score"), request, as: V1.ScoreResponse.self, timeout: services.callTimeout) {
                file.write(Data(chunk.values))
                positions += Int(chunk.positions)
                vocabulary = Int(chunk.vocabularySize)
            }
        } catch let error as RPCError {
            fail("decoder \(services.address(of: .decoder)): \(error)")
        }
        try file.close()
        print("wrote \(positions) × \(vocabulary) float32 to \(output)")
    }
}
