import Foundation
import XCTest

/// Checks of committed artifacts against their sources.
final class RepositoryTests: XCTestCase {
    /// The committed protobuf-c code (and Swift message types) must be what Protos/ generates.
    func testGeneratedProtocolCodeIsCurrent() throws {
        let out = try runProcess("/bin/bash", [repositoryRoot + "/scripts/gen-proto.sh", "--check"])
        XCTAssertEqual(out.status, 0, out.stdout + out.stderr)
    }

    /// Every service unit rates at most 1.5 in `systemd-analyze security`, and `verify`
    /// prints nothing (it exits 0 on unknown keys, so its output is what counts).
    func testSystemdUnitsAreHardenedAndValid() throws {
        let units = repositoryRoot + "/systemd"
        for service in ["tokenizer", "vision", "decoder"] {
            let out = try runProcess("/usr/bin/systemd-analyze", ["security", "--offline=true", "--no-pager",
                                                                  "\(units)/gemma-\(service).service"])
            let line = out.stdout.split(separator: "\n").last { $0.contains("Overall exposure level") } ?? ""
            let score = line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) }
            XCTAssertNotNil(score, out.stdout + out.stderr)
            XCTAssertLessThanOrEqual(score ?? 99, 1.5, "gemma-\(service).service: \(line)")
        }
        // verify needs the ExecStart binaries: check an installed copy whose paths point at
        // the built binaries (what `make install PREFIX=…` writes).
        let root = NSTemporaryDirectory() + "units-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var files: [String] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: units)
        where name.hasPrefix("gemma") && (name.hasSuffix(".service") || name.hasSuffix(".socket") || name.hasSuffix(".target")) {
            var text = try String(contentsOfFile: "\(units)/\(name)", encoding: .utf8)
            text = text.replacingOccurrences(of: "/usr/local/bin", with: binDirectory)
            text = text.replacingOccurrences(of: "/etc/gemma", with: "\(units)/conf")
            try text.write(toFile: "\(root)/\(name)", atomically: true, encoding: .utf8)
            files.append("\(root)/\(name)")
        }
        XCTAssertEqual(files.count, 7)
        let verify = try runProcess("/usr/bin/systemd-analyze", ["verify", "--man=no"] + files.sorted())
        XCTAssertEqual(verify.stdout + verify.stderr, "", "systemd-analyze verify complained")
    }
}
