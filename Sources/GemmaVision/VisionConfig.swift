import Foundation
import GemmaKernels
import GemmaWeights

/// Shape and preprocessing of a Gemma 3 vision tower (SigLIP) and its projector.
public struct VisionConfig: Sendable, Equatable {
    /// Side of the square input in pixels (`vision_config.image_size`; 896 for Gemma 3).
    public var imageSize: Int
    public var patchSize: Int
    /// Transformer width (`vision_config.hidden_size`; 1152 for so400m).
    public var width: Int
    public var layers: Int
    public var heads: Int
    /// MLP hidden size (`vision_config.intermediate_size`; 4304 for so400m).
    public var mlpWidth: Int
    /// Epsilon of every LayerNorm and of the projector's RMSNorm.
    public var layerNormEpsilon: Float
    /// Soft tokens per image (`mm_tokens_per_image`), a square number.
    public var tokensPerImage: Int
    /// Width of the soft tokens: the text model's `hidden_size`.
    public var textHidden: Int
    /// Resize/rescale/normalise settings (`preprocessor_config.json`).
    public var preprocessor: ImagePreprocessor
    /// Pan & Scan as `preprocessor_config.json` asks (nil when `do_pan_and_scan` is off).
    public var panAndScan: PanAndScanOptions?

    public init(imageSize: Int, patchSize: Int, width: Int, layers: Int, heads: Int, mlpWidth: Int,
                layerNormEpsilon: Float = 1e-6, tokensPerImage: Int, textHidden: Int,
                preprocessor: ImagePreprocessor? = nil, panAndScan: PanAndScanOptions? = nil) {
        self.imageSize = imageSize
        self.patchSize = patchSize
        self.width = width
        self.layers = layers
        self.heads = heads
        self.mlpWidth = mlpWidth
        self.layerNormEpsilon = layerNormEpsilon
        self.tokensPerImage = tokensPerImage
        self.textHidden = textHidden
        self.preprocessor = preprocessor ?? ImagePreprocessor(imageSize: imageSize)
        self.panAndScan = panAndScan
    }

    /// SigLIP so400m/14 at 896 px with Gemma 3's projector (256 tokens); `textHidden` is the
    /// text model's width (2560 for 4B).
    public static func gemma3(textHidden: Int) -> VisionConfig {
        VisionConfig(imageSize: 896, patchSize: 14, width: 1152, layers: 27, heads: 16,
                     mlpWidth: 4304, tokensPerImage: 256, textHidden: textHidden)
    }

    public var patchesPerSide: Int { imageSize / patchSize }
    public var patchCount: Int { patchesPerSide * patchesPerSide }
    public var headDim: Int { width / heads }
    public var tokensPerSide: Int { Int(Double(tokensPerImage).squareRoot().rounded()) }
    /// Side of the average-pooling window over the patch grid.
    public var poolKernel: Int { patchesPerSide / tokensPerSide }

    /// Throws `VisionError.invalidConfig` unless every size fits together.
    public func validate() throws {
        func require(_ condition: Bool, _ message: String) throws {
            if !condition { throw VisionError.invalidConfig(message) }
        }
        try require(imageSize > 0 && patchSize > 0 && imageSize % patchSize == 0,
                    "image_size \(imageSize) is not a positive multiple of patch_size \(patchSize)")
        try require(width > 0 && heads > 0 && width % heads == 0,
                    "hidden_size \(width) is not a positive multiple of num_attention_heads \(heads)")
        try require(layers >= 0 && mlpWidth > 0 && textHidden > 0, "non-positive layer count or width")
        try require(tokensPerImage > 0 && tokensPerSide * tokensPerSide == tokensPerImage,
                    "mm_tokens_per_image \(tokensPerImage) is not a square")
        try require(patchesPerSide % tokensPerSide == 0,
                    "\(patchesPerSide) patches per side do not pool evenly into \(tokensPerSide) tokens per side")
        try require(preprocessor.imageSize == imageSize,
                    "preprocessor size \(preprocessor.imageSize) differs from image_size \(imageSize)")
        try require(preprocessor.mean.count == 3 && preprocessor.std.count == 3
                    && preprocessor.std.allSatisfy { $0 != 0 }, "image_mean/image_std need 3 non-zero values")
        try require(layerNormEpsilon >= 0, "negative layer_norm_eps")
    }

    // MARK: Reading checkpoints

    /// From a Hugging Face folder: `config.json` (`vision_config`, `mm_tokens_per_image`,
    /// `text_config.hidden_size`) and, when present, `preprocessor_config.json`. Missing
    /// `vision_config` keys take transformers' `SiglipVisionConfig` defaults, a missing
    /// `mm_tokens_per_image` 256, a missing text `hidden_size` `Gemma3TextConfig`'s 2304.
    public static func huggingFace(folder: String) throws -> VisionConfig {
        let config = try readJSON(folder + "/config.json")
        guard let vision = config["vision_config"] as? [String: Any] else {
            throw VisionError.invalidConfig("\(folder)/config.json has no vision_config")
        }
        let text = config["text_config"] as? [String: Any] ?? [:]
        func int(_ dict: [String: Any], _ key: String, _ fallback: Int) throws -> Int {
            guard let value = dict[key] else { return fallback }
            guard let number = value as? NSNumber, let exact = Int(exactly: number.doubleValue) else {
                throw VisionError.invalidConfig("\(key) is not an integer")
            }
            return exact
        }
        if let activation = vision["hidden_act"] as? String, !tanhGELUNames.contains(activation) {
            throw VisionError.invalidConfig("vision hidden_act \(activation) is not supported (SigLIP's is gelu_pytorch_tanh)")
        }
        let imageSize = try int(vision, "image_size", 224)
        var result = VisionConfig(
            imageSize: imageSize,
            patchSize: try int(vision, "patch_size", 16),
            width: try int(vision, "hidden_size", 768),
            layers: try int(vision, "num_hidden_layers", 12),
            heads: try int(vision, "num_attention_heads", 12),
            mlpWidth: try int(vision, "intermediate_size", 3072),
            layerNormEpsilon: ((vision["layer_norm_eps"] as? NSNumber)?.floatValue) ?? 1e-6,
            tokensPerImage: try int(config, "mm_tokens_per_image", 256),
            textHidden: try int(text, "hidden_size", 2304))
        let preprocessorPath = folder + "/preprocessor_config.json"
        if FileManager.default.fileExists(atPath: preprocessorPath) {
            let pre = try readJSON(preprocessorPath)
            var preprocessor = ImagePreprocessor(imageSize: imageSize)
            if let size = pre["size"] as? [String: Any] {
                let height = try int(size, "height", imageSize)
                let width = try int(size, "width", imageSize)
                guard height == width else {
                    throw VisionError.invalidConfig("preprocessor size \(width)×\(height) is not square")
                }
                preprocessor.imageSize = height
            }
            if let factor = (pre["rescale_factor"] as? NSNumber)?.doubleValue { preprocessor.rescaleFactor = factor }
            // A single number stands for every channel, as transformers' `normalize` takes it.
            func channels(_ key: String) -> [Float]? {
                if let list = pre[key] as? [NSNumber] { return list.map(\.floatValue) }
                return (pre[key] as? NSNumber).map { Array(repeating: $0.floatValue, count: 3) }
            }
            if let mean = channels("image_mean") { preprocessor.mean = mean }
            if let std = channels("image_std") { preprocessor.std = std }
            if (pre["do_rescale"] as? Bool) == false { preprocessor.rescaleFactor = 1 }
            if (pre["do_normalize"] as? Bool) == false { (preprocessor.mean, preprocessor.std) = ([0, 0, 0], [1, 1, 1]) }
            if let resample = pre["resample"] as? NSNumber, resample.intValue != 2 {
                throw VisionError.invalidConfig("preprocessor resample \(resample) is not supported (only PIL's bilinear, 2)")
            }
            result.preprocessor = preprocessor
            if (pre["do_pan_and_scan"] as? Bool) == true {
                var options = PanAndScanOptions()
                if let v = pre["pan_and_scan_min_crop_size"] as? NSNumber { options.minCropSize = v.intValue }
                if let v = pre["pan_and_scan_max_num_crops"] as? NSNumber { options.maxCrops = v.intValue }
                if let v = pre["pan_and_scan_min_ratio_to_activate"] as? NSNumber {
                    options.minRatioToActivate = v.doubleValue
                }
                result.panAndScan = options
            }
        }
        try result.validate()
        return result
    }

    /// From a llama.cpp `mmproj` GGUF (`clip.vision.*` keys, projector type `gemma3`).
    /// Tokens per image come from `clip.vision.projector.scale_factor` (the pooling kernel;
    /// llama.cpp's default 4 when absent).
    public static func gguf(_ file: GGUFFile) throws -> VisionConfig {
        let projector = file.string("clip.projector_type") ?? file.string("clip.vision.projector_type")
        guard projector == "gemma3" else {
            throw VisionError.invalidConfig("\(file.file.path): projector type \(projector ?? "missing"), expected gemma3")
        }
        func int(_ key: String) throws -> Int {
            guard let value = file.int(key) else {
                throw VisionError.invalidConfig("\(file.file.path) lacks \(key)")
            }
            return value
        }
        let imageSize = try int("clip.vision.image_size")
        let patchSize = try int("clip.vision.patch_size")
        let kernel = file.int("clip.vision.projector.scale_factor") ?? 4
        guard kernel > 0, patchSize > 0, (imageSize / patchSize) % kernel == 0 else {
            throw VisionError.invalidConfig("pooling kernel \(kernel) does not divide the patch grid")
        }
        let perSide = imageSize / patchSize / kernel
        var preprocessor = ImagePreprocessor(imageSize: imageSize)
        if let mean = file.floatArray("clip.vision.image_mean") { preprocessor.mean = mean }
        if let std = file.floatArray("clip.vision.image_std") { preprocessor.std = std }
        let result = VisionConfig(
            imageSize: imageSize, patchSize: patchSize,
            width: try int("clip.vision.embedding_length"),
            layers: try int("clip.vision.block_count"),
            heads: try int("clip.vision.attention.head_count"),
            mlpWidth: try int("clip.vision.feed_forward_length"),
            layerNormEpsilon: file.float("clip.vision.attention.layer_norm_epsilon") ?? 1e-6,
            tokensPerImage: perSide * perSide,
            textHidden: try int("clip.vision.projection_dim"),
            preprocessor: preprocessor)
        try result.validate()
        return result
    }

    private static func readJSON(_ path: String) throws -> [String: Any] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw VisionError.invalidConfig("cannot read \(path)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw VisionError.invalidConfig("\(path) is not a JSON object")
        }
        return object
    }
}
