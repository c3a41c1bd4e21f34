import GemmaAPI
import GemmaRPC
import GemmaText

extension SamplingParameters {
    /// The request's sampling values, checked; zero values mean "off" as in the .proto.
    init(_ message: V1.SamplingParams?, vocabularySize: Int) throws {
        self.init()
        guard let message else { return }
        temperature = message.temperature
        topK = Int(message.topK)
        topP = message.topP == 0 ? 1 : message.topP
        minP = message.minP
        repetitionPenalty = message.repetitionPenalty == 0 ? 1 : message.repetitionPenalty
        presencePenalty = message.presencePenalty
        frequencyPenalty = message.frequencyPenalty
        seed = message.hasSeed ? message.seed : nil
        do {
            try validate(vocabularySize: vocabularySize)
        } catch let error as TextModelError {
            throw RPCError.invalidArgument("sampling: \(error)")
        }
    }
}

enum Logprobs {
    static func of(_ token: Int32, in logits: [Float], top: Int) -> V1.TokenLogprobs {
        let result = LogProbabilities.of(token, in: logits, top: top)
        var message = V1.TokenLogprobs()
        message.chosen = entry(token, result.chosen)
        message.top = result.top.map { entry($0.id, $0.logprob) }
        return message
    }

    /// The top `count` log-probabilities of one row of logits.
    static func top(_ count: Int, of logits: [Float]) -> [V1.TokenLogprob] {
        var values = logits
        LogProbabilities.logSoftmax(&values, row: 0, width: values.count)
        return LogProbabilities.top(count, of: values).map { entry($0.id, $0.logprob) }
    }

    private static func entry(_ id: Int32, _ logprob: Float) -> V1.TokenLogprob {
        var entry = V1.TokenLogprob()
        entry.id = id
        entry.logprob = logprob
        return entry
    }
}

/// Streaming detokenization through the tokenizer service's stateless DecodeIncremental:
/// this side keeps the bytes of an unfinished character between calls.
struct RemoteDetokenizer {
    let client: RPCClient
    /// When the prompt came as token ids the tokenizer is optional: if it cannot be reached
    /// the stream carries ids without text.
    let optional: Bool
    private var pending: [UInt8] = []
    private var unavailable = false

    init(client: RPCClient, optional: Bool) {
        self.client = client
        self.optional = optional
    }

    mutating func append(_ token: Int32) async throws -> String {
        try await call([token], final: false)
    }

    mutating func finish() async throws -> String {
        try await call([], final: true)
    }

    private mutating func call(_ ids: [Int32], final: Bool) async throws -> String {
        if unavailable { return "" }
        var request = V1.DecodeIncrementalRequest()
        request.pending = pending
        request.ids = ids
        request.skipSpecial = true
        request.final = final
        do {
            let response = try await client.unary("/gemma.v1.Tokenizer/DecodeIncremental", request,
                                                   as: V1.DecodeIncrementalResponse.self, timeout: .seconds(30))
            pending = response.pending
            return response.text
        } catch let error as RPCError where optional && error.code == .unavailable {
            unavailable = true
            return ""
        } catch let error as RPCError {
            throw RPCError(error.code, "tokenizer service: \(error.message)")
        }
    }
}
