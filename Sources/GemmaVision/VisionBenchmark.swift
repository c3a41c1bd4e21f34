import Foundation
import GemmaKernels

/// Times the vision encoder on random weights of a given shape (by default the real one:
/// SigLIP so400m/14 at 896 px, 27 layers, width 1152, 16 heads, MLP 4304, 256 tokens), and
/// OpenBLAS sgemm on the model's largest matrix shape in the same process for comparison.
/// OpenBLAS picks its thread count from `OPENBLAS_NUM_THREADS` (default: every core).
public enum VisionBenchmark {
    public struct Result: Sendable, CustomStringConvertible {
        public let config: VisionConfig
        public let crops: Int
        /// Building the random bf16 weights and loading them into an encoder.
        public let setupSeconds: Double
        /// Wall time of `encode` divided by the number of crops.
        public let secondsPerCrop: Double
        /// Process CPU time (user + system, all threads) of `encode` per crop: on a machine
        /// shared with other work this moves much less than wall time. Wall time on an idle
        /// machine with T busy threads is about this divided by T.
        public let cpuSecondsPerCrop: Double
        /// Floating-point operations of one crop (matrix products only: patch embedding,
        /// projections, attention scores and mixing, MLP, projector).
        public let flopsPerCrop: Double
        public var achievedGFLOPS: Double { flopsPerCrop / secondsPerCrop / 1e9 }
        /// sgemm alone on [patches × width] · [width × mlpWidth], same process, same threads.
        public let sgemmGFLOPS: Double
        /// Wall seconds per crop spent in each phase of the forward pass.
        public let phaseSecondsPerCrop: [String: Double]

        public var description: String {
            String(format: "vision %d px, %d layers, width %d: %.2f s/crop over %d crop(s) (%.2f CPU s/crop), "
                   + "%.0f GFLOP/crop, %.1f GFLOP/s achieved; sgemm %.1f GFLOP/s; setup %.1f s",
                   config.imageSize, config.layers, config.width, secondsPerCrop, crops, cpuSecondsPerCrop,
                   flopsPerCrop / 1e9, achievedGFLOPS, sgemmGFLOPS, setupSeconds)
                + "\n  per crop: " + phaseSecondsPerCrop.sorted { $0.value > $1.value }
                    .map { String(format: "%@ %.2f s", $0.key, $0.value) }.joined(separator: ", ")
        }
    }

    /// Matrix-product FLOPs of one crop for `config`.
    public static func flopsPerCrop(_ config: VisionConfig) -> Double {
        let n = Double(config.patchCount), d = Double(config.width), f = Double(config.mlpWidth)
        let patch = 2 * n * Double(3 * config.patchSize * config.patchSize) * d
        let projections = 4 * 2 * n * d * d
        let mlp = 2 * 2 * n * d * f
        let attention = 2 * 2 * n * n * d  // scores and mixing over all heads
        let projector = 2 * Double(config.tokensPerImage) * d * Double(config.textHidden)
        return patch + Double(config.layers) * (projections + mlp + attention) + projector
    }

    /// Builds random bf16 weights for `config`, encodes `crops` random crops in one call (one
    /// warm-up call first when `warmUp`), and measures sgemm.
    public static func run(config: VisionConfig = .gemma3(textHidden: 2560), crops: Int = 1,
                           warmUp: Bool = false, seed: UInt64 = 0x5eed) throws -> Result {
        try config.validate()
        let setupStart = Date()
        let source = randomWeights(config: config, seed: seed)
        let encoder = try VisionEncoder(config: config, huggingFaceTensors: source, maxCropsPerBatch: max(crops, 1))
        var generator = SplitMix64(seed: seed ^ 0xabcdef)
        let pixels = (0..<(crops * 3 * config.imageSize * config.imageSize)).map { _ in generator.nextFloat() * 2 - 1 }
        let setupSeconds = Date().timeIntervalSince(setupStart)
        if warmUp { _ = try encoder.encode(pixelValues: Array(pixels.prefix(3 * config.imageSize * config.imageSize)), crops: 1) }
        let start = Date()
        let cpuStart = processCPUSeconds()
        let phases = PhaseTimes()
        let tokens = try encoder.run(pixelValues: pixels, crops: crops, phases: phases).map(\.tokens)
        let seconds = Date().timeIntervalSince(start)
        let cpuSeconds = processCPUSeconds() - cpuStart
        guard tokens.allSatisfy({ $0.allSatisfy(\.isFinite) }) else {
            throw VisionError.invalidWeights("benchmark produced non-finite soft tokens")
        }
        return Result(config: config, crops: crops, setupSeconds: setupSeconds,
                      secondsPerCrop: seconds / Double(max(crops, 1)),
                      cpuSecondsPerCrop: cpuSeconds / Double(max(crops, 1)), flopsPerCrop: flopsPerCrop(config),
                      sgemmGFLOPS: sgemmGFLOPS(m: config.patchCount, n: config.mlpWidth, k: config.width),
                      phaseSecondsPerCrop: phases.seconds.mapValues { $0 / Double(max(crops, 1)) })
    }

    /// User + system CPU time of the whole process so far.
    static func processCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// sgemm throughput on `m×k · (n×k)ᵀ`, best of a few repetitions.
    public static func sgemmGFLOPS(m: Int, n: Int, k: Int, repetitions: Int = 3) -> Double {
        var generator = SplitMix64(seed: 42)
        let a = (0..<(m * k)).map { _ in generator.nextFloat() - 0.5 }
        let b = (0..<(n * k)).map { _ in generator.nextFloat() - 0.5 }
        var c = [Float](repeating: 0, count: m * n)
        var best = Double.infinity
        for _ in 0..<max(repetitions, 1) {
            let start = Date()
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    c.withUnsafeMutableBufferPointer { cp in
                        Dense.sgemm(transposeB: true, m: m, n: n, k: k, a: ap.baseAddress!, b: bp.baseAddress!,
                                    c: cp.baseAddress!)
                    }
                }
            }
            best = min(best, Date().timeIntervalSince(start))
        }
        return 2 * Double(m) * Double(n) * Double(k) / best / 1e9
    }

    /// Random bf16 weights under Google's Hugging Face names, scaled like a trained network
    /// (matrices ±1/√fan-in, LayerNorm scale 1) so activations stay finite and normal.
    public static func randomWeights(config: VisionConfig, seed: UInt64) -> InMemoryTensorSource {
        let source = InMemoryTensorSource()
        var generator = SplitMix64(seed: seed)
        func add(_ name: String, _ shape: [Int], scale: Float, offset: Float = 0) {
            source.add(name, type: .bf16, shape: shape) { bytes in
                let values = bytes.bindMemory(to: UInt16.self)
                for i in values.indices {
                    let value = (generator.nextFloat() * 2 - 1) * scale + offset
                    values[i] = UInt16(truncatingIfNeeded: value.bitPattern >> 16)
                }
            }
        }
        let d = config.width, f = config.mlpWidth, p = config.patchSize
        let v = "vision_tower.vision_model."
        add(v + "embeddings.patch_embedding.weight", [d, 3, p, p], scale: 1 / Float(3 * p * p).squareRoot())
        add(v + "embeddings.patch_embedding.bias", [d], scale: 0.02)
        add(v + "embeddings.position_embedding.weight", [config.patchCount, d], scale: 0.02)
        for i in 0..<config.layers {
            let l = "\(v)encoder.layers.\(i)."
            for norm in ["layer_norm1", "layer_norm2"] {
                add(l + norm + ".weight", [d], scale: 0.05, offset: 1)
                add(l + norm + ".bias", [d], scale: 0.02)
            }
            for projection in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                add(l + "self_attn.\(projection).weight", [d, d], scale: 1 / Float(d).squareRoot())
                add(l + "self_attn.\(projection).bias", [d], scale: 0.02)
            }
            add(l + "mlp.fc1.weight", [f, d], scale: 1 / Float(d).squareRoot())
            add(l + "mlp.fc1.bias", [f], scale: 0.02)
            add(l + "mlp.fc2.weight", [d, f], scale: 1 / Float(f).squareRoot())
            add(l + "mlp.fc2.bias", [d], scale: 0.02)
        }
        add(v + "post_layernorm.weight", [d], scale: 0.05, offset: 1)
        add(v + "post_layernorm.bias", [d], scale: 0.02)
        add("multi_modal_projector.mm_soft_emb_norm.weight", [d], scale: 0.05)
        add("multi_modal_projector.mm_input_projection_weight", [d, config.textHidden], scale: 1 / Float(d).squareRoot())
        return source
    }
}
