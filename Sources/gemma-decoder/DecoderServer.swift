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

    @Option(help: "Vision service address (repeatable; images are spread across them). Environment: GEMMA_VISION (comma-separated).")
    var vision: [String] = []

    @Option(help: "Seconds an EncodeImage call to a vision service may take.")
    var visionTimeout: Double = 120

    @Option(help: "Memory for cached image soft tokens, in MiB (least recently used evicted).")
    var imageCacheMib: Int = 256

    @Option(help: "The image soft-token id (default: the model's config.json image_token_index, else 262144).")
    var imageTokenId: Int32?

    @Option(help: "Soft tokens per image crop (default: the model's config.json mm_tokens_per_image, else 256).")
    var tokensPerImage: Int?

    @Option(help: "Most images in one request.")
    var maxImages: Int = 16

    @Option(help: "Largest image accepted, in pixels (checked before decoding).")
    var maxImagePixels: Int = 32 << 20

    @Option(help: "Largest context of one session, in tokens (at most the model's).")
    var maxContext: Int = 8192

    @Option(help: "Memory for all KV caches together, in MiB; idle sessions are evicted beyond it.")
    var kvBudgetMib: Int = 2048

    @Option(help: "Tokens generated when a request does not say.")
    var defaultMaxTokens: Int = 512

    @Option(help: "Prompt tokens computed per step of a prefill; other streams decode between the steps of a longer prompt (0: whole prompts at once).")
    var prefillChunk: Int = 256

    @OptionGroup var service: ServiceOptions

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let tokenizerAddress = tokenizer ?? environment["GEMMA_TOKENIZER"] ?? "unix:/run/gemma/tokenizer.sock"
        let visionAddresses = !vision.isEmpty ? vision
            : (environment["GEMMA_VISION"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard visionTimeout > 0, imageCacheMib >= 0, maxImages > 0, maxImagePixels > 0, (tokensPerImage ?? 1) > 0 else {
            throw ValidationError("--vision-timeout, --max-images, --max-image-pixels and --tokens-per-image must be positive")
        }
        guard prefillChunk >= 0 else { throw ValidationError("--prefill-chunk must not be negative") }
        let code = await ServiceRunner.run(name: "gemma-decoder", options: service) {
            let textModel = try TextModel(path: model, threads: threads)
            let limits = DecoderHandlers.Limits(
                maxContext: min(maxContext, textModel.config.maxPositions),
                defaultMaxTokens: defaultMaxTokens, prefillChunk: prefillChunk)
            let fromModel = ImageSupport.modelValues(path: model)
            let images = ImageSupport(
                imageTokenID: imageTokenId ?? fromModel.imageTokenID ?? ImageSupport.defaultImageTokenID,
                tokensPerImage: tokensPerImage ?? fromModel.tokensPerImage ?? ImageSupport.defaultTokensPerImage,
                vision: visionAddresses.isEmpty ? nil
                    : try VisionPool(addresses: visionAddresses, timeout: .milliseconds(Int64(visionTimeout * 1000))),
                cache: SoftTokenCache(budgetBytes: imageCacheMib << 20),
                maxImages: maxImages, maxPixels: maxImagePixels)
            let handlers = DecoderHandlers(
                model: textModel, modelPath: model, tokenizer: try RPCClient(tokenizerAddress),
                sessions: SessionStore(budgetBytes: kvBudgetMib << 20), limits: limits, images: images)
            let config = textModel.config
            let imageNote = visionAddresses.isEmpty ? "text only"
                : "images through \(visionAddresses.count) vision service(s), image token \(images.imageTokenID) × \(images.tokensPerImage)"
            return ([handlers.service()],
                    "model \(model): \(config.layerCount) layers, hidden \(config.hiddenSize), window \(config.slidingWindow), context \(limits.maxContext), \(threads) threads, \(imageNote)")
        }
        throw ExitCode(code)
    }
}
