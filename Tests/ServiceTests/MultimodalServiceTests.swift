import Foundation
import GemmaAPI
import GemmaRPC
import XCTest

/// gemma-vision and gemma-decoder on the same random-weight Gemma3ForConditionalGeneration
/// (Tests/Fixtures/multimodal, made by tools/make_multimodal_fixtures.py from transformers):
/// logits and greedy continuations of prompts with images against transformers', and the
/// statuses of everything that can go wrong on the image path.
///
/// The fixture's vocabulary is tiny, so prompts are token ids; where the chat path is tested
/// a stub tokenizer in this process renders chat messages (texts are space-separated ids, each
/// image `boi` + tokens × image token + `eoi` per crop).
final class MultimodalServiceTests: XCTestCase {
    nonisolated(unsafe) static var shared: Shared?

    struct Shared {
        let manifest: MultimodalManifest
        let vision: ActivatedService
        let decoder: ActivatedService
        let tokenizer: InProcessServer
        let requests: ChatTemplateLog
    }

    override func setUpWithError() throws {
        if Self.shared == nil {
            let manifest = try MultimodalManifest.load()
            let log = ChatTemplateLog()
            let tokenizer = try InProcessServer(name: "tokenizer", service: fixtureTokenizerStub(manifest, log: log))
            let vision = try ActivatedService(binary: "gemma-vision", arguments: ["--model", multimodalFixtureRoot + "/mm64"], name: "vision")
            let decoder = try ActivatedService(binary: "gemma-decoder", arguments: [
                "--model", multimodalFixtureRoot + "/mm64", "--vision", vision.unixAddress, "--tokenizer", tokenizer.address,
            ], name: "decoder")
            Self.shared = Shared(manifest: manifest, vision: vision, decoder: decoder, tokenizer: tokenizer, requests: log)
        }
    }

    /// Stops the shared services (a static is never deinitialized at exit, so they would
    /// outlive the test process).
    override class func tearDown() {
        shared = nil
        super.tearDown()
    }

    private var manifest: MultimodalManifest { Self.shared!.manifest }
    private var decoder: RPCClient { try! RPCClient(Self.shared!.decoder.unixAddress) }

    // MARK: parity with transformers

    func testScoreWithImagesMatchesTransformersAndNotACausalMask() async throws {
        let info = try await decoder.unary("/gemma.v1.Decoder/Info", V1.InfoRequest(), as: V1.DecoderInfo.self)
        XCTAssertTrue(info.acceptsImages)
        for item in manifest.cases {
            let logits = try await score(decoder, ids: item.ids, images: try item.imageMessages())
            let expected = try readMultimodalFloats(item.logits)
            let causal = try readMultimodalFloats(item.causal)
            XCTAssertEqual(logits.count, item.positions * manifest.vocabulary, item.name)
            let error = maxRelativeDifference(logits, expected)
            let fromCausal = maxRelativeDifference(logits, causal)
            // Without a resize the pixels are PIL's exactly; a resize may differ by a level.
            let tolerance: Float = item.resize ? 1e-2 : 1e-4
            print("\(item.name): max |Δ| / max |logit| = \(error) vs transformers, \(fromCausal) vs causal-only")
            XCTAssertLessThan(error, tolerance, item.name)
            // A decoder without the image mask computes the causal-only logits: ours must be far
            // from them, much farther than from transformers'.
            XCTAssertGreaterThan(fromCausal, max(10 * tolerance, 1000 * error), "\(item.name): indistinguishable from a causal-only mask")
        }
    }

    func testScoreWithClientEmbeddingsIsExact() async throws {
        for item in manifest.cases {
            var request = V1.ScoreRequest()
            request.ids = item.ids
            request.imageEmbeddings = try item.softTokenMessages(manifest)
            let logits = try await score(decoder, request)
            let error = maxRelativeDifference(logits, try readMultimodalFloats(item.logits))
            XCTAssertLessThan(error, 1e-4, item.name)
            XCTAssertGreaterThan(maxRelativeDifference(logits, try readMultimodalFloats(item.causal)), 1e-2, item.name)
        }
    }

    func testGreedyGenerationWithImagesMatchesTransformers() async throws {
        let vision = try RPCClient(Self.shared!.vision.unixAddress)
        for item in manifest.cases {
            var encode = V1.EncodeImageRequest()
            encode.images = try item.imageMessages()
            let embeddings = try await vision.unary("/gemma.v1.VisionEncoder/EncodeImage", encode, as: V1.EncodeImageResponse.self)
            var request = V1.GenerateRequest()
            var input = V1.TokenInput()
            input.ids = item.ids
            request.input = .tokens(input)
            request.imageEmbeddings = embeddings.images
            request.maxTokens = UInt32(item.greedy.count)
            request.ignoreEos = true
            let (tokens, _) = try await generate(decoder, request)
            XCTAssertEqual(tokens, item.greedy, item.name)
        }
        // A session keeps the prompt, images included, for the next turn, which gives what a
        // fresh call gives.
        let item = manifest.cases[1]
        var request = V1.GenerateRequest()
        var input = V1.TokenInput()
        input.ids = item.ids
        request.input = .tokens(input)
        request.imageEmbeddings = try item.softTokenMessages(manifest)
        request.maxTokens = UInt32(item.greedy.count)
        request.ignoreEos = true
        request.sessionID = "mm-session"
        let first = try await generate(decoder, request)
        XCTAssertEqual(first.tokens, item.greedy)
        XCTAssertEqual(first.usage?.cachedPromptTokens, 0)
        input.ids = item.ids + first.tokens + [20, 21]
        request.input = .tokens(input)
        let second = try await generate(decoder, request)
        XCTAssertEqual(second.usage?.cachedPromptTokens, UInt32(item.ids.count + item.greedy.count - 1))
        request.sessionID = ""
        let fresh = try await generate(decoder, request)
        XCTAssertEqual(fresh.usage?.cachedPromptTokens, 0)
        XCTAssertEqual(second.tokens, fresh.tokens)
        // Other images in the same session are not mistaken for the cached ones.
        request.sessionID = "mm-session"
        request.imageEmbeddings = try manifest.cases[2].softTokenMessages(manifest)
        let third = try await generate(decoder, request)
        XCTAssertLessThanOrEqual(third.usage!.cachedPromptTokens, UInt32(item.ids.firstIndex(of: manifest.imageToken)!))
        request.sessionID = ""
        let freshThird = try await generate(decoder, request)
        XCTAssertEqual(third.tokens, freshThird.tokens)
    }

    /// A session stopped by a stop string long after this model's 6-position local rings have
    /// wrapped: the next turn (the tokens the client got, then new ones) reuses every position
    /// the session computed and continues exactly as a one-off call. (Whether the engine ran a
    /// pass past the stop token before the handler detached is a race this does not force.)
    func testStopStringLeavesTheSessionReusableAfterTheRingsWrap() async throws {
        let prompt: [Int32] = [2, 30, 31, 32]
        var request = V1.GenerateRequest()
        var input = V1.TokenInput()
        input.ids = prompt
        request.input = .tokens(input)
        request.maxTokens = 40
        request.ignoreEos = true
        // Seeded sampling: the tiny model's greedy continuation soon repeats one token.
        var sampling = V1.SamplingParams()
        (sampling.temperature, sampling.seed, sampling.hasSeed) = (1, 11, true)
        request.sampling = sampling
        let free = try await generate(decoder, request).tokens
        // Stop at the first token that is new after 12 tokens (twice the window of 6); the
        // stub detokenizer writes id n as "<n>".
        let stopAt = try XCTUnwrap((12..<free.count).first { !free[..<$0].contains(free[$0]) }, "\(free)")
        for round in 0..<5 {
            request.sessionID = "stop-ring-\(round)"
            request.stop = ["<\(free[stopAt])>"]
            input.ids = prompt
            request.input = .tokens(input)
            let first = try await generate(decoder, request)
            XCTAssertEqual(first.tokens, Array(free[...stopAt]))
            request.stop = []
            request.maxTokens = 4
            input.ids = prompt + first.tokens + [40, 41]
            request.input = .tokens(input)
            let second = try await generate(decoder, request)
            // Every position the session computed is a prefix of this prompt.
            XCTAssertGreaterThanOrEqual(second.usage?.cachedPromptTokens ?? 0, UInt32(prompt.count + stopAt), "round \(round)")
            request.sessionID = ""
            let fresh = try await generate(decoder, request)
            XCTAssertEqual(second.tokens, fresh.tokens)
            request.maxTokens = 40
        }
    }

    /// A tokenizer service whose detokenization table does not add up (lengths that overrun the
    /// page's bytes, or ids that skip ahead) fails the call with INTERNAL and says why; the
    /// decoder keeps serving.
    func testMalformedSurfacesTableIsRefused() async throws {
        var good = V1.SurfacesPage()
        (good.vocabularySize, good.firstID, good.lengths, good.bytes, good.skippable) = (2, 0, [1, 1], [65, 66], [0, 0])
        var overrun = good
        overrun.lengths = [1, 2]
        var skipped = good
        skipped.firstID = 1
        for (page, why) in [(overrun, "do not fit"), (skipped, "ids from 1, expected 0")] {
            var stub = RPCService(name: "gemma.v1.Tokenizer")
            stub.serverStreaming("Surfaces") { (_: V1.SurfacesRequest, _, stream: ResponseStream<V1.SurfacesPage>) in
                try await stream.send(page)
            }
            let tokenizer = try InProcessServer(name: "bad-surfaces", service: stub)
            let decoder = try ActivatedService(binary: "gemma-decoder", arguments: [
                "--model", multimodalFixtureRoot + "/mm64", "--tokenizer", tokenizer.address,
            ], name: "decoder-bad-surfaces")
            var request = V1.GenerateRequest()
            var input = V1.TokenInput()
            input.ids = [2, 30, 31]
            request.input = .tokens(input)
            request.maxTokens = 2
            let client = try RPCClient(decoder.unixAddress)
            do {
                _ = try await generate(client, request)
                XCTFail("a malformed table was accepted")
            } catch let error as RPCError {
                XCTAssertEqual(error.code, .internal, error.message)
                XCTAssertTrue(error.message.contains("tokenizer service: bad Surfaces page") && error.message.contains(why), error.message)
            }
            let health = try await client.unary("/gemma.v1.Decoder/Health", V1.HealthRequest(), as: V1.HealthResponse.self)
            XCTAssertEqual(health.status, .serving)
        }
    }

    func testChatWithImagesGoesThroughTemplateAndVision() async throws {
        let item = manifest.cases[0]  // [2, 10, 11] image [12, 13, 14, 15]
        XCTAssertEqual(item.name, "one_image")
        let request = chatRequest([.text("10 11"), .image(try item.imageMessages()[0]), .text("12 13 14 15")],
                                  maxTokens: item.greedy.count)
        let (tokens, usage) = try await generate(decoder, request)
        XCTAssertEqual(tokens, item.greedy)
        XCTAssertEqual(usage?.promptTokens, UInt32(item.ids.count))
        let rendered = Self.shared!.requests.last
        XCTAssertEqual(rendered?.tokensPerImage, UInt32(manifest.tokensPerImage))
        XCTAssertEqual(rendered?.cropsPerImage, [0])

        // Pan & Scan: the decoder counts the crops before rendering; the template gets them.
        let pas = manifest.cases.first { $0.panAndScan != nil }!
        let wide = chatRequest([.text("40"), .image(try pas.imageMessages()[0])], maxTokens: 2)
        let (wideTokens, wideUsage) = try await generate(decoder, wide)
        XCTAssertEqual(wideTokens.count, 2)
        XCTAssertEqual(Self.shared!.requests.last?.cropsPerImage, [UInt32(pas.crops[0])])
        XCTAssertEqual(wideUsage?.promptTokens, UInt32(2 + (1 + pas.crops[0]) * (manifest.tokensPerImage + 2)))
    }

    // MARK: cache and failures of the vision service

    func testSoftTokensAreCachedAndAVisionOutageIsUnavailable() async throws {
        let vision = try ActivatedService(binary: "gemma-vision", arguments: ["--model", multimodalFixtureRoot + "/mm64"], name: "vision2")
        let service = try ActivatedService(binary: "gemma-decoder", arguments: [
            "--model", multimodalFixtureRoot + "/mm64", "--vision", vision.unixAddress, "--tokenizer", "unix:/nonexistent/tokenizer.sock",
        ], name: "decoder2")
        let client = try RPCClient(service.unixAddress)
        let item = manifest.cases[0]
        let images = try item.imageMessages()
        let first = try await score(client, ids: item.ids, images: images)
        _ = vision.terminate()
        // The same pixels again: from the cache, no vision service needed.
        let again = try await score(client, ids: item.ids, images: images)
        XCTAssertEqual(first, again)
        // A new image needs the vision service, which is gone.
        let other = try manifest.cases[1].imageMessages()[1]
        let started = Date()
        await assertStatus(.unavailable) { _ = try await self.score(client, ids: item.ids, images: [other]) }
        XCTAssertLessThan(Date().timeIntervalSince(started), 15)
        // The decoder still serves.
        let text = try await score(client, ids: [2, 10, 11], images: [])
        XCTAssertEqual(text.count, 3 * manifest.vocabulary)
    }

    func testStalledVisionServiceIsDeadlineExceeded() async throws {
        var stall = RPCService(name: "gemma.v1.VisionEncoder")
        stall.unary("EncodeImage") { (_: V1.EncodeImageRequest, _) -> V1.EncodeImageResponse in
            try await Task.sleep(for: .seconds(60))
            return V1.EncodeImageResponse()
        }
        let stub = try InProcessServer(name: "stall", service: stall)
        let service = try ActivatedService(binary: "gemma-decoder", arguments: [
            "--model", multimodalFixtureRoot + "/mm64", "--vision", stub.address, "--vision-timeout", "1",
            "--tokenizer", "unix:/nonexistent/tokenizer.sock",
        ], name: "decoder3")
        let client = try RPCClient(service.unixAddress)
        let item = manifest.cases[0]
        let images = try item.imageMessages()
        let started = Date()
        var request = V1.ScoreRequest()
        request.ids = item.ids
        request.images = images
        let stalled = Task { [request] () -> RPCError? in
            do {
                _ = try await scoreLogits(client, request)
                return nil
            } catch let error as RPCError {
                return error
            } catch {
                return RPCError.internal("\(error)")
            }
        }
        // While one call waits for the vision service, others are served.
        try await Task.sleep(for: .milliseconds(300))
        let text = try await score(client, ids: [2, 10, 11], images: [])
        XCTAssertEqual(text.count, 3 * manifest.vocabulary)
        XCTAssertLessThan(Date().timeIntervalSince(started), 0.95, "a text call waited for the stalled image call")
        let error = await stalled.value
        XCTAssertEqual(error?.code, .deadlineExceeded, error?.message ?? "no error")
        XCTAssertTrue(error?.message.contains("vision service") ?? false, error?.message ?? "")
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
    }

    func testChatSessionDoesNotReencodeItsImages() async throws {
        let real = try RPCClient(Self.shared!.vision.unixAddress)
        let counts = CallCounter()
        var proxy = RPCService(name: "gemma.v1.VisionEncoder")
        proxy.unary("EncodeImage") { (request: V1.EncodeImageRequest, _) -> V1.EncodeImageResponse in
            counts.add(0, request.images.count)
            return try await real.unary("/gemma.v1.VisionEncoder/EncodeImage", request, as: V1.EncodeImageResponse.self)
        }
        let stub = try InProcessServer(name: "proxy-chat", service: proxy)
        let service = try ActivatedService(binary: "gemma-decoder", arguments: [
            "--model", multimodalFixtureRoot + "/mm64", "--vision", stub.address, "--tokenizer", Self.shared!.tokenizer.address,
        ], name: "decoder8")
        let client = try RPCClient(service.unixAddress)
        let item = manifest.cases[0]
        var turn = chatRequest([.text("10 11"), .image(try item.imageMessages()[0]), .text("12 13 14 15")],
                               maxTokens: item.greedy.count)
        turn.sessionID = "chat"
        let first = try await generate(client, turn)
        XCTAssertEqual(first.tokens, item.greedy)
        guard case .chat(var chat)? = turn.input else { return XCTFail("not a chat") }
        var reply = V1.ChatMessage()
        reply.role = "model"
        var replyText = V1.ContentPart()
        replyText.part = .text(first.tokens.map(String.init).joined(separator: " "))
        reply.parts = [replyText]
        var next = V1.ChatMessage()
        next.role = "user"
        var nextText = V1.ContentPart()
        nextText.part = .text("16 17")
        next.parts = [nextText]
        chat.messages += [reply, next]
        turn.input = .chat(chat)
        let second = try await generate(client, turn)
        XCTAssertEqual(counts.values[0], 1, "the image was encoded again")
        XCTAssertEqual(second.usage?.cachedPromptTokens, UInt32(item.ids.count + item.greedy.count - 1))
        turn.sessionID = ""
        let fresh = try await generate(client, turn)
        XCTAssertEqual(second.tokens, fresh.tokens)
    }

    func testBFloat16EmbeddingsAreReadExactly() async throws {
        // The fixture's soft tokens rounded to bf16, sent once as f32 and once as bf16 bytes:
        // the decoder must read both as the same numbers.
        let item = manifest.cases[1]
        var asF32 = try item.softTokenMessages(manifest)
        var asBF16 = asF32
        for i in asF32.indices {
            for c in asF32[i].crops.indices {
                let values = asF32[i].crops[c].data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
                var rounded: [Float] = []
                var half: [UInt8] = []
                for value in values {
                    let bits = value.bitPattern
                    let top = (bits &+ 0x7fff &+ ((bits >> 16) & 1)) >> 16
                    rounded.append(Float(bitPattern: top << 16))
                    half += [UInt8(top & 0xff), UInt8(top >> 8)]
                }
                asF32[i].crops[c].data = rounded.withUnsafeBytes { Array($0) }
                asBF16[i].crops[c].data = half
                asBF16[i].crops[c].type = .bf16
            }
        }
        var request = V1.ScoreRequest()
        request.ids = item.ids
        request.imageEmbeddings = asF32
        let fromF32 = try await score(decoder, request)
        request.imageEmbeddings = asBF16
        let fromBF16 = try await score(decoder, request)
        XCTAssertEqual(fromF32, fromBF16)
        XCTAssertGreaterThan(maxRelativeDifference(fromBF16, try readMultimodalFloats(item.logits)), 0)
    }

    func testImagesAreSpreadOverVisionServices() async throws {
        let real = try RPCClient(Self.shared!.vision.unixAddress)
        let counts = CallCounter()
        func proxy(_ index: Int) -> RPCService {
            var service = RPCService(name: "gemma.v1.VisionEncoder")
            service.unary("EncodeImage") { (request: V1.EncodeImageRequest, _) -> V1.EncodeImageResponse in
                counts.add(index, request.images.count)
                return try await real.unary("/gemma.v1.VisionEncoder/EncodeImage", request, as: V1.EncodeImageResponse.self)
            }
            return service
        }
        let first = try InProcessServer(name: "proxy0", service: proxy(0))
        let second = try InProcessServer(name: "proxy1", service: proxy(1))
        let service = try ActivatedService(binary: "gemma-decoder", arguments: [
            "--model", multimodalFixtureRoot + "/mm64", "--vision", first.address, "--vision", "unix:/nonexistent/vision.sock",
            "--vision", second.address, "--tokenizer", "unix:/nonexistent/tokenizer.sock",
        ], name: "decoder4")
        let client = try RPCClient(service.unixAddress)
        // Two images in one request: one call each, to the two live services.
        let pair = manifest.cases[2]
        let pairLogits = try await score(client, ids: pair.ids, images: try pair.imageMessages())
        XCTAssertLessThan(maxRelativeDifference(pairLogits, try readMultimodalFloats(pair.logits)), 1e-2)
        XCTAssertEqual(counts.values, [1, 1])
        let item = manifest.cases[0]
        let expected = try readMultimodalFloats(item.logits)
        for path in ["images/a_64.png", "images/b_64.png", "images/c_50x37.png", "images/wide_300x100.png"] {
            let image = try multimodalImage(path, panAndScan: nil)
            let logits = try await score(client, ids: item.ids, images: [image])
            if path == item.images[0] { XCTAssertLessThan(maxRelativeDifference(logits, expected), 1e-4) }
        }
        let calls = counts.values
        // b and c were cached by the first request.
        XCTAssertEqual(calls.reduce(0, +), 4, "\(calls)")
        XCTAssertGreaterThan(calls[0], 0, "\(calls)")
        XCTAssertGreaterThan(calls[1], 0, "\(calls)")
    }

    // MARK: bad requests

    func testMismatchesAndLimitsHaveClearStatuses() async throws {
        let one = manifest.cases[0], two = manifest.cases[1]
        let images = try two.imageMessages()
        // More images than runs, more runs than images.
        await assertStatus(.invalidArgument) { _ = try await self.score(self.decoder, ids: one.ids, images: images) }
        await assertStatus(.invalidArgument) { _ = try await self.score(self.decoder, ids: two.ids, images: [images[0]]) }
        var request = V1.ScoreRequest()
        request.ids = two.ids
        request.imageEmbeddings = Array(try two.softTokenMessages(manifest).prefix(1))
        await assertStatus(.invalidArgument) { _ = try await self.score(self.decoder, request) }
        // Embeddings of the wrong width.
        var narrow = try one.softTokenMessages(manifest)
        narrow[0].crops[0].hidden = UInt32(manifest.hidden / 2)
        narrow[0].crops[0].tokens = UInt32(manifest.tokensPerImage * 2)
        request.ids = one.ids
        request.imageEmbeddings = narrow
        await assertStatus(.invalidArgument) { _ = try await self.score(self.decoder, request) }
        // A corrupt PNG.
        var corrupt = V1.Image()
        corrupt.source = .png(Array("not a png at all".utf8))
        await assertStatus(.invalidArgument) { _ = try await self.score(self.decoder, ids: one.ids, images: [corrupt]) }
        // Image runs without images.
        await assertStatus(.invalidArgument) { _ = try await self.score(self.decoder, ids: one.ids, images: []) }

        // A small context, and a vision address nobody listens on: the context is checked
        // before any image is encoded.
        let small = try ActivatedService(binary: "gemma-decoder", arguments: [
            "--model", multimodalFixtureRoot + "/mm64", "--max-context", "30", "--vision", "unix:/nonexistent/vision.sock",
            "--tokenizer", Self.shared!.tokenizer.address,
        ], name: "decoder5")
        let smallClient = try RPCClient(small.unixAddress)
        await assertStatus(.outOfRange) { _ = try await self.score(smallClient, ids: two.ids, images: images) }
        let chat = chatRequest([.text("20"), .image(images[0]), .text("21 22"), .image(images[1]), .text("23")], maxTokens: 1)
        await assertStatus(.outOfRange) { _ = try await self.generate(smallClient, chat) }
        await assertStatus(.unavailable) { _ = try await self.score(smallClient, ids: one.ids, images: [images[0]]) }

        // No vision service: images are refused, embeddings still work.
        let textOnly = try ActivatedService(binary: "gemma-decoder", arguments: [
            "--model", multimodalFixtureRoot + "/mm64", "--tokenizer", Self.shared!.tokenizer.address,
        ], name: "decoder6")
        let textClient = try RPCClient(textOnly.unixAddress)
        let info = try await textClient.unary("/gemma.v1.Decoder/Info", V1.InfoRequest(), as: V1.DecoderInfo.self)
        XCTAssertFalse(info.acceptsImages)
        await assertStatus(.failedPrecondition) { _ = try await self.score(textClient, ids: one.ids, images: [images[0]]) }
        await assertStatus(.failedPrecondition) {
            _ = try await self.generate(textClient, self.chatRequest([.image(images[0]), .text("10")], maxTokens: 1))
        }
        request.ids = one.ids
        request.imageEmbeddings = try one.softTokenMessages(manifest)
        let fromEmbeddings = try await score(textClient, request)
        XCTAssertLessThan(maxRelativeDifference(fromEmbeddings, try readMultimodalFloats(one.logits)), 1e-4)

        // A vision model that does not belong to the text model (hidden 48, not 64).
        let otherVision = try ActivatedService(binary: "gemma-vision", arguments: [
            "--model", repositoryRoot + "/Tests/Fixtures/vision/tiny64",
        ], name: "vision7")
        let mismatched = try ActivatedService(binary: "gemma-decoder", arguments: [
            "--model", multimodalFixtureRoot + "/mm64", "--vision", otherVision.unixAddress, "--tokenizer", "unix:/nonexistent/t.sock",
        ], name: "decoder7")
        do {
            _ = try await score(try RPCClient(mismatched.unixAddress), ids: one.ids, images: [images[0]])
            XCTFail("a hidden-size mismatch was accepted")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .failedPrecondition, error.message)
            XCTAssertTrue(error.message.contains("hidden size 48"), error.message)
        }
    }

    // MARK: command line

    func testCommandLineScoreAndGenerateWithImages() throws {
        let item = manifest.cases[2]  // two images, one resized
        let output = NSTemporaryDirectory() + "mm-score-\(getpid()).f32"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let ids = item.ids.map(String.init).joined(separator: ",")
        let images = item.images.flatMap { ["--image", multimodalFixtureRoot + "/" + $0] }
        let decoder = Self.shared!.decoder.unixAddress
        let scored = try runProcess(binDirectory + "/gemma", ["score", "--decoder", decoder, "--tokens", ids, "--output", output] + images)
        XCTAssertEqual(scored.status, 0, scored.stderr)
        let data = try Data(contentsOf: URL(fileURLWithPath: output))
        let logits = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        XCTAssertLessThan(maxRelativeDifference(logits, try readMultimodalFloats(item.logits)), 1e-2)
        let generated = try runProcess(binDirectory + "/gemma", [
            "generate", "--decoder", decoder, "--vision", Self.shared!.vision.unixAddress, "--tokens", ids,
            "--max-tokens", String(item.greedy.count), "--ignore-eos", "--json",
        ] + images)
        XCTAssertEqual(generated.status, 0, generated.stderr)
        let tokens = generated.stdout.split(separator: "\n").flatMap { line -> [Int32] in
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return (object?["token_ids"] as? [Int])?.map(Int32.init) ?? []
        }
        XCTAssertEqual(tokens, item.greedy)
    }

    // MARK: helpers

    private enum Part {
        case text(String)
        case image(V1.Image)
    }

    private func chatRequest(_ parts: [Part], maxTokens: Int) -> V1.GenerateRequest {
        var message = V1.ChatMessage()
        message.role = "user"
        message.parts = parts.map { part in
            var content = V1.ContentPart()
            switch part {
            case .text(let text): content.part = .text(text)
            case .image(let image): content.part = .image(image)
            }
            return content
        }
        var chat = V1.ChatInput()
        chat.messages = [message]
        var request = V1.GenerateRequest()
        request.input = .chat(chat)
        request.maxTokens = UInt32(maxTokens)
        request.ignoreEos = true
        return request
    }

    private func score(_ client: RPCClient, ids: [Int32], images: [V1.Image]) async throws -> [Float] {
        var request = V1.ScoreRequest()
        request.ids = ids
        request.images = images
        return try await score(client, request)
    }

    private func score(_ client: RPCClient, _ request: V1.ScoreRequest) async throws -> [Float] {
        try await scoreLogits(client, request)
    }

    private func generate(_ client: RPCClient, _ request: V1.GenerateRequest) async throws -> (tokens: [Int32], usage: V1.Usage?) {
        var tokens: [Int32] = []
        var usage: V1.Usage?
        for try await chunk in client.serverStreaming("/gemma.v1.Decoder/Generate", request, as: V1.GenerateResponse.self,
                                                      timeout: .seconds(120)) {
            tokens += chunk.tokenIDs
            if chunk.usage != nil { usage = chunk.usage }
        }
        return (tokens, usage)
    }
}

/// Every position's logits from a Score call, in position order.
func scoreLogits(_ client: RPCClient, _ request: V1.ScoreRequest) async throws -> [Float] {
        var rows: [(Int, [UInt8])] = []
        for try await chunk in client.serverStreaming("/gemma.v1.Decoder/Score", request, as: V1.ScoreResponse.self,
                                                      timeout: .seconds(120)) {
            rows.append((Int(chunk.firstPosition), chunk.values))
        }
        let bytes = rows.sorted { $0.0 < $1.0 }.flatMap(\.1)
        return bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
}

// MARK: fixtures

let multimodalFixtureRoot = repositoryRoot + "/Tests/Fixtures/multimodal"

struct MultimodalManifest: Decodable {
    struct PanAndScan: Decodable {
        let minCropSize: Int
        let maxNumCrops: Int
        let minRatio: Float
    }

    struct Case: Decodable {
        let name: String
        let ids: [Int32]
        let images: [String]
        let resize: Bool
        let crops: [Int]
        let panAndScan: PanAndScan?
        let positions: Int
        let logits: String
        let causal: String
        let soft: String
        let greedy: [Int32]

        func imageMessages() throws -> [V1.Image] {
            try images.map { try multimodalImage($0, panAndScan: panAndScan) }
        }

        /// transformers' soft tokens, as client image_embeddings (f32), crops after their image.
        func softTokenMessages(_ manifest: MultimodalManifest) throws -> [V1.ImageEmbeddings] {
            let values = try readMultimodalFloats(soft)
            let crop = manifest.tokensPerImage * manifest.hidden
            var next = 0
            return crops.map { extra in
                var image = V1.ImageEmbeddings()
                image.crops = (0...extra).map { _ in
                    var message = V1.CropEmbeddings()
                    message.tokens = UInt32(manifest.tokensPerImage)
                    message.hidden = UInt32(manifest.hidden)
                    message.type = .f32
                    message.data = values[(next * crop)..<((next + 1) * crop)].withUnsafeBytes { Array($0) }
                    next += 1
                    return message
                }
                return image
            }
        }
    }

    let vocabulary: Int
    let hidden: Int
    let imageToken: Int32
    let boi: Int32
    let eoi: Int32
    let tokensPerImage: Int
    let cases: [Case]

    static func load() throws -> MultimodalManifest {
        let data = try Data(contentsOf: URL(fileURLWithPath: multimodalFixtureRoot + "/manifest.json"))
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(MultimodalManifest.self, from: data)
    }
}

func multimodalImage(_ relativePath: String, panAndScan: MultimodalManifest.PanAndScan?) throws -> V1.Image {
    var image = V1.Image()
    image.source = .png(Array(try Data(contentsOf: URL(fileURLWithPath: multimodalFixtureRoot + "/" + relativePath))))
    if let panAndScan {
        var options = V1.PanAndScan()
        options.enabled = true
        options.minCropSize = UInt32(panAndScan.minCropSize)
        options.maxCrops = UInt32(panAndScan.maxNumCrops)
        options.minRatio = panAndScan.minRatio
        image.panAndScan = options
    }
    return image
}

func readMultimodalFloats(_ relativePath: String) throws -> [Float] {
    let data = try Data(contentsOf: URL(fileURLWithPath: multimodalFixtureRoot + "/" + relativePath))
    return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
}

/// max |a − b| / max |b|; infinity when the sizes differ.
func maxRelativeDifference(_ a: [Float], _ b: [Float]) -> Float {
    guard a.count == b.count, !b.isEmpty else { return .infinity }
    let scale = b.map(abs).max()!
    return zip(a, b).map { abs($0 - $1) }.max()! / scale
}

// MARK: stub services in this process

/// An RPC server in the test process on a Unix socket.
final class InProcessServer: @unchecked Sendable {
    let server: RPCServer
    let path: String
    var address: String { "unix:" + path }

    init(name: String, service: RPCService) throws {
        path = NSTemporaryDirectory() + "gemma-stub-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        server = RPCServer(services: [service])
        let semaphore = DispatchSemaphore(value: 0)
        let failure = ChatTemplateLog()
        let server = self.server, path = self.path
        Task {
            do { try await server.listen(on: [.address(try RPCAddress(parsing: "unix:" + path))]) } catch { failure.fail("\(error)") }
            semaphore.signal()
        }
        semaphore.wait()
        if let error = failure.error { throw RPCError.internal("stub \(name): \(error)") }
    }

    deinit {
        let server = self.server
        Task { await server.drain() }
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// The ChatTemplateRequests the stub tokenizer received.
final class ChatTemplateLog: @unchecked Sendable {
    private let lock = NSLock()
    private var requests: [V1.ChatTemplateRequest] = []
    private(set) var error: String?

    func append(_ request: V1.ChatTemplateRequest) { lock.withLock { requests.append(request) } }
    var last: V1.ChatTemplateRequest? { lock.withLock { requests.last } }
    func fail(_ message: String) { lock.withLock { error = message } }
}

final class CallCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [Int: Int] = [:]
    func add(_ index: Int, _ images: Int) { lock.withLock { counts[index, default: 0] += images } }
    var values: [Int] { lock.withLock { [counts[0] ?? 0, counts[1] ?? 0] } }
}

/// A tokenizer for the fixture's tiny vocabulary: text parts are space-separated ids; each
/// image is `boi` + tokens_per_image × image token + `eoi`, once for the whole image and once
/// per Pan & Scan crop; `<bos>` first. Detokenization writes ids as `<id>`.
func fixtureTokenizerStub(_ manifest: MultimodalManifest, log: ChatTemplateLog) -> RPCService {
    let (boi, eoi, image) = (manifest.boi, manifest.eoi, manifest.imageToken)
    var service = RPCService(name: "gemma.v1.Tokenizer")
    service.unary("ApplyChatTemplate") { (request: V1.ChatTemplateRequest, _) -> V1.ChatTemplateResponse in
        log.append(request)
        var ids: [Int32] = [2]
        var imageIndex = 0
        for message in request.messages {
            for part in message.parts {
                switch part.part {
                case .text(let text)?:
                    ids += text.split(separator: " ").compactMap { Int32($0) }
                case .image?:
                    let crops = imageIndex < request.cropsPerImage.count ? Int(request.cropsPerImage[imageIndex]) : 0
                    imageIndex += 1
                    for _ in 0...crops {
                        ids += [boi] + Array(repeating: image, count: Int(request.tokensPerImage)) + [eoi]
                    }
                case nil:
                    break
                }
            }
        }
        var response = V1.ChatTemplateResponse()
        response.ids = ids
        return response
    }
    service.unary("DecodeIncremental") { (request: V1.DecodeIncrementalRequest, _) -> V1.DecodeIncrementalResponse in
        var response = V1.DecodeIncrementalResponse()
        response.text = request.ids.map { "<\($0)>" }.joined()
        return response
    }
    return service
}
