import NIOCore

/// Where a service listens or a client connects: `unix:/path` or `HOST:PORT`
/// (`[v6]:PORT` for IPv6 literals).
public enum RPCAddress: Sendable, Equatable, CustomStringConvertible {
    case unix(path: String)
    case tcp(host: String, port: Int)

    /// Parses an address; throws `RPCError.invalidArgument` with the offending text.
    public init(parsing text: String) throws {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else { throw RPCError.invalidArgument("empty unix socket path in '\(text)'") }
            self = .unix(path: path)
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (1...65535).contains(port) else {
            throw RPCError.invalidArgument("address '\(text)' is neither unix:/path nor HOST:PORT")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw RPCError.invalidArgument("missing host in '\(text)'") }
        self = .tcp(host: host, port: port)
    }

    public var description: String {
        switch self {
        case .unix(let path): "unix:\(path)"
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }

    func socketAddress() throws -> SocketAddress {
        switch self {
        case .unix(let path): try SocketAddress(unixDomainSocketPath: path)
        case .tcp(let host, let port): try SocketAddress.makeAddressResolvingHost(host, port: port)
        }
    }
}
