import ArgumentParser
import Foundation
import GemmaAPI
import GemmaRPC
import GemmaText

@main
struct DecoderServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemma-decoder",
        abstract: "The gemma.v1.Decoder service: Gemma 3 generation with sliding-window and global KV caches.")

    @Option(help: "A GGUF file or a Hugging Face model folder.")
    var model: String

    @Option(help: "Threads for the forward pass.")
    var threads: Int = 2

    @Option(help: "Tokenizer service address. Environment: GEMMA_TOKENIZER.")
    var tokenizer: String?

    @Option(help: "Vision service address (repeatable; crops are spread across them). Environment: GEMMA_VISION.")
    var vision: [String] = []

    @Option(help: "Largest context of one session, in tokens (at most the model's).")
    var maxContext: Int = 8192

    @Option(help: "Memory for all KV caches together, in MiB; idle sessions are evicted beyond it.")
    var kvBudgetMib: Int = 2048

    @Option(help: "Tokens generated when a request does not say.")
    var defaultMaxTokens: Int = 512

    @OptionGroup var service: ServiceOptions

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let tokenizerAddress = tokenizer ?? environment["GEMMA_TOKENIZER"] ?? "unix:/run/gemma/tokenizer.sock"
        let code = await ServiceRunner.run(name: "gemma-decoder", options: service) {
            let textModel = try TextModel(path: model, threads: threads)
            let limits = DecoderHandlers.Limits(
                maxContext: min(maxContext, textModel.config.maxPositions),
                defaultMaxTokens: defaultMaxTokens)
            let handlers = DecoderHandlers(
                model: textModel, modelPath: model, tokenizer: try RPCClient(tokenizerAddress),
                sessions: SessionStore(budgetBytes: kvBudgetMib << 20), limits: limits)
            let config = textModel.config
            return ([handlers.service()],
                    "model \(model): \(config.layerCount) layers, hidden \(config.hiddenSize), window \(config.slidingWindow), context \(limits.maxContext), \(threads) threads")
        }
        throw ExitCode(code)
    }
}
