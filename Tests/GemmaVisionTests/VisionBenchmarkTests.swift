import Foundation
import Testing
@testable import GemmaVision

@Suite("Vision benchmark")
struct VisionBenchmarkTests {
    /// A small shape, so the benchmark code itself is exercised on every test run.
    @Test("benchmark runs and reports consistent numbers")
    func smallBenchmark() throws {
        let config = VisionConfig(imageSize: 56, patchSize: 14, width: 32, layers: 2, heads: 4, mlpWidth: 48,
                                  tokensPerImage: 4, textHidden: 24)
        let result = try VisionBenchmark.run(config: config, crops: 2)
        #expect(result.secondsPerCrop > 0 && result.sgemmGFLOPS > 0 && result.cpuSecondsPerCrop > 0)
        #expect(result.flopsPerCrop == VisionBenchmark.flopsPerCrop(config))
        // 16 patches: patch embedding + 2 × (projections + MLP + attention) + projector.
        let expected = 2.0 * 16 * 588 * 32 + 2 * (8.0 * 16 * 32 * 32 + 4.0 * 16 * 32 * 48 + 4.0 * 16 * 16 * 32)
            + 2.0 * 4 * 32 * 24
        #expect(result.flopsPerCrop == expected)
    }

    /// The real shape (SigLIP so400m at 896 px): minutes in a debug build, so only on request:
    /// `GEMMA_VISION_BENCHMARK=1 OPENBLAS_NUM_THREADS=2 swift test -c release --filter VisionBenchmarkTests`
    /// (`GEMMA_VISION_BENCHMARK_CROPS=n` batches n crops; `GEMMA_VISION_BENCHMARK_LAYERS=n` runs
    /// fewer layers for a quick look).
    @Test("full-size SigLIP so400m benchmark",
          .enabled(if: ProcessInfo.processInfo.environment["GEMMA_VISION_BENCHMARK"] == "1"))
    func fullSize() throws {
        let environment = ProcessInfo.processInfo.environment
        let crops = Int(environment["GEMMA_VISION_BENCHMARK_CROPS"] ?? "") ?? 1
        var config = VisionConfig.gemma3(textHidden: 2560)
        if let layers = Int(environment["GEMMA_VISION_BENCHMARK_LAYERS"] ?? "") { config.layers = layers }
        let result = try VisionBenchmark.run(config: config, crops: crops)
        print("VisionBenchmark:", result)
        #expect(result.secondsPerCrop > 0 && result.achievedGFLOPS > 0)
    }
}
