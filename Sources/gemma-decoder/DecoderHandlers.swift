import Foundation
import GemmaAPI
import GemmaRPC
import GemmaText

/// The gemma.v1.Decoder methods over one loaded model.
final class DecoderHandlers: Sendable {
    struct Limits: Sendable {
        var maxContext: Int
        var defaultMaxTokens: Int
        /// Prompt positions computed per inference job; other streams' decode steps run between
        /// the pieces of a longer prompt (0: the whole prompt in one job).
        var prefillChunk: Int
    }

    /// Positions per Score message: 16 rows of a 262k vocabulary are 16 MiB.
    static let scoreRowsPerMessage = 16

    let model: TextModel
    let modelPath: String
    let tokenizer: RPCClient
    /// The tokenizer service's detokenization table, shared by every stream.
    let surfaces: SurfaceTable
    let sessions: SessionStore
    let limits: Limits
    /// Image token, soft tokens per crop, vision services and the soft-token cache.
    let images: ImageSupport
    let queue = InferenceQueue(name: "gemma-decoder inference")
    /// The decode loops of every generation; concurrent ones share passes over the weights.
    let engine: GenerationEngine
    let started = ContinuousClock.now

    init(model: TextModel, modelPath: String, tokenizer: RPCClient, sessions: SessionStore, limits: Limits,
         images: ImageSupport) {
        self.model = model
        self.modelPath = modelPath
        self.tokenizer = tokenizer
        surfaces = SurfaceTable(client: tokenizer)
        self.sessions = sessions
        self.limits = limits
        self.images = images
        engine = GenerationEngine(model: model, queue: queue)
    }

    func service() -> RPCService {
        var service = RPCService(name: "gemma.v1.Decoder")
        service.addHealth()
        service.unary("Info") { [self] (_: V1.InfoRequest, _) in await info() }
        service.serverStreaming("Generate") { [self] (request: V1.GenerateRequest, context, stream: ResponseStream<V1.GenerateResponse>) in
            try await generate(request, context: context, stream: stream)
        }
        service.serverStreaming("Score") { [self] (request: V1.ScoreRequest, _, stream: ResponseStream<V1.ScoreResponse>) in
            try await score(request, stream: stream)
        }
        service.unary("ReleaseSession") { [self] (request: V1.ReleaseSessionRequest, _) in
            var response = V1.ReleaseSessionResponse()
            response.released = await sessions.release(request.sessionID)
            return response
        }
        return service
    }

    func info() async -> V1.DecoderInfo {
        let config = model.config
        var info = V1.DecoderInfo()
        info.service = serviceInfo(service: "gemma.v1.Decoder", modelPath: modelPath, format: "safetensors", started: started)
        info.vocabularySize = UInt32(config.vocabSize)
        info.contextLength = UInt32(limits.maxContext)
        info.layers = UInt32(config.layerCount)
        info.hiddenSize = UInt32(config.hiddenSize)
        info.slidingWindow = UInt32(config.slidingWindow)
        info.sessions = UInt32(await sessions.count)
        info.kvBytesInUse = UInt64(await sessions.bytesInUse)
        info.kvBytesBudget = UInt64(sessions.budgetBytes)
        info.acceptsImages = images.vision != nil
        return info
    }

    // MARK: Generate

    func generate(_ request: V1.GenerateRequest, context: CallContext,
                  stream: ResponseStream<V1.GenerateResponse>) async throws {
        let sampling = try SamplingParameters(request.sampling, vocabularySize: model.config.vocabSize)
        let maxTokens = request.maxTokens == 0 ? limits.defaultMaxTokens : Int(request.maxTokens)
        guard request.topLogprobs <= 20 else { throw RPCError.invalidArgument("top_logprobs is at most 20") }
        // Token ids with the images' soft tokens placed (the context is checked inside, before
        // any image is encoded).
        let input = try await generateInput(request)
        try checkVocabulary(input)
        let prompt = input.tokens
        // A one-off call's cache is sized to what it can use; a session's to the full context.
        let capacity = request.sessionID.isEmpty ? min(limits.maxContext, prompt.count + maxTokens) : limits.maxContext
        try await withCache(session: request.sessionID, capacity: capacity) { cache in
            try await runGeneration(input: input, cache: cache, sampling: sampling, maxTokens: maxTokens,
                                    request: request, stream: stream)
        }
    }

    private func runGeneration(input: TextInput, cache: KVCache, sampling: SamplingParameters, maxTokens: Int,
                               request: V1.GenerateRequest, stream: ResponseStream<V1.GenerateResponse>) async throws {
        let model = self.model
        let prompt = input.tokens
        // Before any work: a tokenizer that cannot give text fails the call here.
        var detokenizer = try await StreamDetokenizer.start(table: surfaces, client: tokenizer, optional: request.input.isTokens)
        let prefillStart = ContinuousClock.now
        // A long prompt goes in pieces, each its own job on the inference queue, so the decode
        // steps of other streams are not held up for the whole prefill.
        let cached = try await queue.run { model.reusablePrefix(of: input, cache: cache) }
        for cut in model.prefillCuts(of: input, after: cached, chunk: limits.prefillChunk) {
            let piece = input.prefix(cut, hiddenSize: model.config.hiddenSize)
            _ = try await queue.run { try model.prefill(piece, cache: cache) }
        }
        let generation = Generation(
            cache: cache, prompt: prompt, sampling: sampling,
            limits: .init(maxTokens: maxTokens, ignoreEos: request.ignoreEos, topLogprobs: Int(request.topLogprobs),
                          serviceContext: limits.maxContext))
        let engine = self.engine
        // The last piece of the prompt and the first token in one job: the engine samples it
        // and goes on decoding from there.
        let prefillTime = try await queue.run {
            let logits = try model.prefill(input, cache: cache)
            let elapsed = ContinuousClock.now - prefillStart
            engine.admit(generation, logits: logits)
            return elapsed
        }
        let decodeStart = ContinuousClock.now
        var stops = StopMatcher(stops: request.stop)
        var finish = V1.FinishReason.notFinished
        var generated = 0
        // Tokens are detokenized and sent while the engine computes the next ones; the
        // generation leaves the engine before its cache goes back (to a session or away).
        do {
            for await event in generation.events {
                switch event {
                case .endOfText:
                    finish = .stop
                case .failed(let error):
                    throw error
                case .token(let token, let logits, let limit):
                    generated += 1
                    var chunk = V1.GenerateResponse()
                    chunk.tokenIDs = [token]
                    if let logits { chunk.logprobs = [Logprobs.of(token, in: logits, top: Int(request.topLogprobs))] }
                    let (text, stopped) = stops.feed(try await detokenizer.append(token))
                    chunk.text = text
                    finish = stopped ? .stop : limit
                    try await stream.send(chunk)
                    // Only a stream that goes on lets the engine sample further ahead.
                    if finish == .notFinished { engine.acknowledge(generation) }
                }
                if finish != .notFinished { break }
            }
            // The events end early only when this call is cancelled.
            try Task.checkCancellation()
        } catch {
            await engine.detach(generation)
            throw error
        }
        await engine.detach(generation)
        var last = V1.GenerateResponse()
        // Text held back for a possible stop string is sent unless a stop string was found.
        let tail = try await detokenizer.finish()
        if !stops.stopped { last.text = stops.feed(tail).text + stops.flush() }
        last.finishReason = finish
        var usage = V1.Usage()
        usage.promptTokens = UInt32(prompt.count)
        usage.cachedPromptTokens = UInt32(cached)
        usage.generatedTokens = UInt32(generated)
        usage.prefillUs = UInt64(microseconds(prefillTime))
        usage.decodeUs = UInt64(microseconds(ContinuousClock.now - decodeStart))
        last.usage = usage
        try await stream.send(last)
    }
}

extension DecoderHandlers {
    /// The prompt as token ids: given, or encoded by the tokenizer service (text with
    /// `<bos>`; chat messages through its template).
    func promptIDs(_ request: V1.GenerateRequest) async throws -> [Int32] {
        switch request.input {
        case .tokens(let input)?:
            guard !input.ids.isEmpty else { throw RPCError.invalidArgument("no prompt tokens") }
            return input.ids
        case .text(let text)?:
            var encode = V1.EncodeRequest()
            encode.texts = [text]
            encode.addBos = true
            encode.parseSpecial = true
            let response = try await callTokenizer("Encode", encode, as: V1.EncodeResponse.self)
            guard let ids = response.encodings.first?.ids, !ids.isEmpty else {
                throw RPCError.internal("the tokenizer returned no encoding")
            }
            return ids
        case .chat(let chat)?:
            // Image parts are handled by generateInput, which renders them with their crops.
            guard !chat.messages.isEmpty else { throw RPCError.invalidArgument("no chat messages") }
            var render = V1.ChatTemplateRequest()
            render.messages = chat.messages
            render.addGenerationPrompt = true
            render.kind = chat.kind
            return try await callTokenizer("ApplyChatTemplate", render, as: V1.ChatTemplateResponse.self).ids
        case nil:
            throw RPCError.invalidArgument("the request has no input (chat, text or tokens)")
        }
    }

    /// Calls the tokenizer service; its errors keep their codes, with the service named.
    func callTokenizer<Request: ProtoMessage, Response: ProtoMessage>(
        _ method: String, _ request: Request, as: Response.Type
    ) async throws -> Response {
        do {
            return try await tokenizer.unary("/gemma.v1.Tokenizer/\(method)", request, as: Response.self,
                                             timeout: .seconds(60))
        } catch let error as RPCError {
            throw RPCError(error.code, "tokenizer service: \(error.message)")
        }
    }

    /// Runs `body` with the session's cache (kept afterwards) or a one-off cache.
    func withCache<T: Sendable>(session: String, capacity: Int,
                                _ body: (KVCache) async throws -> T) async throws -> T {
        let model = self.model
        let bytes = KVCache.kvBytes(config: model.config, maxContext: capacity)
        if session.isEmpty {
            try await sessions.reserveTransient(bytes)
            do {
                let result = try await body(model.makeCache(maxContext: capacity))
                await sessions.releaseTransient(bytes)
                return result
            } catch {
                await sessions.releaseTransient(bytes)
                throw error
            }
        }
        let cache = try await sessions.checkOut(session, bytes: bytes) { model.makeCache(maxContext: capacity) }
        do {
            let result = try await body(cache)
            await sessions.checkIn(session)
            return result
        } catch {
            await sessions.checkIn(session)
            throw error
        }
    }

    // MARK: Score

    /// Logits (or log-probabilities, or the top-k) for every position, streamed a few
    /// positions per message.
    func score(_ request: V1.ScoreRequest, stream: ResponseStream<V1.ScoreResponse>) async throws {
        guard !request.ids.isEmpty else { throw RPCError.invalidArgument("no tokens to score") }
        guard request.ids.count <= limits.maxContext else {
            throw RPCError(.outOfRange, "\(request.ids.count) tokens exceed the context of \(limits.maxContext)")
        }
        let input = try await scoreInput(request)
        try checkVocabulary(input)
        let vocabulary = model.config.vocabSize
        if request.output == .topK {
            guard request.topK > 0 && Int(request.topK) <= vocabulary else {
                throw RPCError.invalidArgument("top_k must be in 1...\(vocabulary)")
            }
        }
        let model = self.model
        let count = input.count
        try await withCache(session: "", capacity: count) { cache in
            var start = 0
            while start < count {
                // A bidirectional group (an image) and an override are computed in one call: a
                // chunk that would end inside one runs to its end, and is sent in several messages.
                var end = min(count, start + Self.scoreRowsPerMessage)
                let spans = input.bidirectionalGroups + input.embeddingOverrides.map {
                    $0.start..<($0.start + $0.values.count / model.config.hiddenSize)
                }
                while let span = spans.first(where: { $0.lowerBound < end && end < $0.upperBound }) { end = span.upperBound }
                let chunk = input.slice(start..<end, hiddenSize: model.config.hiddenSize)
                let all = try await queue.run { try model.appendReturningAllLogits(chunk, cache: cache) }
                var first = start
                while first < end {
                    let last = min(end, first + Self.scoreRowsPerMessage)
                    var rows = Array(all[((first - start) * vocabulary)..<((last - start) * vocabulary)])
                    var message = V1.ScoreResponse()
                    message.firstPosition = UInt32(first)
                    message.positions = UInt32(last - first)
                    message.vocabularySize = UInt32(vocabulary)
                    switch request.output {
                    case .logits:
                        message.values = littleEndianBytes(rows)
                    case .logprobs:
                        for row in 0..<(last - first) { LogProbabilities.logSoftmax(&rows, row: row, width: vocabulary) }
                        message.values = littleEndianBytes(rows)
                    case .topK:
                        for row in 0..<(last - first) {
                            let slice = Array(rows[(row * vocabulary)..<((row + 1) * vocabulary)])
                            message.top += Logprobs.top(Int(request.topK), of: slice)
                        }
                    }
                    try await stream.send(message)
                    first = last
                }
                start = end
            }
        }
    }
}

func microseconds(_ duration: Duration) -> Int64 {
    duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
}

func littleEndianBytes(_ values: [Float]) -> [UInt8] {
    values.withUnsafeBytes { Array($0) }  // x86-64 and arm64 are little-endian
}

extension Optional where Wrapped == V1.GenerateRequest.Input {
    var isTokens: Bool {
        if case .tokens? = self { return true }
        return false
    }
}
