import Foundation
import GemmaWeights

/// One input image encoded: soft tokens for the whole image and for each Pan & Scan crop.
public struct EncodedImage: Sendable {
    public struct Crop: Sendable {
        /// The region of the source image these tokens show (the whole image first).
        public let box: CropBox
        /// `config.tokensPerImage × config.textHidden` floats, token after token: the rows that
        /// replace the image soft-token placeholders in the text model's input embeddings
        /// (not scaled by √hidden).
        public let embeddings: [Float]
    }
    public let crops: [Crop]
}

/// Gemma 3's vision encoder: SigLIP ViT plus the multimodal projector, from a Hugging Face
/// checkpoint folder or a llama.cpp `mmproj` GGUF.
///
/// ```swift
/// let encoder = try VisionEncoder(path: "/models/gemma-3-4b-it")   // or "…/mmproj-F16.gguf"
/// let image = try PNGDecoder.decode(bytes: pngBytes, maxPixels: 32 << 20)
/// let encoded = try encoder.encode(images: [image], panAndScan: encoder.config.panAndScan)
/// for crop in encoded[0].crops {
///     // crop.box: region of the source image; crop.embeddings: tokensPerImage × textHidden
/// }
/// ```
///
/// Numerics: f32 throughout (weights converted from bf16/f16 per layer, see `SigLIPModel`);
/// matrix products through OpenBLAS sgemm, whose thread count follows `OPENBLAS_NUM_THREADS`.
/// Against transformers (f32, eager attention) the soft tokens agree within 1e-4 of their
/// largest magnitude, and preprocessing is bit-exact for 8-bit PNGs.
///
/// Thread-safe: `encode` may run concurrently (each call allocates its own activations), though
/// calls already use every core through OpenBLAS.
public final class VisionEncoder: Sendable {
    public let config: VisionConfig
    /// Crops run through the model together at most (bounds activation memory, ~165 MB per
    /// so400m crop; 5 fits one image with 4 Pan & Scan crops).
    public let maxCropsPerBatch: Int
    private let source: TensorSource  // owns the mapped weights the model reads
    private let model: SigLIPModel

    /// Loads `path`: a folder with `config.json`, optional `preprocessor_config.json` and
    /// `model.safetensors` (or `model.safetensors.index.json` and shards), or a `.gguf` mmproj.
    /// - Throws: `VisionError` for a bad configuration or missing/misshapen tensors,
    ///   `WeightsError` for unreadable files.
    public convenience init(path: String, maxCropsPerBatch: Int = 5) throws {
        try self.init(path: path, maxCropsPerBatch: maxCropsPerBatch,
                      attentionBlockRows: SigLIPModel.defaultAttentionBlockRows)
    }

    /// `attentionBlockRows`: query rows per attention block (tests use small blocks so that
    /// tiny models run more than one).
    convenience init(path: String, maxCropsPerBatch: Int, attentionBlockRows: Int) throws {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw VisionError.invalidConfig("\(path) does not exist")
        }
        if isFolder.boolValue {
            let config = try VisionConfig.huggingFace(folder: path)
            let source = try SafetensorsTensorSource(path: path)
            try self.init(config: config, source: source, weights: .huggingFace(source, config: config),
                          maxCropsPerBatch: maxCropsPerBatch, attentionBlockRows: attentionBlockRows)
        } else {
            let file = try GGUFFile(path: path)
            let config = try VisionConfig.gguf(file)
            let source = GGUFTensorSource(file: file)
            try self.init(config: config, source: source, weights: .gguf(source, config: config),
                          maxCropsPerBatch: maxCropsPerBatch, attentionBlockRows: attentionBlockRows)
        }
    }

    /// An encoder over tensors with Hugging Face names (`vision_tower.vision_model.…` or
    /// `model.vision_tower.vision_model.…`, `[model.]multi_modal_projector.…`).
    public convenience init(config: VisionConfig, huggingFaceTensors source: TensorSource,
                            maxCropsPerBatch: Int = 5) throws {
        try config.validate()
        try self.init(config: config, source: source, weights: .huggingFace(source, config: config),
                      maxCropsPerBatch: maxCropsPerBatch)
    }

    /// As above with `attentionBlockRows` query rows per attention block (for tests).
    convenience init(config: VisionConfig, huggingFaceTensors source: TensorSource, maxCropsPerBatch: Int,
                     attentionBlockRows: Int) throws {
        try config.validate()
        try self.init(config: config, source: source, weights: .huggingFace(source, config: config),
                      maxCropsPerBatch: maxCropsPerBatch, attentionBlockRows: attentionBlockRows)
    }

    private init(config: VisionConfig, source: TensorSource, weights: VisionWeights, maxCropsPerBatch: Int,
                 attentionBlockRows: Int = SigLIPModel.defaultAttentionBlockRows) throws {
        self.config = config
        self.source = source
        self.maxCropsPerBatch = max(1, maxCropsPerBatch)
        self.model = SigLIPModel(config: config, weights: weights, attentionBlockRows: attentionBlockRows)
    }

    /// Encodes images: each image, then its Pan & Scan crops when `panAndScan` is given and
    /// applies (pass `config.panAndScan` to follow the checkpoint's preprocessor settings),
    /// preprocessed as transformers does and run through the model in batches.
    public func encode(images: [RGBImage], panAndScan: PanAndScanOptions?) throws -> [EncodedImage] {
        // Every (image, box) pair in order; pixels are made batch by batch so a long request
        // holds at most one batch of preprocessed crops (9.6 MB each at 896 px).
        var work: [(image: Int, box: CropBox)] = []
        for (index, image) in images.enumerated() {
            work.append((index, CropBox(x: 0, y: 0, width: image.width, height: image.height)))
            for box in panAndScan?.cropBoxes(width: image.width, height: image.height) ?? [] {
                work.append((index, box))
            }
        }
        let preprocessor = config.preprocessor
        var crops = [[EncodedImage.Crop]](repeating: [], count: images.count)
        var start = 0
        while start < work.count {
            let batch = work[start..<min(start + maxCropsPerBatch, work.count)]
            var pixels: [Float] = []
            pixels.reserveCapacity(batch.count * 3 * config.imageSize * config.imageSize)
            for item in batch {
                let image = images[item.image]
                let isWhole = item.box == CropBox(x: 0, y: 0, width: image.width, height: image.height)
                pixels += preprocessor.pixelValues(isWhole ? image : image.cropped(to: item.box))
            }
            let results = try run(pixelValues: pixels, crops: batch.count)
            for (item, result) in zip(batch, results) {
                crops[item.image].append(EncodedImage.Crop(box: item.box, embeddings: result.tokens))
            }
            start += batch.count
        }
        return crops.map { EncodedImage(crops: $0) }
    }

    /// Soft tokens for already preprocessed crops (`crops × 3 × imageSize²`, channel-first, as
    /// transformers' `pixel_values`); one `tokensPerImage × textHidden` array per crop.
    public func encode(pixelValues: [Float], crops: Int) throws -> [[Float]] {
        try run(pixelValues: pixelValues, crops: crops).map(\.tokens)
    }

    /// Per crop: the vision tower's output (`patches × width`) and the soft tokens.
    func run(pixelValues: [Float], crops: Int, phases: PhaseTimes? = nil) throws -> [(tower: [Float], tokens: [Float])] {
        let perCrop = 3 * config.imageSize * config.imageSize
        guard crops >= 0, pixelValues.count == crops * perCrop else {
            throw VisionError.invalidImage("\(pixelValues.count) pixel values are not \(crops) crops of \(perCrop)")
        }
        var results: [(tower: [Float], tokens: [Float])] = []
        let towerSize = config.patchCount * config.width
        let tokenSize = config.tokensPerImage * config.textHidden
        var start = 0
        while start < crops {
            let count = min(maxCropsPerBatch, crops - start)
            let output = pixelValues.withUnsafeBufferPointer { all in
                model.forward(pixels: UnsafeBufferPointer(rebasing: all[(start * perCrop)..<((start + count) * perCrop)]),
                              crops: count, phases: phases)
            }
            for i in 0..<count {
                results.append((Array(output.tower[(i * towerSize)..<((i + 1) * towerSize)]),
                                Array(output.tokens[(i * tokenSize)..<((i + 1) * tokenSize)])))
            }
            start += count
        }
        return results
    }
}
