import GemmaAPI

/// What a handler knows about its call.
public struct CallContext: Sendable {
    /// Full method name, "/gemma.v1.Tokenizer/Encode".
    public let method: String
    public let metadata: [String: String]
    /// When the client stops waiting; nil for no deadline. Long handlers should check
    /// `Task.isCancelled`: the task is cancelled when the deadline passes, the client cancels
    /// or the connection goes away.
    public let deadline: ContinuousClock.Instant?
}

/// Sends the messages of a server-streaming call. A `send` returns once its bytes are queued
/// on the connection; when the connection's outbound buffer is full (a slow reader) it waits
/// until they are written, so a slow reader slows the producer down (backpressure). It throws
/// `CancellationError` once the call is over (cancelled, deadline, client gone).
public struct ResponseStream<Response: ProtoMessage>: Sendable {
    let sendBytes: @Sendable ([UInt8]) async throws -> Void

    public func send(_ response: Response) async throws {
        try await sendBytes(response.serializedBytes())
    }
}

/// A method's implementation, before the request is decoded.
enum MethodHandler: Sendable {
    case unary(@Sendable ([UInt8], CallContext) async throws -> [UInt8])
    /// Synchronous and quick: small requests are answered on the connection's event loop.
    case quickUnary(@Sendable ([UInt8], CallContext) throws -> [UInt8])
    case serverStreaming(@Sendable ([UInt8], CallContext, @escaping @Sendable ([UInt8]) async throws -> Void) async throws -> Void)
}

/// A named gRPC-style service: its methods and their handlers.
public struct RPCService: Sendable {
    /// Fully qualified service name, "gemma.v1.Tokenizer".
    public let name: String
    var methods: [String: MethodHandler] = [:]

    public init(name: String) {
        self.name = name
    }

    /// Registers a method that answers one request with one response.
    public mutating func unary<Request: ProtoMessage, Response: ProtoMessage>(
        _ method: String, _ handler: @escaping @Sendable (Request, CallContext) async throws -> Response
    ) {
        methods[method] = .unary { bytes, context in
            let request = try decodeRequest(Request.self, bytes)
            return try await handler(request, context).serializedBytes()
        }
    }

    /// Registers a synchronous method that answers quickly (a lookup, a short decode): a
    /// request of at most `RPCServer.quickRequestBytes` is answered on the connection's event
    /// loop, with no task and no thread hand-off (a streamed token's detokenization is such a
    /// call, once per token); a larger one runs in a task like any other call.
    public mutating func quickUnary<Request: ProtoMessage, Response: ProtoMessage>(
        _ method: String, _ handler: @escaping @Sendable (Request, CallContext) throws -> Response
    ) {
        methods[method] = .quickUnary { bytes, context in
            let request = try decodeRequest(Request.self, bytes)
            return try handler(request, context).serializedBytes()
        }
    }

    /// Registers a method that answers one request with a stream of responses.
    public mutating func serverStreaming<Request: ProtoMessage, Response: ProtoMessage>(
        _ method: String,
        _ handler: @escaping @Sendable (Request, CallContext, ResponseStream<Response>) async throws -> Void
    ) {
        methods[method] = .serverStreaming { bytes, context, send in
            let request = try decodeRequest(Request.self, bytes)
            try await handler(request, context, ResponseStream(sendBytes: send))
        }
    }

    /// The method names, as "/package.Service/Method".
    public var methodPaths: [String] { methods.keys.sorted().map { "/\(name)/\($0)" } }
}

private func decodeRequest<M: ProtoMessage>(_ type: M.Type, _ bytes: [UInt8]) throws -> M {
    do {
        return try M(serializedBytes: bytes)
    } catch let error as ProtoError {
        throw RPCError.invalidArgument("request: \(error)")
    }
}
