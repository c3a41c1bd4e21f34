import GemmaAPI
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Calls a service at one address over one reused connection, multiplexing concurrent calls
/// by call id. Reconnects on the next call after the connection drops. Thread-safe.
public final class RPCClient: Sendable {
    public let address: RPCAddress
    private let group: any EventLoopGroup
    private let maxFrameBytes: Int
    private let connectTimeout: TimeAmount
    private let state = NIOLockedValueBox(State())

    private struct State {
        var channel: EventLoopFuture<any Channel>?
        var nextCallID: UInt64 = 1
    }

    public init(address: RPCAddress, maxFrameBytes: Int = 256 << 20, connectTimeout: Duration = .seconds(10),
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.address = address
        self.group = group
        self.maxFrameBytes = maxFrameBytes
        self.connectTimeout = .milliseconds(Int64(connectTimeout.components.seconds * 1000))
    }

    public convenience init(_ address: String) throws {
        self.init(address: try RPCAddress(parsing: address))
    }

    /// One request, one response.
    public func unary<Request: ProtoMessage, Response: ProtoMessage>(
        _ method: String, _ request: Request, as: Response.Type = Response.self,
        timeout: Duration? = nil, metadata: [String: String] = [:]
    ) async throws -> Response {
        var response: Response?
        for try await message in serverStreaming(method, request, as: Response.self, timeout: timeout, metadata: metadata) {
            guard response == nil else { throw RPCError(.internal, "\(method) answered with more than one message") }
            response = message
        }
        guard let response else { throw RPCError(.internal, "\(method) ended without a response") }
        return response
    }

    /// One request, a stream of responses. The stream ends when the call ends with OK and
    /// throws `RPCError` with the call's status otherwise. Dropping or cancelling the
    /// iteration cancels the call on the server.
    public func serverStreaming<Request: ProtoMessage, Response: ProtoMessage>(
        _ method: String, _ request: Request, as: Response.Type = Response.self,
        timeout: Duration? = nil, metadata: [String: String] = [:]
    ) -> AsyncThrowingStream<Response, any Error> {
        let (stream, continuation) = AsyncThrowingStream<Response, any Error>.makeStream()
        let callID = state.withLockedValue { state in
            defer { state.nextCallID += 1 }
            return state.nextCallID
        }
        var start = V1.CallStart()
        start.method = method
        start.request = request.serializedBytes()
        start.metadata = metadata.sorted { $0.key < $1.key }.map { key, value in
            var entry = V1.MetadataEntry()
            entry.key = key
            entry.value = value
            return entry
        }
        // The server enforces the deadline; the client's own timer (a second later, counted from
        // this call, connecting included) covers a server that never answers.
        if let timeout {
            start.timeoutMs = UInt64(max(1, timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000))
        }
        let patience = timeout.map { _ in NIODeadline.now() + .milliseconds(Int64(start.timeoutMs) + 1000) }
        var frame = V1.Frame()
        frame.callID = callID
        frame.kind = .start(start)
        let address = address
        let startFrame = frame
        let receiver: @Sendable (ClientEvent) -> Void = { event in
            switch event {
            case .message(let bytes):
                do {
                    continuation.yield(try Response(serializedBytes: bytes))
                } catch {
                    continuation.finish(throwing: RPCError(.internal, "\(method): undecodable response: \(error)"))
                }
            case .status(let code, let message):
                if code == .ok { continuation.finish() } else { continuation.finish(throwing: RPCError(code, message)) }
            case .connectionLost(let why):
                continuation.finish(throwing: RPCError(.unavailable, "\(address): \(why)"))
            case .noAnswer:
                continuation.finish(throwing: RPCError(.deadlineExceeded, "\(method): no answer within \(timeout ?? .zero)"))
            }
        }
        let connecting = connection()
        connecting.whenFailure { error in
            continuation.finish(throwing: RPCError(.unavailable, "cannot connect to \(address): \(error)"))
        }
        connecting.whenSuccess { channel in
            continuation.onTermination = { termination in
                guard case .cancelled = termination else { return }
                channel.eventLoop.execute {
                    (try? channel.pipeline.syncOperations.handler(type: ClientConnectionHandler.self))?.cancel(callID)
                }
            }
            channel.eventLoop.execute {
                guard let handler = try? channel.pipeline.syncOperations.handler(type: ClientConnectionHandler.self) else {
                    return continuation.finish(throwing: RPCError(.unavailable, "\(address): connection closed"))
                }
                handler.open(callID, startFrame, patience: patience, receiver)
            }
        }
        return stream
    }

    /// Closes the connection; the next call opens a new one.
    public func close() async {
        let channel = state.withLockedValue { state in
            defer { state.channel = nil }
            return state.channel
        }
        if let channel = try? await channel?.get() { try? await channel.close() }
    }

    private func connection() -> EventLoopFuture<any Channel> {
        let existing: EventLoopFuture<any Channel> = state.withLockedValue { state in
            if let channel = state.channel { return channel }
            let future = makeConnection()
            state.channel = future
            return future
        }
        // Reuse while open; a failed or closed connection is replaced. The callbacks run
        // outside the lock (they may run at once, on this thread).
        return existing.flatMap { channel in
            channel.isActive ? channel.eventLoop.makeSucceededFuture(channel) : self.replace(existing)
        }.flatMapError { _ in self.replace(existing) }
    }

    /// A new connection in place of `stale`, unless another call has replaced it already.
    private func replace(_ stale: EventLoopFuture<any Channel>) -> EventLoopFuture<any Channel> {
        state.withLockedValue { state in
            if let current = state.channel, current !== stale { return current }
            let future = makeConnection()
            state.channel = future
            return future
        }
    }

    private func makeConnection() -> EventLoopFuture<any Channel> {
        let maxFrameBytes = maxFrameBytes
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(FrameDecoder(maxFrameBytes: maxFrameBytes)))
                    try channel.pipeline.syncOperations.addHandler(ClientConnectionHandler())
                }
            }
        do {
            return bootstrap.connect(to: try address.socketAddress())
        } catch {
            return group.any().makeFailedFuture(error)
        }
    }
}

enum ClientEvent: Sendable {
    case message([UInt8])
    case status(StatusCode, String)
    case connectionLost(String)
    /// Nothing ended the call within its deadline and a grace period.
    case noAnswer
}

/// Routes a connection's frames to the calls waiting for them. Event-loop confined.
final class ClientConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = InboundFrame
    typealias OutboundOut = ByteBuffer

    private struct Call {
        let receiver: @Sendable (ClientEvent) -> Void
        /// Fails the call if the server never ends it; on this event loop, so that setting and
        /// cancelling it wakes no other thread.
        let timer: Scheduled<Void>?
    }

    private var calls: [UInt64: Call] = [:]
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    /// Sends the call's start frame; without an answer by `patience` the call ends `.noAnswer`.
    func open(_ id: UInt64, _ frame: V1.Frame, patience: NIODeadline?, _ receiver: @escaping @Sendable (ClientEvent) -> Void) {
        guard let context, context.channel.isActive else { return receiver(.connectionLost("connection closed")) }
        let loop = NIOLoopBound(self, eventLoop: context.eventLoop)
        let timer = patience.map { context.eventLoop.scheduleTask(deadline: $0) { loop.value.end(id, .noAnswer) } }
        calls[id] = Call(receiver: receiver, timer: timer)
        // A failed write closes the channel, and channelInactive fails the call.
        context.writeAndFlush(wrapOutboundOut(Framing.encode(frame, allocator: context.channel.allocator)), promise: nil)
    }

    /// Removes the call and hands it its last event.
    private func end(_ id: UInt64, _ event: ClientEvent) {
        guard let call = calls.removeValue(forKey: id) else { return }
        call.timer?.cancel()
        call.receiver(event)
    }

    func cancel(_ id: UInt64) {
        guard let call = calls.removeValue(forKey: id), let context else { return }
        call.timer?.cancel()
        var frame = V1.Frame()
        frame.callID = id
        frame.kind = .cancel(V1.Cancel())
        context.writeAndFlush(wrapOutboundOut(Framing.encode(frame, allocator: context.channel.allocator)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .oversized(let id, let length):
            if let id { end(id, .status(.resourceExhausted, "response frame of \(length) bytes exceeds the client's limit")) }
        case .compressed(let id):
            if let id { end(id, .status(.unimplemented, "compressed response")) }
        case .frame(let buffer):
            guard let frame = try? buffer.decodeMessage(V1.Frame.self) else {
                return failAll("malformed frame from the server")
            }
            switch frame.kind {
            case .message(let bytes)?: calls[frame.callID]?.receiver(.message(bytes))
            case .status(let status)?:
                if frame.callID == 0 {
                    // A connection-level complaint about something we sent.
                    failAll("server: \(status.code.name): \(status.message)")
                } else {
                    end(frame.callID, .status(status.code, status.message))
                }
            default: break
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll("connection closed by the server")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll("\(error)")
        context.close(promise: nil)
    }

    private func failAll(_ why: String) {
        for id in Array(calls.keys) { end(id, .connectionLost(why)) }
    }
}
