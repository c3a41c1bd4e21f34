import CKernels
#if canImport(Glibc)
import Glibc
#endif

/// Memory-read bandwidth, measured the way decode reads weights: a streaming read of a buffer
/// much larger than the last-level cache, split across the context's threads.
public enum MemoryBandwidth {
    /// Best of `repetitions` timed reads of a `bytes` buffer (rounded to whole MiB), in bytes
    /// per second. The buffer is mapped, filled (so every page is resident), read once untimed,
    /// then unmapped before returning: call it before loading a model to leave peak RSS alone.
    public static func measureRead(context: KernelContext, bytes: Int = 256 << 20, repetitions: Int = 5) -> Double {
        let size = max(1 << 20, bytes / (1 << 20) * (1 << 20))
        guard let raw = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              raw != MAP_FAILED else { return 0 }
        defer { munmap(raw, size) }
        // Distinct values per 8 bytes (zero pages could be shared and read from cache).
        let words = raw.bindMemory(to: UInt64.self, capacity: size / 8)
        for i in 0..<(size / 8) { words[i] = UInt64(i) &* 0x9E37_79B9_7F4A_7C15 }
        var sink = ck_stream_read(context.pool, raw, Int64(size))
        var best = Double.infinity
        for _ in 0..<max(1, repetitions) {
            var start = timespec(), end = timespec()
            clock_gettime(CLOCK_MONOTONIC, &start)
            sink ^= ck_stream_read(context.pool, raw, Int64(size))
            clock_gettime(CLOCK_MONOTONIC, &end)
            let seconds = Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) * 1e-9
            best = min(best, seconds)
        }
        withExtendedLifetime(sink) {}
        return Double(size) / best
    }
}
