import ArgumentParser
import Foundation
import GemmaAPI
import GemmaRPC
import GemmaServing
import GemmaVision

@main
struct VisionServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemma-vision",
        abstract: "The gemma.v1.VisionEncoder service: PNG → SigLIP → soft tokens per crop, with Pan & Scan.")

    @Option(help: "A Hugging Face Gemma3ForConditionalGeneration folder or an mmproj GGUF.")
    var model: String

    @Option(help: "Largest image accepted, in pixels (checked before decoding).")
    var maxPixels: Int = 32 << 20

    @Option(help: "Most images in one call.")
    var maxImages: Int = 8

    @Option(help: "Crops run through the model together at most.")
    var maxCropsPerBatch: Int = 5

    @OptionGroup var service: ServiceOptions

    func run() async throws {
        let code = await ServiceRunner.run(name: "gemma-vision", options: service) {
            let encoder = try VisionEncoder(path: model, maxCropsPerBatch: maxCropsPerBatch)
            let handlers = VisionHandlers(encoder: encoder, modelPath: model, maxPixels: maxPixels, maxImages: maxImages)
            let config = encoder.config
            return ([handlers.service()],
                    "vision \(model): \(config.imageSize) px, \(config.layers) layers, width \(config.width), \(config.tokensPerImage) tokens × \(config.textHidden)")
        }
        throw ExitCode(code)
    }
}

struct VisionHandlers: Sendable {
    let encoder: VisionEncoder
    let modelPath: String
    let maxPixels: Int
    let maxImages: Int
    let queue = InferenceQueue(name: "gemma-vision inference")
    let started = ContinuousClock.now

    func service() -> RPCService {
        var service = RPCService(name: "gemma.v1.VisionEncoder")
        service.addHealth()
        service.unary("Info") { (_: V1.InfoRequest, _) in info() }
        service.unary("EncodeImage") { (request: V1.EncodeImageRequest, _) in try await encode(request) }
        return service
    }

    func info() -> V1.VisionInfo {
        let config = encoder.config
        var info = V1.VisionInfo()
        info.service = serviceInfo(service: "gemma.v1.VisionEncoder", modelPath: modelPath, format: "safetensors", started: started)
        info.imageSize = UInt32(config.imageSize)
        info.patchSize = UInt32(config.patchSize)
        info.tokensPerImage = UInt32(config.tokensPerImage)
        info.textHiddenSize = UInt32(config.textHidden)
        info.maxImagesPerCall = UInt32(maxImages)
        info.maxPixels = UInt64(maxPixels)
        return info
    }

    func encode(_ request: V1.EncodeImageRequest) async throws -> V1.EncodeImageResponse {
        guard !request.images.isEmpty else { throw RPCError.invalidArgument("no images") }
        guard request.images.count <= maxImages else {
            throw RPCError.resourceExhausted("\(request.images.count) images in one call; the limit is \(maxImages)")
        }
        let decoded = try request.images.enumerated().map { index, image in
            (try decodeImage(image, index: index), try VisionRequests.panAndScan(image.panAndScan, index: index))
        }
        // Images with the same Pan & Scan options go through the encoder together, so that
        // their crops share batches.
        var groups: [(options: PanAndScanOptions?, indices: [Int])] = []
        for (index, item) in decoded.enumerated() {
            if let g = groups.firstIndex(where: { $0.options == item.1 }) {
                groups[g].indices.append(index)
            } else {
                groups.append((item.1, [index]))
            }
        }
        let encoder = self.encoder
        var results = [EncodedImage?](repeating: nil, count: decoded.count)
        for group in groups {
            let images = group.indices.map { decoded[$0].0 }
            let encoded = try await queue.run {
                try encoder.encode(images: images, panAndScan: group.options)
            }
            for (index, image) in zip(group.indices, encoded) { results[index] = image }
        }
        var response = V1.EncodeImageResponse()
        response.images = results.map { image in
            var message = V1.ImageEmbeddings()
            message.crops = image!.crops.map { crop in
                var out = V1.CropEmbeddings()
                var box = V1.CropBox()
                box.x = UInt32(crop.box.x)
                box.y = UInt32(crop.box.y)
                box.width = UInt32(crop.box.width)
                box.height = UInt32(crop.box.height)
                out.box = box
                out.tokens = UInt32(encoder.config.tokensPerImage)
                out.hidden = UInt32(encoder.config.textHidden)
                out.type = request.type
                out.data = request.type == .bf16 ? bfloat16Bytes(crop.embeddings) : crop.embeddings.withUnsafeBytes { Array($0) }
                return out
            }
            return message
        }
        return response
    }

    private func decodeImage(_ image: V1.Image, index: Int) throws -> RGBImage {
        do {
            switch image.source {
            case .png(let bytes)?:
                return try PNGDecoder.decode(bytes: bytes, maxPixels: maxPixels)
            case .raw(let raw)?:
                guard Int(raw.width) * Int(raw.height) <= maxPixels else {
                    throw VisionError.imageTooLarge(width: Int(raw.width), height: Int(raw.height), maxPixels: maxPixels)
                }
                return try RGBImage(width: Int(raw.width), height: Int(raw.height), rgb: raw.rgb)
            case nil:
                throw RPCError.invalidArgument("image \(index) has neither PNG bytes nor raw pixels")
            }
        } catch let error as VisionError {
            if case .imageTooLarge = error { throw RPCError.resourceExhausted("image \(index): \(error)") }
            throw RPCError.invalidArgument("image \(index): \(error)")
        }
    }

}

/// bfloat16, rounded to nearest even, little-endian.
func bfloat16Bytes(_ values: [Float]) -> [UInt8] {
    var out = [UInt8]()
    out.reserveCapacity(values.count * 2)
    for value in values {
        let bits = value.bitPattern
        let rounded: UInt32 = value.isNaN ? 0x7fc0_0000 : bits &+ 0x7fff &+ ((bits >> 16) & 1)
        out.append(UInt8((rounded >> 16) & 0xff))
        out.append(UInt8(rounded >> 24))
    }
    return out
}
