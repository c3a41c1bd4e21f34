import Foundation
#if canImport(Glibc)
import Glibc
#endif
import GemmaKernels

/// Timings of one benchmark run.
public struct TextBenchmarkResult: Sendable, CustomStringConvertible {
    public var promptTokens: Int
    public var prefillSeconds: Double
    public var decodeTokens: Int
    public var decodeSeconds: Double
    /// CPU time of the process (all threads) during each phase: a measure that, unlike wall
    /// time, does not grow when other processes compete for the cores.
    public var prefillCPUSeconds: Double
    public var decodeCPUSeconds: Double
    public var threads: Int
    public var kernels: String
    public var kvBytes: Int
    /// Peak resident set of the process so far (`VmHWM`), if readable.
    public var peakResidentBytes: Int?

    public var prefillTokensPerSecond: Double { Double(promptTokens) / prefillSeconds }
    public var decodeTokensPerSecond: Double { Double(decodeTokens) / decodeSeconds }

    public var description: String {
        let rss = peakResidentBytes.map { String(format: "%.0f MiB", Double($0) / 1_048_576) } ?? "unknown"
        return String(format: "prefill %d tokens: %.1f tok/s (%.2f s); decode %d tokens: %.1f tok/s (%.1f ms/token); ",
                      promptTokens, prefillTokensPerSecond, prefillSeconds, decodeTokens,
                      decodeTokensPerSecond, 1000 * decodeSeconds / Double(decodeTokens))
            + String(format: "CPU %.2f s prefill, %.1f ms/token decode; ", prefillCPUSeconds,
                     1000 * decodeCPUSeconds / Double(decodeTokens))
            + "threads \(threads), kernels \(kernels), KV cache \(kvBytes / 1024) KiB, peak RSS \(rss)"
    }
}

/// Measures prefill and decode speed on synthetic tokens (for `gemma bench`).
public enum TextBenchmark {
    /// Prefills `promptTokens` deterministic pseudo-random ids in one call, then decodes
    /// `decodeTokens` greedily one at a time, on a fresh cache.
    public static func run(model: TextModel, promptTokens: Int = 512, decodeTokens: Int = 64) throws -> TextBenchmarkResult {
        precondition(promptTokens > 0 && decodeTokens > 0, "need at least one token of each")
        let vocabulary = model.config.vocabSize
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        // Ordinary ids in the lower vocabulary (avoids control tokens at the very top).
        let prompt: [Int32] = [2] + (1..<promptTokens).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int32(1000 + Int(state >> 33) % max(1, min(vocabulary, 200_000) - 1000))
        }
        let cache = model.makeCache(maxContext: promptTokens + decodeTokens)
        let clock = ContinuousClock()
        var logits: [Float] = []
        let cpuStart = processCPUSeconds()
        let prefill = try clock.measure { logits = try model.prefill(tokens: prompt, cache: cache) }
        let cpuAfterPrefill = processCPUSeconds()
        let decode = try clock.measure {
            for _ in 0..<decodeTokens {
                logits = try model.append(tokens: [Int32(Sampler.argmax(logits))], cache: cache)
            }
        }
        let cpuEnd = processCPUSeconds()
        return TextBenchmarkResult(
            promptTokens: promptTokens, prefillSeconds: prefill.seconds,
            decodeTokens: decodeTokens, decodeSeconds: decode.seconds,
            prefillCPUSeconds: cpuAfterPrefill - cpuStart, decodeCPUSeconds: cpuEnd - cpuAfterPrefill,
            threads: model.threads, kernels: KernelISA.active.description,
            kvBytes: cache.kvBytes, peakResidentBytes: peakResidentBytes())
    }

    /// CPU time used by the whole process so far (user + system, all threads).
    public static func processCPUSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
    }

    /// `VmHWM` from /proc/self/status, in bytes.
    public static func peakResidentBytes() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count >= 2, let kilobytes = Int(fields[1]) { return kilobytes * 1024 }
        }
        return nil
    }
}

extension Duration {
    var seconds: Double {
        let (whole, attoseconds) = components
        return Double(whole) + Double(attoseconds) * 1e-18
    }
}
