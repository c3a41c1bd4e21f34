import Foundation
import GemmaAPI
import GemmaRPC
import XCTest

/// A request given as raw bytes, for sending what a well-behaved client never would.
struct RawRequest: ProtoMessage {
    var bytes: [UInt8] = []
    init() {}
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self.bytes = Array(bytes) }
    func serializedBytes() -> [UInt8] { bytes }
}

func assertStatus(_ code: StatusCode, file: StaticString = #filePath, line: UInt = #line,
                  _ body: () async throws -> Void) async {
    do {
        try await body()
        XCTFail("expected \(code.name)", file: file, line: line)
    } catch let error as RPCError {
        XCTAssertEqual(error.code, code, error.message, file: file, line: line)
    } catch {
        XCTFail("unexpected \(error)", file: file, line: line)
    }
}

final class TokenizerServiceTests: XCTestCase {
    /// One socket-activated tokenizer for the whole class.
    nonisolated(unsafe) static var service: ActivatedService?

    /// Statics outlive the test process's last test: stop the services here, not at exit.
    override class func tearDown() {
        service = nil
        super.tearDown()
    }

    override func setUpWithError() throws {
        if Self.service == nil {
            Self.service = try ActivatedService(
                binary: "gemma-tokenizer", arguments: ["--model", realModelPath(), "--max-text-bytes", "100000"],
                name: "tokenizer")
        }
    }

    private var service: ActivatedService { Self.service! }

    private func gemma(_ arguments: [String]) throws -> ProcessOutput {
        try runProcess(binDirectory + "/gemma", arguments)
    }

    func testActivationReadyHealthOnUnixAndTCP() throws {
        // The first connection starts the service (systemd-socket-activate waits for it).
        let unix = try gemma(["health", "--tokenizer", service.unixAddress])
        XCTAssertEqual(unix.status, 0, unix.stdout + unix.stderr)
        XCTAssertTrue(unix.stdout.contains("SERVING"), unix.stdout)
        let notes = service.notifications(waitingFor: "READY=1")
        XCTAssertTrue(notes.contains { $0.contains("READY=1") }, "\(notes)")
        XCTAssertTrue(notes.contains { $0.contains("STATUS=") && $0.contains("262144 tokens") }, "\(notes)")
        let tcp = try gemma(["health", "--tokenizer", service.tcpAddress])
        XCTAssertEqual(tcp.status, 0, tcp.stdout + tcp.stderr)
    }

    func testEncodeDecodeChatTemplateThroughTheService() async throws {
        let client = try RPCClient(service.unixAddress)
        var encode = V1.EncodeRequest()
        encode.texts = ["The capital of France is", "<start_of_turn>user\nhi", ""]
        encode.addBos = true
        encode.parseSpecial = true
        encode.withOffsets = true
        let encoded = try await client.unary("/gemma.v1.Tokenizer/Encode", encode, as: V1.EncodeResponse.self)
        XCTAssertEqual(encoded.encodings.count, 3)
        XCTAssertEqual(encoded.encodings[1].ids.prefix(2), [2, 105])
        XCTAssertEqual(encoded.encodings[2].ids, [2])
        XCTAssertEqual(encoded.encodings[0].ids.count, encoded.encodings[0].offsetsEnd.count)

        var decode = V1.DecodeRequest()
        decode.ids = Array(encoded.encodings[0].ids.dropFirst())
        let decoded = try await client.unary("/gemma.v1.Tokenizer/Decode", decode, as: V1.DecodeResponse.self)
        XCTAssertEqual(decoded.text, "The capital of France is")

        // A text holding U+0000 is neither cut short nor garbled on the way.
        var withNUL = V1.EncodeRequest()
        withNUL.texts = ["before\u{0}after"]
        let nulIDs = try await client.unary("/gemma.v1.Tokenizer/Encode", withNUL, as: V1.EncodeResponse.self).encodings[0].ids
        decode.ids = nulIDs
        let nulText = try await client.unary("/gemma.v1.Tokenizer/Decode", decode, as: V1.DecodeResponse.self).text
        XCTAssertEqual(nulText, "before\u{0}after")

        // Streaming detokenization of an emoji split into byte tokens holds bytes back.
        encode.texts = ["héllo 👩‍💻 世界"]
        encode.addBos = false
        encode.withOffsets = false
        let ids = try await client.unary("/gemma.v1.Tokenizer/Encode", encode, as: V1.EncodeResponse.self).encodings[0].ids
        var pending: [UInt8] = []
        var text = ""
        for id in ids {
            var request = V1.DecodeIncrementalRequest()
            request.pending = pending
            request.ids = [id]
            let response = try await client.unary("/gemma.v1.Tokenizer/DecodeIncremental", request,
                                                  as: V1.DecodeIncrementalResponse.self)
            pending = response.pending
            text += response.text
        }
        XCTAssertEqual(text, "héllo 👩‍💻 世界")
        XCTAssertTrue(pending.isEmpty)

        var chat = V1.ChatTemplateRequest()
        var user = V1.ChatMessage()
        user.role = "user"
        var part = V1.ContentPart()
        part.part = .text("Hi")
        user.parts = [part]
        chat.messages = [user]
        chat.addGenerationPrompt = true
        let rendered = try await client.unary("/gemma.v1.Tokenizer/ApplyChatTemplate", chat, as: V1.ChatTemplateResponse.self)
        XCTAssertEqual(rendered.text, "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n")
        XCTAssertEqual(rendered.ids.first, 2)
        XCTAssertEqual(rendered.ids.filter { $0 == 105 }.count, 2)
    }

    /// `Surfaces` hands out the whole detokenization table in consecutive pages; text built
    /// from it is the service's Decode, with and without skip_special (control tokens, byte
    /// pieces of an emoji, the added `<image_soft_token>` after the vocabulary).
    func testSurfacesReproduceDecode() async throws {
        let client = try RPCClient(service.unixAddress)
        let info = try await client.unary("/gemma.v1.Tokenizer/Info", V1.InfoRequest(), as: V1.TokenizerInfo.self)
        var surfaces: [[UInt8]] = [], skippable: [Bool] = [], added: [Int32: String] = [:]
        var pages = 0
        for try await page in client.serverStreaming("/gemma.v1.Tokenizer/Surfaces", V1.SurfacesRequest(), as: V1.SurfacesPage.self) {
            XCTAssertEqual(Int(page.firstID), surfaces.count)
            XCTAssertEqual(page.lengths.count, page.skippable.count)
            var offset = 0
            for length in page.lengths {
                surfaces.append(Array(page.bytes[offset..<(offset + Int(length))]))
                offset += Int(length)
            }
            XCTAssertEqual(offset, page.bytes.count)
            skippable += page.skippable.map { $0 != 0 }
            for token in page.added { added[token.id] = token.text }
            pages += 1
            XCTAssertEqual(page.vocabularySize, info.vocabularySize)
        }
        XCTAssertEqual(surfaces.count, Int(info.vocabularySize))
        XCTAssertGreaterThan(pages, 1)
        XCTAssertEqual(added, [info.imageTokenID: "<image_soft_token>"])

        var encode = V1.EncodeRequest()
        encode.texts = ["<start_of_turn>user\nhéllo 👩‍💻 世界\t  spaces<end_of_turn>"]
        encode.addBos = true
        encode.parseSpecial = true
        let ids = try await client.unary("/gemma.v1.Tokenizer/Encode", encode, as: V1.EncodeResponse.self).encodings[0].ids
            + [info.imageTokenID, 0, 3, Int32(info.vocabularySize) - 1]
        for skipSpecial in [false, true] {
            var bytes: [UInt8] = []
            for id in ids {
                if let text = added[id] {
                    if !skipSpecial { bytes += text.utf8 }
                } else if !(skipSpecial && skippable[Int(id)]) {
                    bytes += surfaces[Int(id)]
                }
            }
            var decode = V1.DecodeRequest()
            decode.ids = ids
            decode.skipSpecial = skipSpecial
            let text = try await client.unary("/gemma.v1.Tokenizer/Decode", decode, as: V1.DecodeResponse.self).text
            XCTAssertEqual(String(decoding: bytes, as: UTF8.self), text, "skip_special \(skipSpecial)")
        }
    }

    func testBadInputGetsAStatusAndTheServiceKeepsServing() async throws {
        let client = try RPCClient(service.unixAddress)
        var decode = V1.DecodeRequest()
        decode.ids = [5, 300_000]
        await assertStatus(.invalidArgument) {
            _ = try await client.unary("/gemma.v1.Tokenizer/Decode", decode, as: V1.DecodeResponse.self)
        }
        decode.ids = [-1]
        await assertStatus(.invalidArgument) {
            _ = try await client.unary("/gemma.v1.Tokenizer/Decode", decode, as: V1.DecodeResponse.self)
        }
        var encode = V1.EncodeRequest()
        encode.texts = [String(repeating: "a", count: 100_001)]
        await assertStatus(.resourceExhausted) {
            _ = try await client.unary("/gemma.v1.Tokenizer/Encode", encode, as: V1.EncodeResponse.self)
        }
        // A long text (21 KB) encodes in a task, under the size limit.
        encode.texts = [String(repeating: "ab ", count: 7_000)]
        let long = try await client.unary("/gemma.v1.Tokenizer/Encode", encode, as: V1.EncodeResponse.self)
        XCTAssertGreaterThan(long.encodings.first?.ids.count ?? 0, 7_000)
        // Decoding them is a request over 16 KiB: a quick method's task path, same answer.
        var decodeLong = V1.DecodeRequest()
        let ids = long.encodings.first?.ids ?? []
        decodeLong.ids = ids + ids + ids
        decodeLong.skipSpecial = true
        XCTAssertGreaterThan(decodeLong.serializedBytes().count, RPCServer.quickRequestBytes)
        let text = try await client.unary("/gemma.v1.Tokenizer/Decode", decodeLong, as: V1.DecodeResponse.self).text
        XCTAssertEqual(text, String(repeating: encode.texts.first ?? "", count: 3))
        encode.texts = []
        await assertStatus(.invalidArgument) {
            _ = try await client.unary("/gemma.v1.Tokenizer/Encode", encode, as: V1.EncodeResponse.self)
        }
        // EncodeRequest.texts = [bytes that are not UTF-8].
        await assertStatus(.invalidArgument) {
            _ = try await client.unary("/gemma.v1.Tokenizer/Encode", RawRequest([0x0a, 0x02, 0xff, 0xfe]),
                                       as: V1.EncodeResponse.self)
        }
        var chat = V1.ChatTemplateRequest()
        var message = V1.ChatMessage()
        message.role = "wizard"
        chat.messages = [message]
        await assertStatus(.invalidArgument) {
            _ = try await client.unary("/gemma.v1.Tokenizer/ApplyChatTemplate", chat, as: V1.ChatTemplateResponse.self)
        }
        let health = try await client.unary("/gemma.v1.Tokenizer/Health", V1.HealthRequest(), as: V1.HealthResponse.self)
        XCTAssertEqual(health.status, .serving)
    }

    /// A client in another language, written from docs/protocol.md: Python's protobuf with
    /// code protoc generates from Protos/.
    func testPythonClientFromTheProtocolDocument() async throws {
        let python = pythonWithProtobuf()
        let script = repositoryRoot + "/clients/python/gemma_client.py"
        let health = try runProcess(python, [script, service.unixAddress, "health", "tokenizer"])
        XCTAssertEqual(health.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "SERVING", health.stderr)
        let tokens = try runProcess(python, [script, service.tcpAddress, "tokenize", "The capital of France is"])
        XCTAssertEqual(tokens.status, 0, tokens.stderr)
        var encode = V1.EncodeRequest()
        encode.texts = ["The capital of France is"]
        encode.addBos = true
        let expected = try await RPCClient(service.unixAddress)
            .unary("/gemma.v1.Tokenizer/Encode", encode, as: V1.EncodeResponse.self).encodings[0].ids
        XCTAssertEqual(tokens.stdout.trimmingCharacters(in: .whitespacesAndNewlines),
                       expected.map(String.init).joined(separator: " "))
        let unknown = try runProcess(python, [script, service.unixAddress, "raw-method", "/gemma.v1.Tokenizer/Nope"])
        XCTAssertEqual(unknown.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "UNIMPLEMENTED", unknown.stderr)
    }

    /// Runs last (alphabetically): SIGTERM drains and exits 0 with STOPPING=1.
    func testZZCleanStopOnSIGTERM() throws {
        _ = try gemma(["health", "--tokenizer", service.unixAddress])
        _ = service.notifications(waitingFor: "READY=1")
        let (status, stderr) = service.terminate()
        XCTAssertEqual(status, 0, stderr)
        let notes = service.notifications(waitingFor: "STOPPING=1", timeout: 10)
        XCTAssertTrue(notes.contains { $0.contains("STOPPING=1") }, "\(notes)")
        Self.service = nil
    }
}

final class StartupFailureTests: XCTestCase {
    /// A missing or corrupt model stops the start with a message naming the file, and no READY.
    func testMissingAndCorruptModelsFailBeforeReady() throws {
        let corrupt = NSTemporaryDirectory() + "corrupt-\(getpid()).gguf"
        try Data("GGUF\u{3}\0\0\0garbage".utf8).write(to: URL(fileURLWithPath: corrupt))
        defer { try? FileManager.default.removeItem(atPath: corrupt) }
        for binary in ["gemma-tokenizer", "gemma-decoder"] {
            for model in ["/nonexistent/model.gguf", corrupt] {
                let notify = try NotifySocket(path: NSTemporaryDirectory() + "notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
                let out = try runProcess(binDirectory + "/" + binary, ["--model", model, "--listen", "127.0.0.1:0"],
                                         environment: ["NOTIFY_SOCKET": notify.path])
                XCTAssertEqual(out.status, 78, "\(binary) \(model): EX_CONFIG, which the units do not restart")
                XCTAssertTrue(out.stderr.contains(model), "\(binary): \(out.stderr)")
                let notes = notify.receive(until: { _ in false }, timeout: 0.3)
                XCTAssertFalse(notes.contains { $0.contains("READY=1") }, "\(notes)")
            }
        }
    }
}

final class IdleExitTests: XCTestCase {
    /// `--exit-idle-after`: with no connection for that long the service drains and exits 0
    /// (socket activation starts it again on the next connection).
    func testServiceLeavesWhenIdle() throws {
        let socket = NSTemporaryDirectory() + "idle-\(getpid()).sock"
        let out = try runProcess(binDirectory + "/gemma-tokenizer",
                                 ["--model", realModelPath(), "--listen", "unix:\(socket)", "--exit-idle-after", "0.5"])
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertTrue(out.stderr.contains("idle for 0.5 s; stopped"), out.stderr)
    }
}

/// The venv's python has protobuf (scripts/setup.sh); fall back to python3.
func pythonWithProtobuf() -> String {
    let venv = ProcessInfo.processInfo.environment["GEMMA_VENV"] ?? (NSHomeDirectory() + "/.cache/gemma-serve/venv")
    let python = venv + "/bin/python"
    return FileManager.default.isExecutableFile(atPath: python) ? python : "/usr/bin/python3"
}
