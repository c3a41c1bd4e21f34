import Foundation
import GemmaAPI
import GemmaRPC
import GemmaServing
import GemmaText
import GemmaVision
import GemmaWeights

/// What the decoder needs to place images: the image token, soft tokens per crop, the vision
/// services (if any), the soft-token cache and the limits on images.
final class ImageSupport: Sendable {
    /// The id that marks soft-token positions (`<image_soft_token>`).
    let imageTokenID: Int32
    /// Soft tokens per crop the chat template is rendered with and the vision service must return.
    let tokensPerImage: Int
    let vision: VisionPool?
    let cache: SoftTokenCache
    let maxImages: Int
    let maxPixels: Int

    init(imageTokenID: Int32, tokensPerImage: Int, vision: VisionPool?, cache: SoftTokenCache,
         maxImages: Int, maxPixels: Int) {
        self.imageTokenID = imageTokenID
        self.tokensPerImage = tokensPerImage
        self.vision = vision
        self.cache = cache
        self.maxImages = maxImages
        self.maxPixels = maxPixels
    }

    /// Gemma 3's values: `<image_soft_token>` is 262144, 256 soft tokens per crop.
    static let defaultImageTokenID: Int32 = 262_144
    static let defaultTokensPerImage = 256

    /// The image token id and tokens per image of a Hugging Face model (top-level
    /// `image_token_index`/`image_token_id` and `mm_tokens_per_image` in its config.json), or
    /// of a GGUF (the id of `<image_soft_token>` in `tokenizer.ggml.tokens`; GGUF has no key for
    /// tokens per image); nil values where the model does not say.
    static func modelValues(path: String) -> (imageTokenID: Int32?, tokensPerImage: Int?) {
        var isDirectory: ObjCBool = false
        let configPath: String
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            configPath = path + "/config.json"
        } else if path.hasSuffix(".gguf") {
            let id = (try? GGUFFile(path: path))?.stringArray("tokenizer.ggml.tokens")?.firstIndex(of: "<image_soft_token>")
            return (id.map { Int32($0) }, nil)
        } else {
            configPath = (path as NSString).deletingLastPathComponent + "/config.json"
        }
        guard let data = FileManager.default.contents(atPath: configPath),
              let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return (nil, nil) }
        let id = (root["image_token_index"] as? NSNumber ?? root["image_token_id"] as? NSNumber).map { Int32($0.intValue) }
        let tokens = (root["mm_tokens_per_image"] as? NSNumber)?.intValue
        return (id, tokens)
    }

    // MARK: images sent as pixels

    /// An image decoded and keyed, with the number of Pan & Scan crops it will get.
    struct PreparedImage: Sendable {
        let message: V1.Image
        let key: [UInt8]
        /// Crops besides the whole image.
        let extraCrops: Int
    }

    /// Decodes each image (PNG or raw RGB8) to key it by its pixels and Pan & Scan options and
    /// to count its crops as the vision service will cut them.
    func prepare(_ images: [V1.Image]) throws -> [PreparedImage] {
        guard images.count <= maxImages else {
            throw RPCError.resourceExhausted("\(images.count) images in one request; the limit is \(maxImages)")
        }
        return try images.enumerated().map { index, image in
            let pixels: RGBImage
            do {
                switch image.source {
                case .png(let bytes)?:
                    pixels = try PNGDecoder.decode(bytes: bytes, maxPixels: maxPixels)
                case .raw(let raw)?:
                    guard Int(raw.width) * Int(raw.height) <= maxPixels else {
                        throw VisionError.imageTooLarge(width: Int(raw.width), height: Int(raw.height), maxPixels: maxPixels)
                    }
                    pixels = try RGBImage(width: Int(raw.width), height: Int(raw.height), rgb: raw.rgb)
                case nil:
                    throw RPCError.invalidArgument("image \(index) has neither PNG bytes nor raw pixels")
                }
            } catch let error as VisionError {
                if case .imageTooLarge = error { throw RPCError.resourceExhausted("image \(index): \(error)") }
                throw RPCError.invalidArgument("image \(index): \(error)")
            }
            let options = try VisionRequests.panAndScan(image.panAndScan, index: index)
            var hash = SHA256()
            hash.update(integer: UInt64(pixels.width))
            hash.update(integer: UInt64(pixels.height))
            hash.update(pixels.rgb)
            if let options {
                hash.update(integer: UInt64(options.minCropSize))
                hash.update(integer: UInt64(options.maxCrops))
                hash.update(integer: options.minRatioToActivate.bitPattern)
            } else {
                hash.update(integer: UInt64.max)
            }
            let crops = options?.cropBoxes(width: pixels.width, height: pixels.height).count ?? 0
            return PreparedImage(message: image, key: hash.finish(), extraCrops: crops)
        }
    }

    /// Soft tokens of every crop of every image, in order: from the cache, or from the vision
    /// services (then cached). Checks hidden size, tokens per crop and crop counts.
    func softTokens(_ images: [PreparedImage], hiddenSize: Int) async throws -> [[SoftTokens]] {
        var result = [[SoftTokens]?](repeating: nil, count: images.count)
        var missing: [Int] = []
        for (index, image) in images.enumerated() {
            if let crops = await cache.lookup(image.key) { result[index] = crops } else { missing.append(index) }
        }
        if !missing.isEmpty {
            guard let vision else {
                throw RPCError.failedPrecondition("this decoder has no vision service (start it with --vision ADDRESS): images are not accepted")
            }
            // The same image twice in one request is encoded once.
            var unique: [Int] = []
            for index in missing where !unique.contains(where: { images[$0].key == images[index].key }) { unique.append(index) }
            let encoded = try await vision.encode(unique.map { images[$0].message })
            for (index, embeddings) in zip(unique, encoded) {
                let crops = try embeddings.crops.enumerated().map { crop, message in
                    try SoftTokens(message, what: "vision result for image \(index), crop \(crop)")
                }
                guard crops.count == 1 + images[index].extraCrops else {
                    throw RPCError.failedPrecondition(
                        "the vision service cut image \(index) into \(crops.count) crops; the decoder expected \(1 + images[index].extraCrops)")
                }
                for crop in crops {
                    guard crop.hidden == hiddenSize else {
                        throw RPCError.failedPrecondition(
                            "the vision service returns soft tokens of hidden size \(crop.hidden), but the text model's hidden size is \(hiddenSize): the vision and decoder models do not belong together")
                    }
                    guard crop.tokens == tokensPerImage else {
                        throw RPCError.failedPrecondition(
                            "the vision service returns \(crop.tokens) soft tokens per crop; this decoder places \(tokensPerImage) (the model's mm_tokens_per_image, or --tokens-per-image)")
                    }
                }
                await cache.store(images[index].key, crops)
                for other in missing where images[other].key == images[index].key { result[other] = crops }
            }
        }
        return result.map { $0! }
    }

    // MARK: placement

    /// Maximal runs of the image token in `ids`.
    func imageRuns(_ ids: [Int32]) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        var i = 0
        while i < ids.count {
            guard ids[i] == imageTokenID else { i += 1; continue }
            var end = i
            while end < ids.count && ids[end] == imageTokenID { end += 1 }
            runs.append(i..<end)
            i = end
        }
        return runs
    }

    /// The model input for `ids` with `crops` (every crop of every image, in order) filling the
    /// runs of the image token: each crop's soft tokens replace the embeddings of its positions
    /// (a run may hold several crops back to back), and each run is one bidirectional group,
    /// as transformers groups consecutive image tokens.
    func place(ids: [Int32], crops: [SoftTokens]) throws -> TextInput {
        let runs = imageRuns(ids)
        var overrides: [EmbeddingOverride] = []
        var next = 0
        for run in runs {
            var position = run.lowerBound
            while position < run.upperBound {
                guard next < crops.count else {
                    throw RPCError.invalidArgument(
                        "the prompt has \(runs.count) runs of the image token (id \(imageTokenID)), more than the \(crops.count) image crops given fill (\(runs.count) image-token runs for \(crops.count) crops)")
                }
                let crop = crops[next]
                guard position + crop.tokens <= run.upperBound else {
                    throw RPCError.invalidArgument(
                        "the image-token run at position \(run.lowerBound) is \(run.count) long; crop \(next) has \(crop.tokens) soft tokens and does not fit")
                }
                overrides.append(EmbeddingOverride(start: position, values: crop.values))
                position += crop.tokens
                next += 1
            }
        }
        guard next == crops.count else {
            throw RPCError.invalidArgument(
                "\(crops.count) image crops were given but the prompt's \(runs.count) runs of the image token (id \(imageTokenID)) hold only \(next)")
        }
        return TextInput(tokens: ids, embeddingOverrides: overrides, bidirectionalGroups: runs)
    }
}

extension DecoderHandlers {
    /// Client-supplied soft tokens, checked against the text model.
    func clientSoftTokens(_ images: [V1.ImageEmbeddings]) throws -> [[SoftTokens]] {
        guard images.count <= self.images.maxImages else {
            throw RPCError.resourceExhausted("\(images.count) images in one request; the limit is \(self.images.maxImages)")
        }
        return try images.enumerated().map { index, image in
            guard !image.crops.isEmpty else { throw RPCError.invalidArgument("image_embeddings[\(index)] has no crops") }
            return try image.crops.enumerated().map { c, message in
                let crop = try SoftTokens(message, what: "image_embeddings[\(index)].crops[\(c)]")
                guard crop.hidden == model.config.hiddenSize else {
                    throw RPCError.invalidArgument(
                        "image_embeddings[\(index)].crops[\(c)] has hidden size \(crop.hidden); the text model's is \(model.config.hiddenSize)")
                }
                return crop
            }
        }
    }

    /// Generate's prompt as model input: token ids (given, encoded, or rendered from chat with
    /// each image expanded by the tokenizer's template) with the images' soft tokens placed.
    /// The context is checked before any image is encoded.
    func generateInput(_ request: V1.GenerateRequest) async throws -> TextInput {
        let clientImages = try clientSoftTokens(request.imageEmbeddings)
        let limit = limits.maxContext
        func checkContext(_ ids: [Int32], _ crops: Int) throws {
            guard ids.count < limit else {
                let note = crops > 0 ? " (\(crops) image crops of \(images.tokensPerImage) soft tokens included)" : ""
                throw RPCError(.outOfRange, "the prompt has \(ids.count) tokens\(note); the context holds \(limit) (prompt + generated)")
            }
        }
        guard case .chat(let chat)? = request.input else {
            let ids = try await promptIDs(request)
            try checkContext(ids, clientImages.reduce(0) { $0 + $1.count })
            return try images.place(ids: ids, crops: clientImages.flatMap { $0 })
        }
        guard !chat.messages.isEmpty else { throw RPCError.invalidArgument("no chat messages") }
        let parts = chat.messages.flatMap { message in
            message.parts.compactMap { part -> V1.Image? in
                if case .image(let image)? = part.part { return image }
                return nil
            }
        }
        var render = V1.ChatTemplateRequest()
        render.messages = chat.messages
        render.addGenerationPrompt = true
        render.kind = chat.kind
        if !clientImages.isEmpty || parts.isEmpty {
            guard clientImages.isEmpty || clientImages.count == parts.count else {
                throw RPCError.invalidArgument("\(clientImages.count) image_embeddings for \(parts.count) image parts in the messages")
            }
            if let first = clientImages.first?.first {
                render.tokensPerImage = UInt32(first.tokens)
                render.cropsPerImage = clientImages.map { UInt32($0.count - 1) }
            }
            let ids = try await callTokenizer("ApplyChatTemplate", render, as: V1.ChatTemplateResponse.self).ids
            try checkContext(ids, clientImages.reduce(0) { $0 + $1.count })
            return try images.place(ids: ids, crops: clientImages.flatMap { $0 })
        }
        guard images.vision != nil else {
            throw RPCError.failedPrecondition("this decoder has no vision service (start it with --vision ADDRESS) and the request carries no image_embeddings: images are not accepted")
        }
        let prepared = try images.prepare(parts)
        render.tokensPerImage = UInt32(images.tokensPerImage)
        render.cropsPerImage = prepared.map { UInt32($0.extraCrops) }
        let ids = try await callTokenizer("ApplyChatTemplate", render, as: V1.ChatTemplateResponse.self).ids
        try checkContext(ids, prepared.reduce(0) { $0 + 1 + $1.extraCrops })
        let crops = try await images.softTokens(prepared, hiddenSize: model.config.hiddenSize)
        return try images.place(ids: ids, crops: crops.flatMap { $0 })
    }

    /// Score's sequence as model input, with `images` (encoded here) or `image_embeddings`
    /// filling the runs of the image token in order.
    func scoreInput(_ request: V1.ScoreRequest) async throws -> TextInput {
        let ids = request.ids
        guard request.images.isEmpty || request.imageEmbeddings.isEmpty else {
            throw RPCError.invalidArgument("give images or image_embeddings, not both")
        }
        if !request.imageEmbeddings.isEmpty {
            return try images.place(ids: ids, crops: try clientSoftTokens(request.imageEmbeddings).flatMap { $0 })
        }
        guard !request.images.isEmpty else { return try images.place(ids: ids, crops: []) }
        guard images.vision != nil else {
            throw RPCError.failedPrecondition("this decoder has no vision service (start it with --vision ADDRESS): images are not accepted; send image_embeddings instead")
        }
        let prepared = try images.prepare(request.images)
        // Check the counts before the images are encoded.
        let crops = prepared.reduce(0) { $0 + 1 + $1.extraCrops }
        let imageTokens = ids.reduce(0) { $0 + ($1 == images.imageTokenID ? 1 : 0) }
        guard imageTokens == crops * images.tokensPerImage else {
            throw RPCError.invalidArgument(
                "the sequence holds \(imageTokens) image tokens (id \(images.imageTokenID)) in \(images.imageRuns(ids).count) runs; the \(prepared.count) images give \(crops) crops × \(images.tokensPerImage) soft tokens = \(crops * images.tokensPerImage)")
        }
        let soft = try await images.softTokens(prepared, hiddenSize: model.config.hiddenSize)
        return try images.place(ids: ids, crops: soft.flatMap { $0 })
    }

    /// Ids outside the vocabulary are refused, except image tokens whose embeddings are replaced.
    func checkVocabulary(_ input: TextInput) throws {
        var replaced = [Bool](repeating: false, count: input.count)
        for override in input.embeddingOverrides {
            for p in override.start..<(override.start + override.values.count / model.config.hiddenSize) { replaced[p] = true }
        }
        let size = model.config.vocabSize
        for (i, id) in input.tokens.enumerated() where !replaced[i] && (id < 0 || Int(id) >= size) {
            throw RPCError.invalidArgument("token id \(id) is outside the vocabulary (0..<\(size))")
        }
    }
}

extension TextInput {
    /// Positions `range` as an input of their own; overrides and groups must not cross its ends.
    func slice(_ range: Range<Int>, hiddenSize: Int) -> TextInput {
        let overrides = embeddingOverrides.filter { range.contains($0.start) }.map {
            EmbeddingOverride(start: $0.start - range.lowerBound, values: $0.values)
        }
        let groups = bidirectionalGroups.filter { range.contains($0.lowerBound) }.map {
            ($0.lowerBound - range.lowerBound)..<($0.upperBound - range.lowerBound)
        }
        return TextInput(tokens: Array(tokens[range]), embeddingOverrides: overrides, bidirectionalGroups: groups)
    }
}
