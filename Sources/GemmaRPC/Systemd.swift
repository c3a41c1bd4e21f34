import CSystemd
#if canImport(Glibc)
import Glibc
#endif

/// The two pieces of systemd a socket-activated service needs: the inherited listening
/// sockets and the notification socket.
public enum Systemd {
    /// Listening sockets passed by systemd (`LISTEN_FDS`, `LISTEN_FDNAMES`), or none when the
    /// process was not socket-activated. Unsets the variables so children do not inherit them.
    public static func inheritedListeners() -> [Listener] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else { return [] }
        defer {
            if let names {
                for i in 0..<Int(count) { free(names[i]) }
                free(names)
            }
        }
        return (0..<count).map { i in
            let name = names?[Int(i)].map { String(cString: $0) } ?? "unknown"
            return .inherited(fd: SD_LISTEN_FDS_START + i, name: name)
        }
    }

    /// Sends a state change to the service manager ("READY=1", "STATUS=…", "STOPPING=1").
    /// Does nothing when `NOTIFY_SOCKET` is not set.
    public static func notify(_ state: String) {
        _ = sd_notify(0, state)
    }

    public static func status(_ text: String) { notify("STATUS=\(text)") }
}
