import Foundation
import GemmaAPI
@testable import GemmaRPC
import NIOCore
import NIOPosix
import XCTest

/// A service whose methods exercise the runtime: echo, a counted stream, one that waits for
/// cancellation, one that fails, one that streams 64 KiB messages as fast as it may.
private func testService(cancelled: CancelFlag, flooded: Counter = Counter()) -> RPCService {
    var service = RPCService(name: "gemma.v1.Test")
    service.serverStreaming("Flood") { (_: V1.TokenInput, _, stream: ResponseStream<V1.DecodeResponse>) in
        var message = V1.DecodeResponse()
        message.text = String(repeating: "x", count: 64 << 10)
        for _ in 0..<10_000 {
            try await stream.send(message)
            flooded.increment()
        }
    }
    service.unary("Echo") { (request: V1.DecodeResponse, _) -> V1.DecodeResponse in request }
    service.serverStreaming("Count") { (request: V1.TokenInput, _, stream: ResponseStream<V1.TokenInput>) in
        for i in 0..<(request.ids.first ?? 0) {
            var message = V1.TokenInput()
            message.ids = [i]
            try await stream.send(message)
        }
    }
    service.serverStreaming("Forever") { (_: V1.TokenInput, _, stream: ResponseStream<V1.TokenInput>) in
        do {
            while true {
                try await stream.send(V1.TokenInput())
                try await Task.sleep(for: .milliseconds(5))
            }
        } catch {
            cancelled.set()
            throw error
        }
    }
    service.unary("Fail") { (_: V1.HealthRequest, _) -> V1.HealthResponse in
        throw RPCError.invalidArgument("no good")
    }
    return service
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}

private final class CancelFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

final class RPCTests: XCTestCase {
    private var server: RPCServer!
    private var socketPath: String!
    private let cancelled = CancelFlag()
    private let flooded = Counter()

    override func setUp() async throws {
        socketPath = NSTemporaryDirectory() + "rpc-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        var limits = RPCServerLimits()
        limits.maxFrameBytes = 4096
        limits.maxCallsPerConnection = 4
        limits.drainTimeout = .milliseconds(300)
        server = RPCServer(services: [testService(cancelled: cancelled, flooded: flooded)], limits: limits)
        try await server.listen(on: [.address(.unix(path: socketPath)), .address(.tcp(host: "127.0.0.1", port: 0))])
    }

    override func tearDown() async throws {
        await server.drain()
        try? FileManager.default.removeItem(atPath: socketPath)
    }

    private func client() throws -> RPCClient { try RPCClient("unix:\(socketPath!)") }

    func testUnaryOverUnixAndTCP() async throws {
        var request = V1.DecodeResponse()
        request.text = "héllo\u{0} ✓"  // U+0000 must survive protobuf-c
        let tcp = try RPCClient("127.0.0.1:\(server.boundTCPPort!)")
        for client in [try client(), tcp] {
            let response = try await client.unary("/gemma.v1.Test/Echo", request, as: V1.DecodeResponse.self)
            XCTAssertEqual(response, request)
        }
    }

    func testServerStreamingAndConnectionReuse() async throws {
        let client = try client()
        for n: Int32 in [0, 3, 50] {
            var request = V1.TokenInput()
            request.ids = [n]
            var received: [Int32] = []
            for try await message in client.serverStreaming("/gemma.v1.Test/Count", request, as: V1.TokenInput.self) {
                received += message.ids
            }
            XCTAssertEqual(received, Array(0..<n))
        }
    }

    func testConcurrentCallsAreMultiplexed() async throws {
        let client = try client()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<4 {
                group.addTask {
                    var request = V1.DecodeResponse()
                    request.text = "call \(i)"
                    let response = try await client.unary("/gemma.v1.Test/Echo", request, as: V1.DecodeResponse.self)
                    XCTAssertEqual(response.text, "call \(i)")
                }
            }
            try await group.waitForAll()
        }
    }

    func testStatusCodes() async throws {
        let client = try client()
        await assertStatus(.unimplemented) {
            _ = try await client.unary("/gemma.v1.Test/Nope", V1.HealthRequest(), as: V1.HealthResponse.self)
        }
        await assertStatus(.invalidArgument) {
            _ = try await client.unary("/gemma.v1.Test/Fail", V1.HealthRequest(), as: V1.HealthResponse.self)
        }
        // A request that does not parse as the method's message (a truncated field).
        let raw = try RawConnection(path: socketPath)
        raw.send(start(id: 1, method: "/gemma.v1.Test/Count", request: [0x0a, 0x05, 0x01]))
        let frame = try raw.readFrame()
        guard case .status(let status)? = frame.kind else { return XCTFail("expected a status") }
        XCTAssertEqual(status.code, .invalidArgument)
        XCTAssertTrue(status.message.contains("malformed gemma.v1.TokenInput"), status.message)
    }

    func testDeadlineCancelsTheHandler() async throws {
        let client = try client()
        await assertStatus(.deadlineExceeded) {
            for try await _ in client.serverStreaming("/gemma.v1.Test/Forever", V1.TokenInput(), as: V1.TokenInput.self,
                                                      timeout: .milliseconds(100)) {}
        }
        try await waitUntil { self.cancelled.isSet }
        XCTAssertEqual(server.activeCalls, 0)
    }

    /// A client that does not read holds a streaming handler back: its sends wait once a
    /// bounded amount is unwritten, instead of queueing every message in memory.
    func testSlowReaderHoldsTheStreamBack() async throws {
        let raw = try RawConnection(path: socketPath)
        raw.send(start(id: 1, method: "/gemma.v1.Test/Flood", request: []))
        try await Task.sleep(for: .milliseconds(500))
        let sent = flooded.value
        XCTAssertGreaterThan(sent, 0)
        // 64 × 64 KiB = 4 MiB; the socket buffers and 256 KiB of queued writes hold far less.
        XCTAssertLessThan(sent, 64)
        // Reading lets the stream go on.
        for _ in 0..<(sent + 16) { _ = try raw.readFrame() }
        try await waitUntil { self.flooded.value > sent + 16 }
    }

    func testClientCancellationStopsTheHandler() async throws {
        let client = try client()
        var count = 0
        for try await _ in client.serverStreaming("/gemma.v1.Test/Forever", V1.TokenInput(), as: V1.TokenInput.self) {
            count += 1
            if count == 3 { break }
        }
        try await waitUntil { self.cancelled.isSet }
        try await waitUntil { self.server.activeCalls == 0 }
    }

    func testVanishedClientStopsTheHandler() async throws {
        let client = try client()
        let stream = client.serverStreaming("/gemma.v1.Test/Forever", V1.TokenInput(), as: V1.TokenInput.self)
        var iterator = stream.makeAsyncIterator()
        _ = try await iterator.next()
        await client.close()
        try await waitUntil { self.cancelled.isSet }
        try await waitUntil { self.server.activeCalls == 0 }
    }

    func testOversizedFrameGetsAStatusAndTheConnectionKeepsServing() async throws {
        let raw = try RawConnection(path: socketPath)
        var big = V1.DecodeResponse()
        big.text = String(repeating: "y", count: 10_000)
        raw.send(start(id: 7, method: "/gemma.v1.Test/Echo", request: big.serializedBytes()))
        let status = try raw.readFrame()
        XCTAssertEqual(status.callID, 7)
        guard case .status(let s)? = status.kind else { return XCTFail("expected a status") }
        XCTAssertEqual(s.code, .resourceExhausted)
        // Same connection, next call works.
        var small = V1.DecodeResponse()
        small.text = "ok"
        raw.send(start(id: 8, method: "/gemma.v1.Test/Echo", request: small.serializedBytes()))
        let reply = try raw.readFrame()
        guard case .message(let bytes)? = reply.kind else { return XCTFail("expected a message") }
        XCTAssertEqual(try V1.DecodeResponse(serializedBytes: bytes).text, "ok")
    }

    func testMalformedFrameAndGarbage() async throws {
        let raw = try RawConnection(path: socketPath)
        raw.send([0, 0, 0, 0, 3, 0xff, 0xff, 0xff])  // framed, but not a protobuf Frame
        let status = try raw.readFrame()
        guard case .status(let s)? = status.kind else { return XCTFail("expected a status") }
        XCTAssertEqual(s.code, .invalidArgument)
        // Unframeable bytes: the server closes this connection…
        raw.send(Array("GET / HTTP/1.1\r\n\r\n".utf8))
        XCTAssertThrowsError(try raw.readFrame())
        // …and keeps serving everyone else.
        var request = V1.DecodeResponse()
        request.text = "still here"
        let response = try await client().unary("/gemma.v1.Test/Echo", request, as: V1.DecodeResponse.self)
        XCTAssertEqual(response.text, "still here")
    }

    func testTooManyCallsOnOneConnection() async throws {
        let raw = try RawConnection(path: socketPath)
        for id in 1...5 { raw.send(start(id: UInt64(id), method: "/gemma.v1.Test/Forever", request: [])) }
        var refused: UInt64?
        while refused == nil {
            let frame = try raw.readFrame()
            if case .status(let s)? = frame.kind {
                XCTAssertEqual(s.code, .resourceExhausted)
                refused = frame.callID
            }
        }
        XCTAssertEqual(refused, 5)
    }

    func testDrainEndsStreamsWithAStatus() async throws {
        let client = try client()
        let stream = client.serverStreaming("/gemma.v1.Test/Forever", V1.TokenInput(), as: V1.TokenInput.self)
        var iterator = stream.makeAsyncIterator()
        _ = try await iterator.next()
        await server.drain()
        do {
            while try await iterator.next() != nil {}
            XCTFail("stream should end with a status")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .unavailable)
            XCTAssertTrue(error.message.contains("shutting down"), error.message)
        }
    }

    /// A client whose connection the server closed reconnects on its next call (a service
    /// restarted by systemd behind the same socket).
    func testClientReconnectsAfterTheServerRestarts() async throws {
        let client = try client()
        var request = V1.DecodeResponse()
        request.text = "first"
        _ = try await client.unary("/gemma.v1.Test/Echo", request, as: V1.DecodeResponse.self)
        await server.drain()
        var limits = RPCServerLimits()
        limits.drainTimeout = .milliseconds(300)
        server = RPCServer(services: [testService(cancelled: cancelled)], limits: limits)
        try await server.listen(on: [.address(.unix(path: socketPath))])
        request.text = "second"
        let response = try await client.unary("/gemma.v1.Test/Echo", request, as: V1.DecodeResponse.self)
        XCTAssertEqual(response.text, "second")
    }

    func testUnreachableServiceIsUnavailable() async throws {
        let client = try RPCClient("unix:/nonexistent/gemma.sock")
        await assertStatus(.unavailable) {
            _ = try await client.unary("/gemma.v1.Test/Echo", V1.DecodeResponse(), as: V1.DecodeResponse.self)
        }
    }

    /// A server that accepts the connection and never answers: the client's own timer ends
    /// the call (deadline plus a second's grace).
    func testSilentServerHitsTheClientDeadline() async throws {
        let path = NSTemporaryDirectory() + "silent-\(UInt32.random(in: 0...UInt32.max)).sock"
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener); unlink(path) }
        XCTAssertEqual(withUnixAddress(path) { bind(listener, $0, $1) }, 0)
        XCTAssertEqual(listen(listener, 4), 0)
        let client = try RPCClient("unix:" + path)
        let start = ContinuousClock.now
        await assertStatus(.deadlineExceeded) {
            _ = try await client.unary("/gemma.v1.Test/Echo", V1.DecodeResponse(), as: V1.DecodeResponse.self,
                                       timeout: .milliseconds(100))
        }
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(1100))
    }

    func testAddressParsing() throws {
        XCTAssertEqual(try RPCAddress(parsing: "unix:/run/gemma/a.sock"), .unix(path: "/run/gemma/a.sock"))
        XCTAssertEqual(try RPCAddress(parsing: "127.0.0.1:7000"), .tcp(host: "127.0.0.1", port: 7000))
        XCTAssertEqual(try RPCAddress(parsing: "[::1]:7000"), .tcp(host: "::1", port: 7000))
        for bad in ["", "unix:", "host", "host:0", "host:99999", ":80"] {
            XCTAssertThrowsError(try RPCAddress(parsing: bad), bad)
        }
    }

    // MARK: helpers

    private func start(id: UInt64, method: String, request: [UInt8]) -> [UInt8] {
        var start = V1.CallStart()
        start.method = method
        start.request = request
        var frame = V1.Frame()
        frame.callID = id
        frame.kind = .start(start)
        let body = frame.serializedBytes()
        let n = UInt32(body.count)
        return [0, UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + body
    }

    private func assertStatus(_ code: StatusCode, file: StaticString = #filePath, line: UInt = #line,
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

    private func waitUntil(_ condition: @escaping () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while !condition() {
            guard ContinuousClock.now < deadline else { return XCTFail("condition not met in 5 s") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// Calls `body` (bind, connect) with the socket address of `path`.
private func withUnixAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
    }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

/// A blocking Unix-socket connection that speaks raw bytes, for feeding the server what a
/// well-behaved client never would.
private final class RawConnection {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let fd = fd
        guard withUnixAddress(path, { connect(fd, $0, $1) }) == 0 else { throw RPCError.unavailable("connect failed") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    private func read(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            guard n > 0 else { throw RPCError.unavailable("connection closed") }
            got += n
        }
        return out
    }

    func readFrame() throws -> V1.Frame {
        let prefix = try read(5)
        let length = Int(prefix[1]) << 24 | Int(prefix[2]) << 16 | Int(prefix[3]) << 8 | Int(prefix[4])
        return try V1.Frame(serializedBytes: try read(length))
    }
}
