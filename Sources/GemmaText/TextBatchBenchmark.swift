import Foundation

/// Aggregate decode rate of several sessions stepped together with `appendBatch`.
public enum TextBatchBenchmark {
    /// Prefills `sessions` caches with short distinct prompts, then decodes `decodeTokens`
    /// steps greedily for all of them in batches. Returns (aggregate tokens/s wall, CPU seconds
    /// per token).
    public static func run(model: TextModel, sessions: Int, promptTokens: Int = 32,
                           decodeTokens: Int = 32) throws -> (tokensPerSecond: Double, cpuSecondsPerToken: Double) {
        precondition(sessions > 0 && decodeTokens > 0)
        let caches = (0..<sessions).map { _ in model.makeCache(maxContext: promptTokens + decodeTokens + 1) }
        var next: [Int32] = []
        for (s, cache) in caches.enumerated() {
            let prompt: [Int32] = [2] + (1..<promptTokens).map { Int32(1000 + ($0 * 7919 + s * 104_729) % 200_000) }
            let logits = try model.prefill(tokens: prompt, cache: cache)
            next.append(Int32(Sampler.argmax(logits)))
        }
        let clock = ContinuousClock()
        let cpuStart = TextBenchmark.processCPUSeconds()
        let elapsed = try clock.measure {
            for _ in 0..<decodeTokens {
                let rows = try model.appendBatch(zip(caches, next).map { DecodeStep(cache: $0, token: $1) })
                next = rows.map { Int32(Sampler.argmax($0)) }
            }
        }
        let cpu = TextBenchmark.processCPUSeconds() - cpuStart
        let (whole, atto) = elapsed.components
        let seconds = Double(whole) + Double(atto) * 1e-18
        let tokens = Double(sessions * decodeTokens)
        return (tokens / seconds, cpu / tokens)
    }
}
