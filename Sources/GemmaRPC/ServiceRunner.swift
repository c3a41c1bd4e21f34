import ArgumentParser
import Dispatch
import Foundation

/// Options every service takes.
public struct ServiceOptions: ParsableArguments, Sendable {
    @Option(name: .customLong("listen"),
            help: "Also listen here: unix:/path or HOST:PORT (repeatable). Sockets from systemd are used in any case.")
    public var listen: [String] = []

    @Option(name: .customLong("exit-idle-after"),
            help: "Exit after this many seconds without any connection (for socket activation).")
    public var exitIdleAfter: Double?

    @Option(name: .customLong("max-frame-bytes"), help: "Largest frame accepted.")
    public var maxFrameBytes: Int = 64 << 20

    @Option(name: .customLong("max-calls-per-connection"), help: "Calls open at once on one connection.")
    public var maxCallsPerConnection: Int = 64

    @Option(name: .customLong("drain-seconds"), help: "On SIGTERM, how long in-flight calls may take before they are cancelled.")
    public var drainSeconds: Double = 10

    public init() {}
}

/// The life of a service process, the same for all three: load the model (no READY before it
/// is usable), listen on systemd's sockets and `--listen` addresses, report READY and a
/// readable STATUS, serve until SIGTERM/SIGINT (or the idle timeout), then drain.
public enum ServiceRunner {
    /// Exit status for a model or configuration that cannot be used (sysexits' EX_CONFIG);
    /// the units do not restart on it (`RestartPreventExitStatus=78`).
    public static let configurationError: Int32 = 78

    /// Runs the service; returns the process exit code. `load` builds the services, or throws
    /// an error whose description names what could not be loaded.
    public static func run(name: String, options: ServiceOptions,
                           load: () async throws -> (services: [RPCService], summary: String)) async -> Int32 {
        Systemd.status("loading model")
        let services: [RPCService]
        let summary: String
        do {
            (services, summary) = try await load()
        } catch {
            let message = "\(name): cannot start: \(error)"
            FileHandle.standardError.write(Data((message + "\n").utf8))
            Systemd.status(message)
            return configurationError
        }
        var limits = RPCServerLimits()
        limits.maxFrameBytes = options.maxFrameBytes
        limits.maxCallsPerConnection = options.maxCallsPerConnection
        limits.drainTimeout = .milliseconds(Int64(options.drainSeconds * 1000))
        let server = RPCServer(services: services, limits: limits)
        var listeners = Systemd.inheritedListeners()
        do {
            listeners += try options.listen.map { .address(try RPCAddress(parsing: $0)) }
            guard !listeners.isEmpty else {
                throw RPCError.invalidArgument("no socket to serve: start it through its systemd .socket unit or pass --listen")
            }
            try await server.listen(on: listeners)
        } catch {
            let message = "\(name): cannot listen: \(error)"
            FileHandle.standardError.write(Data((message + "\n").utf8))
            Systemd.status(message)
            return configurationError
        }
        let listening = listeners.map(\.description).joined(separator: ", ")
        FileHandle.standardError.write(Data("\(name): \(summary); serving on \(listening)\n".utf8))
        Systemd.notify("READY=1\nSTATUS=\(summary); serving on \(listening)")

        let reason = await waitForStop(server: server, idleExit: options.exitIdleAfter)
        Systemd.notify("STOPPING=1\nSTATUS=\(reason); draining \(server.activeCalls) calls")
        await server.drain()
        FileHandle.standardError.write(Data("\(name): \(reason); stopped\n".utf8))
        return 0
    }

    /// Waits for SIGTERM or SIGINT, or for the server to have had no connection for
    /// `idleExit` seconds. Returns why it stopped.
    private static func waitForStop(server: RPCServer, idleExit: Double?) async -> String {
        let (signals, continuation) = AsyncStream<String>.makeStream()
        var sources: [any DispatchSourceSignal] = []
        for (number, label) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield("received \(label)") }
            source.resume()
            sources.append(source)
        }
        if let idleExit {
            let limit = Duration.milliseconds(Int64(idleExit * 1000))
            Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(250))
                    if let since = server.idleSince, ContinuousClock.now - since >= limit {
                        continuation.yield("idle for \(idleExit) s")
                        return
                    }
                }
            }
        }
        var iterator = signals.makeAsyncIterator()
        let reason = await iterator.next() ?? "stopped"
        for source in sources { source.cancel() }
        return reason
    }
}
