import Foundation
import GemmaKernels

/// How the next token is chosen from a position's logits.
public struct SamplingParameters: Sendable, Equatable {
    /// 0 picks the most likely token (greedy); otherwise logits are divided by it.
    public var temperature: Float = 0
    /// Keep only the k most likely tokens; 0 keeps all.
    public var topK: Int = 0
    /// Keep the most likely tokens whose probabilities add up to at least p; 1 keeps all.
    public var topP: Float = 1
    /// Drop tokens less likely than min-p × the most likely one; 0 keeps all.
    public var minP: Float = 0
    /// Divides positive (multiplies negative) logits of tokens already seen; 1 is off.
    public var repetitionPenalty: Float = 1
    /// Subtracted once from the logit of every token already seen; 0 is off.
    public var presencePenalty: Float = 0
    /// Subtracted from a token's logit once per earlier occurrence; 0 is off.
    public var frequencyPenalty: Float = 0
    /// The random stream; the same seed with the same inputs gives the same tokens.
    public var seed: UInt64?

    public init() {}

    public var isGreedy: Bool { temperature == 0 }

    /// Checks every value is finite and in range; the error names the first that is not.
    public func validate(vocabularySize: Int) throws {
        func check(_ ok: Bool, _ message: String) throws {
            if !ok { throw TextModelError.badInput(message) }
        }
        try check(temperature.isFinite && temperature >= 0 && temperature <= 100, "temperature must be in 0...100")
        try check(topK >= 0 && topK <= vocabularySize, "top_k must be in 0...\(vocabularySize)")
        try check(topP.isFinite && topP > 0 && topP <= 1, "top_p must be in (0, 1]")
        try check(minP.isFinite && minP >= 0 && minP <= 1, "min_p must be in [0, 1]")
        try check(repetitionPenalty.isFinite && repetitionPenalty > 0 && repetitionPenalty <= 10,
                  "repetition_penalty must be in (0, 10]")
        try check(presencePenalty.isFinite && abs(presencePenalty) <= 10, "presence_penalty must be in -10...10")
        try check(frequencyPenalty.isFinite && abs(frequencyPenalty) <= 10, "frequency_penalty must be in -10...10")
    }
}

/// Chooses tokens: penalties, then temperature, top-k, top-p and min-p, then a seeded draw.
/// Greedy choice takes the first of equal maxima, like `argmax` in PyTorch.
public struct Sampler {
    public let parameters: SamplingParameters
    private var random: SplitMix64

    public init(parameters: SamplingParameters) {
        self.parameters = parameters
        random = SplitMix64(seed: parameters.seed ?? UInt64.random(in: 0...UInt64.max))
    }

    /// Picks the next token from `logits` (one per vocabulary entry). `history` is every
    /// token before it (prompt and generated), which the penalties look at.
    public mutating func sample(logits: [Float], history: [Int32]) -> Int32 {
        // Penalties change a copy; without them the 262k logits are read in place.
        var logits = logits
        if hasPenalties { applyPenalties(&logits, history: history) }
        if parameters.isGreedy { return Int32(Self.argmax(logits)) }

        // Candidates: tokens within e^-30 of the best; the rest cannot change any choice.
        let best = logits.max() ?? 0
        let floor = best - 30 * parameters.temperature
        var candidates: [(id: Int, logit: Float)] = []
        for (id, logit) in logits.enumerated() where logit >= floor { candidates.append((id, logit)) }
        candidates.sort { $0.logit > $1.logit || ($0.logit == $1.logit && $0.id < $1.id) }
        if parameters.topK > 0 && candidates.count > parameters.topK { candidates.removeLast(candidates.count - parameters.topK) }

        var probabilities = candidates.map { expf(($0.logit - best) / parameters.temperature) }
        var total = probabilities.reduce(0, +)
        if parameters.topP < 1 {
            var cumulative: Float = 0
            var keep = probabilities.count
            for (i, p) in probabilities.enumerated() {
                cumulative += p / total
                if cumulative >= parameters.topP { keep = i + 1; break }
            }
            probabilities.removeLast(probabilities.count - keep)
        }
        if parameters.minP > 0, let top = probabilities.first {
            let threshold = parameters.minP * top
            while probabilities.count > 1 && probabilities.last! < threshold { probabilities.removeLast() }
        }
        total = probabilities.reduce(0, +)
        var target = Float(random.nextUnit()) * total
        for (i, p) in probabilities.enumerated() {
            target -= p
            if target < 0 { return Int32(candidates[i].id) }
        }
        return Int32(candidates[probabilities.count - 1].id)
    }

    private var hasPenalties: Bool {
        parameters.repetitionPenalty != 1 || parameters.presencePenalty != 0 || parameters.frequencyPenalty != 0
    }

    private func applyPenalties(_ logits: inout [Float], history: [Int32]) {
        let p = parameters
        var counts: [Int32: Int] = [:]
        for token in history where token >= 0 && Int(token) < logits.count { counts[token, default: 0] += 1 }
        for (token, count) in counts {
            var logit = logits[Int(token)]
            if p.repetitionPenalty != 1 {
                logit = logit > 0 ? logit / p.repetitionPenalty : logit * p.repetitionPenalty
            }
            logit -= p.presencePenalty + p.frequencyPenalty * Float(count)
            logits[Int(token)] = logit
        }
    }

    /// Index of the largest value (the first of equal ones).
    public static func argmax(_ values: [Float]) -> Int {
        values.withUnsafeBufferPointer { VectorOps.argmax($0) }
    }
}

/// Log-probabilities from logits.
public enum LogProbabilities {
    /// log-softmax of row `row` of a row-major `rows × width` matrix, in place.
    public static func logSoftmax(_ values: inout [Float], row: Int, width: Int) {
        let range = (row * width)..<((row + 1) * width)
        let peak = values[range].max() ?? 0
        var sum: Double = 0
        for i in range { sum += Double(expf(values[i] - peak)) }
        let shift = peak + Float(log(sum))
        for i in range { values[i] -= shift }
    }

    /// The log-probability of `token` and of the `count` most likely tokens under `logits`.
    public static func of(_ token: Int32, in logits: [Float], top count: Int) -> (chosen: Float, top: [(id: Int32, logprob: Float)]) {
        var values = logits
        logSoftmax(&values, row: 0, width: values.count)
        return (values[Int(token)], top(count, of: values))
    }

    /// The `count` largest entries, largest first (ties: lower id first).
    public static func top(_ count: Int, of values: [Float]) -> [(id: Int32, logprob: Float)] {
        guard count > 0 else { return [] }
        var best: [(id: Int32, logprob: Float)] = []
        best.reserveCapacity(count + 1)
        for (i, v) in values.enumerated() where best.count < count || v > best[best.count - 1].logprob {
            let entry = (id: Int32(i), logprob: v)
            let at = best.firstIndex { v > $0.logprob } ?? best.count
            best.insert(entry, at: at)
            if best.count > count { best.removeLast() }
        }
        return best
    }
}
