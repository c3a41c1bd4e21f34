#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole file mapped read-only into memory.
///
/// The mapping is private and read-only, so the bytes never change under the reader and
/// pages are shared with the page cache. `bytes` stays valid for the lifetime of the object;
/// callers that hand out pointers into it must keep the `MappedFile` alive.
public final class MappedFile: @unchecked Sendable {
    /// The path the file was opened with.
    public let path: String
    /// The file's contents. Empty (with a nil base address) for an empty file.
    public let bytes: UnsafeRawBufferPointer

    /// Maps the file at `path`.
    /// - Throws: `WeightsError` naming the file if it cannot be opened, is not a regular
    ///   file, or cannot be mapped.
    public init(path: String) throws {
        self.path = path
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw WeightsError(path: path, message: "cannot open: \(Self.systemErrorText())")
        }
        // The mapping keeps the file alive; the descriptor is not needed afterwards.
        defer { close(descriptor) }

        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw WeightsError(path: path, message: "cannot stat: \(Self.systemErrorText())")
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw WeightsError(path: path, message: "not a regular file")
        }
        let size = Int(status.st_size)
        if size == 0 {
            // mmap rejects a zero length; an empty file is still a valid (if useless) input.
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0),
              address != MAP_FAILED
        else {
            throw WeightsError(path: path, message: "cannot map \(size) bytes: \(Self.systemErrorText())")
        }
        bytes = UnsafeRawBufferPointer(start: address, count: size)
    }

    deinit {
        if let base = bytes.baseAddress {
            munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
        }
    }

    private static func systemErrorText() -> String {
        String(cString: strerror(errno))
    }
}
