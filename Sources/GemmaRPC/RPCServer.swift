import GemmaAPI
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Bounds that keep one connection from taking the service down.
public struct RPCServerLimits: Sendable {
    /// Largest frame accepted; larger frames are skipped and their call gets
    /// `RESOURCE_EXHAUSTED`.
    public var maxFrameBytes: Int = 64 << 20
    /// Calls open at once on one connection; more get `RESOURCE_EXHAUSTED`.
    public var maxCallsPerConnection: Int = 64
    /// How long a drain waits for in-flight calls before cancelling them.
    public var drainTimeout: Duration = .seconds(10)

    public init() {}
}

/// Where a server accepts connections.
public enum Listener: Sendable, CustomStringConvertible {
    /// Bind this address (removing a stale Unix socket file first).
    case address(RPCAddress)
    /// A listening socket inherited from systemd (`LISTEN_FDS`), with its `FileDescriptorName`.
    case inherited(fd: CInt, name: String)

    public var description: String {
        switch self {
        case .address(let address): address.description
        case .inherited(let fd, let name): "systemd fd \(fd) (\(name))"
        }
    }
}

/// Serves gRPC-style calls in `gemma.v1.Frame` envelopes on any number of Unix and TCP
/// listeners. Each call runs in its own task; deadlines, client cancellation and vanished
/// connections cancel that task. (A small request to a `quickUnary` method is answered on the
/// connection's event loop instead.)
public final class RPCServer: Sendable {
    /// Largest request a `quickUnary` method answers on the event loop.
    public static let quickRequestBytes = 16 << 10
    /// Bytes of one call's responses that may be queued unwritten before a send waits.
    static let queuedSendBytes = 256 << 10

    let methods: [String: MethodHandler]
    let limits: RPCServerLimits
    private let group: any EventLoopGroup
    private let state = NIOLockedValueBox(State())

    private struct State {
        var listeners: [any Channel] = []
        var connections: [ObjectIdentifier: any Channel] = [:]
        var activeCalls = 0
        var draining = false
        var idleSince: ContinuousClock.Instant? = .now
    }

    public init(services: [RPCService], limits: RPCServerLimits = RPCServerLimits(),
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        var methods: [String: MethodHandler] = [:]
        for service in services {
            for (name, handler) in service.methods { methods["/\(service.name)/\(name)"] = handler }
        }
        self.methods = methods
        self.limits = limits
        self.group = group
    }

    /// Starts accepting on every listener. Throws (having closed what it opened) if any fails.
    public func listen(on listeners: [Listener]) async throws {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(FrameDecoder(maxFrameBytes: limits.maxFrameBytes)))
                    try channel.pipeline.syncOperations.addHandler(ServerConnectionHandler(server: self))
                    self.connectionOpened(channel)
                }
            }
        var opened: [any Channel] = []
        do {
            for listener in listeners {
                let channel: any Channel
                switch listener {
                case .address(.unix(let path)):
                    channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
                case .address(let address):
                    channel = try await bootstrap.bind(to: address.socketAddress()).get()
                case .inherited(let fd, _):
                    channel = try await bootstrap.withBoundSocket(fd).get()
                }
                opened.append(channel)
            }
        } catch {
            for channel in opened { try? await channel.close() }
            throw error
        }
        state.withLockedValue { $0.listeners += opened }
    }

    /// The TCP port of the first TCP listener (useful when binding port 0 in tests).
    public var boundTCPPort: Int? {
        state.withLockedValue { $0.listeners.lazy.compactMap { $0.localAddress?.port }.first }
    }

    public var activeCalls: Int { state.withLockedValue { $0.activeCalls } }

    /// When the server last had no connection open; nil while any is open.
    public var idleSince: ContinuousClock.Instant? { state.withLockedValue { $0.idleSince } }

    /// Stops accepting, lets in-flight calls finish for up to `limits.drainTimeout`, then ends
    /// what is left with `UNAVAILABLE` and closes every connection.
    public func drain() async {
        let listeners = state.withLockedValue { state in
            state.draining = true
            defer { state.listeners = [] }
            return state.listeners
        }
        for listener in listeners { try? await listener.close() }
        let deadline = ContinuousClock.now + limits.drainTimeout
        while activeCalls > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let connections = state.withLockedValue { Array($0.connections.values) }
        for channel in connections {
            try? await channel.eventLoop.submit {
                let handler = try channel.pipeline.syncOperations.handler(type: ServerConnectionHandler.self)
                handler.endAllCalls(.unavailable, "the service is shutting down")
            }.get()
            try? await channel.close()
        }
    }

    var isDraining: Bool { state.withLockedValue { $0.draining } }

    private func connectionOpened(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        state.withLockedValue {
            $0.connections[id] = channel
            $0.idleSince = nil
        }
        channel.closeFuture.whenComplete { [self] _ in
            state.withLockedValue {
                $0.connections[id] = nil
                if $0.connections.isEmpty { $0.idleSince = .now }
            }
        }
    }

    func callStarted() { state.withLockedValue { $0.activeCalls += 1 } }
    func callEnded() { state.withLockedValue { $0.activeCalls -= 1 } }
}

/// One connection's calls. Confined to the channel's event loop; call tasks reach it through
/// `NIOLoopBound`.
final class ServerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = InboundFrame
    typealias OutboundOut = ByteBuffer

    private struct OpenCall {
        let task: Task<Void, Never>
        let deadlineTimer: Scheduled<Void>?
    }

    private let server: RPCServer
    private var calls: [UInt64: OpenCall] = [:]
    private var context: ChannelHandlerContext?

    init(server: RPCServer) {
        self.server = server
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .oversized(let callID, let length):
            sendStatus(callID ?? 0, .resourceExhausted,
                       "frame of \(length) bytes exceeds the limit of \(server.limits.maxFrameBytes) bytes")
        case .compressed(let callID):
            sendStatus(callID ?? 0, .unimplemented, "compressed frames are not supported")
        case .frame(let buffer):
            let frame: V1.Frame
            do {
                frame = try buffer.decodeMessage(V1.Frame.self)
            } catch {
                sendStatus(Framing.leadingCallID(buffer.readableBytesView) ?? 0, .invalidArgument, "malformed frame: \(error)")
                return
            }
            switch frame.kind {
            case .start(let start)?: startCall(frame.callID, start)
            case .cancel?: endCall(frame.callID, .cancelled, "cancelled by the client")
            case .message?, .status?, nil:
                sendStatus(frame.callID, .invalidArgument, "clients send only start and cancel frames")
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The client is gone: stop its work; nothing can be sent any more.
        for id in Array(calls.keys) { close(id) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Unframeable bytes or a socket error: this connection cannot continue.
        context.close(promise: nil)
    }

    /// Ends every open call with a status (used by a drain).
    func endAllCalls(_ code: StatusCode, _ message: String) {
        for id in Array(calls.keys) { endCall(id, code, message) }
    }

    private func startCall(_ id: UInt64, _ start: V1.CallStart) {
        guard id != 0 else { return sendStatus(0, .invalidArgument, "call id 0 is reserved") }
        guard calls[id] == nil else { return sendStatus(id, .invalidArgument, "call id \(id) is already open") }
        guard !server.isDraining else { return sendStatus(id, .unavailable, "the service is shutting down") }
        guard calls.count < server.limits.maxCallsPerConnection else {
            return sendStatus(id, .resourceExhausted,
                              "more than \(server.limits.maxCallsPerConnection) calls open on this connection")
        }
        guard let handler = server.methods[start.method] else {
            return sendStatus(id, .unimplemented, "unknown method '\(start.method)'")
        }
        guard let channel = context?.channel else { return }
        let eventLoop = channel.eventLoop
        let timeout = start.timeoutMs > 0 ? Duration.milliseconds(Int64(clamping: start.timeoutMs)) : nil
        let callContext = CallContext(
            method: start.method,
            metadata: Dictionary(start.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last }),
            deadline: timeout.map { ContinuousClock.now + $0 })
        let request = start.request
        if case .quickUnary(let body) = handler, request.count <= RPCServer.quickRequestBytes {
            do {
                writeAnswer(id, try body(request, callContext))
            } catch {
                let (code, message) = statusOf(error)
                sendStatus(id, code, message)
            }
            return
        }
        let connection = NIOLoopBound(self, eventLoop: eventLoop)
        // A send only queues its write on the event loop while the call has little unwritten
        // (`queuedSendBytes`) and the channel is writable; otherwise it waits for its write
        // (backpressure). Not waiting spares the handler a wake-up per message — one per
        // streamed token.
        let unwritten = NIOLockedValueBox(0)
        let send: @Sendable ([UInt8]) async throws -> Void = { bytes in
            try Task.checkCancellation()
            let count = bytes.count
            let queued = unwritten.withLockedValue { total in
                total += count
                return total
            }
            if queued <= RPCServer.queuedSendBytes && channel.isWritable {
                eventLoop.execute {
                    connection.value.write(id, bytes).whenComplete { _ in unwritten.withLockedValue { $0 -= count } }
                }
            } else {
                defer { unwritten.withLockedValue { $0 -= count } }
                try await eventLoop.flatSubmit { connection.value.write(id, bytes) }.get()
            }
        }
        server.callStarted()
        let task = Task {
            do {
                let response: [UInt8]
                switch handler {
                case .unary(let body): response = try await body(request, callContext)
                case .quickUnary(let body): response = try body(request, callContext)
                case .serverStreaming(let body):
                    try await body(request, callContext, send)
                    return eventLoop.execute { connection.value.endCall(id, .ok, "") }
                }
                // The answer and its OK status in one write: one hop to the event loop, one
                // wake-up of the client.
                return eventLoop.execute { connection.value.answer(id, response) }
            } catch {
                let (code, message) = statusOf(error)
                eventLoop.execute { connection.value.endCall(id, code, message) }
            }
        }
        let timer = timeout.map { timeout in
            eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000
                                                      + timeout.components.attoseconds / 1_000_000_000)) {
                connection.value.endCall(id, .deadlineExceeded, "deadline of \(start.timeoutMs) ms exceeded")
            }
        }
        calls[id] = OpenCall(task: task, deadlineTimer: timer)
    }

    /// Writes one response message of an open call; fails with `CancellationError` once the
    /// call has ended (a send that waits rethrows it; the handler's task is cancelled anyway).
    private func write(_ id: UInt64, _ bytes: [UInt8]) -> EventLoopFuture<Void> {
        guard let context, calls[id] != nil else {
            return server.group(for: self).makeFailedFuture(CancellationError())
        }
        return context.writeAndFlush(wrapOutboundOut(
            Framing.encode(.message(id, bytes), allocator: context.channel.allocator)))
    }

    /// Sends a unary call's response and its OK status together, unless the call has ended
    /// (cancelled, past its deadline, client gone).
    private func answer(_ id: UInt64, _ bytes: [UInt8]) {
        if close(id) { writeAnswer(id, bytes) }
    }

    /// A unary response and its OK status, in one write.
    private func writeAnswer(_ id: UInt64, _ bytes: [UInt8]) {
        guard let context else { return }
        let allocator = context.channel.allocator
        var buffer = Framing.encode(.message(id, bytes), allocator: allocator)
        var status = Framing.encode(.status(id, .ok, ""), allocator: allocator)
        buffer.writeBuffer(&status)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    /// Ends a call once: cancels its task and timer and sends its status. Later calls for the
    /// same id do nothing.
    private func endCall(_ id: UInt64, _ code: StatusCode, _ message: String) {
        if close(id) { sendStatus(id, code, message) }
    }

    /// Forgets an open call: stops its timer and its task (a no-op for the task that has just
    /// answered) and counts it ended. False if the call had ended already.
    @discardableResult
    private func close(_ id: UInt64) -> Bool {
        guard let call = calls.removeValue(forKey: id) else { return false }
        call.deadlineTimer?.cancel()
        call.task.cancel()
        server.callEnded()
        return true
    }

    private func sendStatus(_ id: UInt64, _ code: StatusCode, _ message: String) {
        guard let context else { return }
        context.writeAndFlush(wrapOutboundOut(
            Framing.encode(.status(id, code, message), allocator: context.channel.allocator)), promise: nil)
    }
}

extension RPCServer {
    fileprivate func group(for handler: ServerConnectionHandler) -> any EventLoop { group.any() }
}

/// The status a handler's error ends its call with.
private func statusOf(_ error: any Error) -> (StatusCode, String) {
    switch error {
    case let error as RPCError: (error.code, error.message)
    case is CancellationError: (.cancelled, "call cancelled")
    default: (.internal, "\(error)")
    }
}
