import Foundation
import GemmaAPI
import GemmaRPC
import XCTest

/// The decoder and tokenizer services together, socket-activated, on the real 270M.
final class DecoderServiceTests: XCTestCase {
    nonisolated(unsafe) static var tokenizer: ActivatedService?
    nonisolated(unsafe) static var decoder: ActivatedService?
    static let maxContext = 512

    /// Statics outlive the test process's last test: stop the services here, not at exit.
    override class func tearDown() {
        decoder = nil
        tokenizer = nil
        super.tearDown()
    }

    override func setUpWithError() throws {
        if Self.decoder == nil {
            let model = try realModelPath()
            let tokenizer = try ActivatedService(binary: "gemma-tokenizer", arguments: ["--model", model], name: "tokenizer")
            Self.tokenizer = tokenizer
            Self.decoder = try ActivatedService(
                binary: "gemma-decoder",
                arguments: ["--model", model, "--tokenizer", tokenizer.unixAddress, "--max-context", "\(Self.maxContext)",
                            "--kv-budget-mib", "256"],
                name: "decoder")
        }
    }

    private var client: RPCClient { get throws { try RPCClient(Self.decoder!.unixAddress) } }

    struct Result: Sendable {
        var text = ""
        var ids: [Int32] = []
        var finish = V1.FinishReason.notFinished
        var usage: V1.Usage?
    }

    private func generate(_ request: V1.GenerateRequest, address: String? = nil) async throws -> Result {
        try await Self.generate(request, address: address ?? Self.decoder!.unixAddress)
    }

    static func generate(_ request: V1.GenerateRequest, address: String) async throws -> Result {
        let client = try RPCClient(address)
        var result = Result()
        for try await chunk in client.serverStreaming("/gemma.v1.Decoder/Generate", request, as: V1.GenerateResponse.self,
                                                      timeout: .seconds(300)) {
            result.text += chunk.text
            result.ids += chunk.tokenIDs
            if chunk.finishReason != .notFinished {
                result.finish = chunk.finishReason
                result.usage = chunk.usage
            }
        }
        return result
    }

    private func rawRequest(_ text: String, maxTokens: UInt32 = 16) -> V1.GenerateRequest {
        Self.rawRequest(text, maxTokens: maxTokens)
    }

    static func rawRequest(_ text: String, maxTokens: UInt32 = 16) -> V1.GenerateRequest {
        var request = V1.GenerateRequest()
        request.input = .text(text)
        request.maxTokens = maxTokens
        return request
    }

    private struct RealPrompt: Decodable {
        let text: String
        let ids: [Int32]
        let expected_continuation: String
    }

    /// The reference: greedy continuation of the raw prompt, as transformers and
    /// llama.cpp produce it, through both services (over TCP to show the listener works).
    func testGreedyRawContinuationThroughTheServices() async throws {
        let fixture = try JSONDecoder().decode(RealPrompt.self, from: Data(contentsOf: URL(
            fileURLWithPath: repositoryRoot + "/Tests/Fixtures/text/real_270m/prompt.json")))
        let result = try await generate(rawRequest(fixture.text), address: Self.decoder!.tcpAddress)
        // The reference text is 15 tokens; 16 were generated.
        XCTAssertTrue(result.text.hasPrefix(fixture.expected_continuation), result.text)
        XCTAssertEqual(result.finish, .length)
        XCTAssertEqual(result.usage?.promptTokens, UInt32(fixture.ids.count))
        XCTAssertEqual(result.usage?.generatedTokens, 16)
        // The same ids given directly need no tokenizer for the prompt.
        var byIDs = V1.GenerateRequest()
        var input = V1.TokenInput()
        input.ids = fixture.ids
        byIDs.input = .tokens(input)
        byIDs.maxTokens = 16
        let direct = try await generate(byIDs)
        XCTAssertEqual(direct.ids, result.ids)
    }

    /// The streamed text is the tokenizer's Decode of the streamed ids, multi-byte characters
    /// included. (This decoder streams from the tokenizer's `Surfaces` table; the per-token
    /// DecodeIncremental path it falls back to is exercised by MultimodalServiceTests' stub
    /// tokenizer, which has no `Surfaces`. Which path ran is not observable here.)
    func testStreamedTextIsTheTokenizersDecodeOfTheIds() async throws {
        for prompt in ["日本の首都は", "Emoji are fun: 🎉", "The capital of France is"] {
            let result = try await generate(rawRequest(prompt, maxTokens: 24))
            var decode = V1.DecodeRequest()
            decode.ids = result.ids
            decode.skipSpecial = true
            let expected = try await RPCClient(Self.tokenizer!.unixAddress)
                .unary("/gemma.v1.Tokenizer/Decode", decode, as: V1.DecodeResponse.self).text
            XCTAssertEqual(result.text, expected, prompt)
            XCTAssertFalse(result.text.isEmpty, prompt)
        }
    }

    func testChatStopsAtEndOfTurnAndSeedsRepeat() async throws {
        var request = V1.GenerateRequest()
        var chat = V1.ChatInput()
        var message = V1.ChatMessage()
        message.role = "user"
        var part = V1.ContentPart()
        part.part = .text("Name three colors.")
        message.parts = [part]
        chat.messages = [message]
        request.input = .chat(chat)
        request.maxTokens = 48
        var sampling = V1.SamplingParams()
        sampling.temperature = 0.9
        sampling.topP = 0.95
        sampling.seed = 1234
        sampling.hasSeed = true
        request.sampling = sampling
        let first = try await generate(request)
        let second = try await generate(request)
        XCTAssertEqual(first.ids, second.ids, "same seed, same tokens")
        XCTAssertFalse(first.text.isEmpty)
        XCTAssertFalse(first.text.contains("<end_of_turn>"))
        sampling.seed = 99
        request.sampling = sampling
        request.maxTokens = 8
        let short = try await generate(request)
        XCTAssertLessThanOrEqual(short.ids.count, 8)
    }

    func testStopStringEndsTheTextBeforeIt() async throws {
        var request = rawRequest("The capital of France is")
        request.stop = [" France"]
        let result = try await generate(request)
        XCTAssertEqual(result.finish, .stop)
        XCTAssertFalse(result.text.contains("France"), result.text)
        XCTAssertEqual(result.text, " the capital of the country of")
    }

    /// A session keeps its cache: the second turn reuses the first's prefix and generates what
    /// a one-off call with the whole prompt generates.
    func testSessionReusesTheCachedPrefix() async throws {
        var first = rawRequest("The capital of France is", maxTokens: 4)
        first.sessionID = "s-\(UInt32.random(in: 0...UInt32.max))"
        let turn1 = try await generate(first)
        var second = rawRequest("The capital of France is" + turn1.text + " Paris is", maxTokens: 8)
        second.sessionID = first.sessionID
        let turn2 = try await generate(second)
        XCTAssertGreaterThan(turn2.usage?.cachedPromptTokens ?? 0, 4)
        let oneOff = try await generate(rawRequest("The capital of France is" + turn1.text + " Paris is", maxTokens: 8))
        XCTAssertEqual(turn2.ids, oneOff.ids)
        XCTAssertEqual(oneOff.usage?.cachedPromptTokens, 0)
        var release = V1.ReleaseSessionRequest()
        release.sessionID = first.sessionID
        let released = try await client.unary("/gemma.v1.Decoder/ReleaseSession", release, as: V1.ReleaseSessionResponse.self)
        XCTAssertTrue(released.released)
        let again = try await client.unary("/gemma.v1.Decoder/ReleaseSession", release, as: V1.ReleaseSessionResponse.self)
        XCTAssertFalse(again.released)
    }

    /// Streams of different lengths decode together (one asks for log-probabilities, another
    /// is cancelled after three tokens) and each gets what it gets alone.
    func testConcurrentClientsGetTheSameAnswersAsOneAtATime() async throws {
        let prompts = ["The capital of France is", "My favourite food is", "Once upon a time"]
        let lengths: [UInt32] = [12, 5, 20]
        let cancelledSession = "cancelled-\(UInt32.random(in: 0...UInt32.max))"
        func request(_ i: Int) -> V1.GenerateRequest {
            var request = Self.rawRequest(prompts[i], maxTokens: lengths[i])
            if i == 1 { request.topLogprobs = 3 }
            return request
        }
        var sequential: [[Int32]] = []
        for i in prompts.indices { sequential.append(try await generate(request(i)).ids) }
        let address = Self.decoder!.unixAddress
        let concurrent = try await withThrowingTaskGroup(of: (Int, [Int32]).self) { group in
            for i in prompts.indices {
                group.addTask { (i, try await Self.generate(request(i), address: address).ids) }
            }
            group.addTask {
                var long = Self.rawRequest("Count from one to a thousand:", maxTokens: 400)
                long.ignoreEos = true
                long.sessionID = cancelledSession
                var received: [Int32] = []
                for try await chunk in try RPCClient(address).serverStreaming(
                    "/gemma.v1.Decoder/Generate", long, as: V1.GenerateResponse.self) {
                    received += chunk.tokenIDs
                    if received.count >= 3 { break }
                }
                return (-1, received)
            }
            var out = [[Int32]](repeating: [], count: prompts.count)
            for try await (i, ids) in group where i >= 0 { out[i] = ids }
            return out
        }
        XCTAssertEqual(concurrent, sequential)
        XCTAssertEqual(sequential.map(\.count), lengths.map(Int.init))
        // The cancelled stream's handler finished: its session is checked back in (a session in
        // use answers FAILED_PRECONDITION), which its handler does only once the engine has
        // let the generation go (a detach that never returned would keep the session out).
        var resume = rawRequest("Count from one to a thousand: one", maxTokens: 2)
        resume.sessionID = cancelledSession
        var resumed: Result?
        for _ in 0..<100 where resumed == nil {
            do {
                resumed = try await generate(resume)
            } catch let error as RPCError where error.code == .failedPrecondition {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        XCTAssertEqual(resumed?.ids.count, 2, "the cancelled stream's session never came back")
        var release = V1.ReleaseSessionRequest()
        release.sessionID = cancelledSession
        _ = try await client.unary("/gemma.v1.Decoder/ReleaseSession", release, as: V1.ReleaseSessionResponse.self)
    }

    /// A session stopped by a stop string may hold tokens past it; the next turn still
    /// continues exactly as a one-off call on the whole text.
    func testSessionAfterAStopStringContinuesLikeAOneOffCall() async throws {
        var first = rawRequest("The capital of France is", maxTokens: 16)
        first.sessionID = "stop-\(UInt32.random(in: 0...UInt32.max))"
        first.stop = [" country"]
        let turn1 = try await generate(first)
        XCTAssertEqual(turn1.finish, .stop)
        let text = "The capital of France is" + turn1.text + " is Paris. The capital of Italy is"
        var second = rawRequest(text, maxTokens: 8)
        second.sessionID = first.sessionID
        let turn2 = try await generate(second)
        XCTAssertGreaterThan(turn2.usage?.cachedPromptTokens ?? 0, 4)
        let oneOff = try await generate(rawRequest(text, maxTokens: 8))
        XCTAssertEqual(turn2.ids, oneOff.ids)
    }

    func testScoreMatchesGreedyGeneration() async throws {
        var encode = V1.EncodeRequest()
        encode.texts = ["The capital of France is"]
        encode.addBos = true
        let ids = try await RPCClient(Self.tokenizer!.unixAddress)
            .unary("/gemma.v1.Tokenizer/Encode", encode, as: V1.EncodeResponse.self).encodings[0].ids
        var request = V1.ScoreRequest()
        request.ids = ids
        var rows: [Float] = []
        var vocabulary = 0
        for try await chunk in try client.serverStreaming("/gemma.v1.Decoder/Score", request, as: V1.ScoreResponse.self) {
            vocabulary = Int(chunk.vocabularySize)
            rows += chunk.values.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        XCTAssertEqual(rows.count, ids.count * vocabulary)
        let last = Array(rows[((ids.count - 1) * vocabulary)...])
        let best = last.indices.max { last[$0] < last[$1] }!
        let greedy = try await generate(rawRequest("The capital of France is", maxTokens: 1))
        XCTAssertEqual(greedy.ids, [Int32(best)])

        // The streamed log-probabilities are the log-softmax of those logits.
        var withLogprobs = rawRequest("The capital of France is", maxTokens: 1)
        withLogprobs.topLogprobs = 3
        var streamed: [V1.TokenLogprobs] = []
        for try await chunk in try client.serverStreaming("/gemma.v1.Decoder/Generate", withLogprobs, as: V1.GenerateResponse.self) {
            streamed += chunk.logprobs
        }
        let maximum = Double(last[best])
        let logSum = log(last.reduce(0.0) { $0 + exp(Double($1) - maximum) }) + maximum
        let top3 = last.indices.sorted { last[$0] > last[$1] }.prefix(3)
        XCTAssertEqual(streamed.count, 1)
        XCTAssertEqual(streamed.first?.chosen?.id, Int32(best))
        XCTAssertEqual(Double(streamed.first?.chosen?.logprob ?? 0), Double(last[best]) - logSum, accuracy: 1e-4)
        XCTAssertEqual(streamed.first?.top.map(\.id), top3.map(Int32.init))
        for (entry, id) in zip(streamed.first?.top ?? [], top3) {
            XCTAssertEqual(Double(entry.logprob), Double(last[id]) - logSum, accuracy: 1e-4)
        }
    }

    func testBadInputGetsAStatusAndOtherCallsContinue() async throws {
        var tokens = V1.GenerateRequest()
        var input = V1.TokenInput()
        input.ids = [2, 300_000]
        tokens.input = .tokens(input)
        await assertStatus(.invalidArgument) { _ = try await self.generate(tokens) }

        var sampling = V1.SamplingParams()
        sampling.temperature = -1
        var bad = rawRequest("hi")
        bad.sampling = sampling
        await assertStatus(.invalidArgument) { _ = try await self.generate(bad) }
        sampling.temperature = 1
        sampling.topP = 2
        bad.sampling = sampling
        await assertStatus(.invalidArgument) { _ = try await self.generate(bad) }

        input.ids = [2] + Array(repeating: 1000, count: Self.maxContext)
        tokens.input = .tokens(input)
        await assertStatus(.outOfRange) { _ = try await self.generate(tokens) }

        var image = V1.GenerateRequest()
        var chat = V1.ChatInput()
        var message = V1.ChatMessage()
        message.role = "user"
        var part = V1.ContentPart()
        var picture = V1.Image()
        picture.source = .png([0x89, 0x50])
        part.part = .image(picture)
        message.parts = [part]
        chat.messages = [message]
        image.input = .chat(chat)
        await assertStatus(.failedPrecondition) { _ = try await self.generate(image) }

        await assertStatus(.invalidArgument) { _ = try await self.generate(V1.GenerateRequest()) }
        let ok = try await generate(rawRequest("Hello", maxTokens: 2))
        XCTAssertEqual(ok.ids.count, 2)
    }

    /// Cancelling a stream stops it; the service goes on serving.
    func testCancelledStreamStopsAndTheServiceGoesOn() async throws {
        var request = rawRequest("Count from one to a thousand:", maxTokens: 400)
        request.ignoreEos = true
        var received = 0
        for try await chunk in try client.serverStreaming("/gemma.v1.Decoder/Generate", request, as: V1.GenerateResponse.self) {
            received += chunk.tokenIDs.count
            if received >= 3 { break }
        }
        let next = try await generate(rawRequest("Hello", maxTokens: 2))
        XCTAssertEqual(next.ids.count, 2)
    }
}
