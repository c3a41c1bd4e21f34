import Dispatch

/// In-process encode throughput, for `gemma bench tokenizer`.
public enum TokenizerBenchmark {
    public struct Measurement: Sendable {
        /// UTF-8 bytes of the text.
        public let textBytes: Int
        /// Tokens one encode produces.
        public let tokenCount: Int
        public let iterations: Int
        public let seconds: Double

        public var bytesPerSecond: Double { Double(textBytes * iterations) / seconds }
        public var tokensPerSecond: Double { Double(tokenCount * iterations) / seconds }
        public var megabytesPerSecond: Double { bytesPerSecond / 1_000_000 }
    }

    /// Encodes `text` repeatedly on the calling thread (after one untimed warm-up run)
    /// until at least `minimumSeconds` have passed and at least `minimumIterations` ran.
    public static func measureEncode(
        tokenizer: Tokenizer, text: String, parseSpecial: Bool = false,
        minimumSeconds: Double = 1.0, minimumIterations: Int = 3
    ) throws -> Measurement {
        let tokenCount = try tokenizer.encode(text, addBOS: false, parseSpecial: parseSpecial).count
        var iterations = 0
        let start = DispatchTime.now().uptimeNanoseconds
        var elapsed = 0.0
        repeat {
            _ = try tokenizer.encode(text, addBOS: false, parseSpecial: parseSpecial)
            iterations += 1
            elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        } while elapsed < minimumSeconds || iterations < minimumIterations
        return Measurement(textBytes: text.utf8.count, tokenCount: tokenCount, iterations: iterations, seconds: elapsed)
    }
}
