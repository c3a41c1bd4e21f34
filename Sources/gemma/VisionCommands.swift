import ArgumentParser
import Foundation
import GemmaAPI
import GemmaRPC

struct EmbedImage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed-image",
        abstract: "Soft-token embeddings of an image through the vision service, written as little-endian float32 (crops × tokens × hidden, the whole image first).")

    @Option(help: "A PNG file.") var image: String
    @Flag(help: "Add Pan & Scan crops.") var panAndScan = false
    @Option(help: "Output file.") var output: String
    @OptionGroup var services: ServiceAddresses

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: image) else { fail("cannot read \(image)") }
        var request = V1.EncodeImageRequest()
        request.images = [imageMessage(png: data, panAndScan: panAndScan)]
        let response = try await call(services, .vision, "EncodeImage", request, as: V1.EncodeImageResponse.self)
        let crops = response.images.first?.crops ?? []
        var bytes = Data()
        for crop in crops { bytes.append(contentsOf: crop.data) }
        guard FileManager.default.createFile(atPath: output, contents: bytes) else { fail("cannot write \(output)") }
        let tokens = crops.first?.tokens ?? 0, hidden = crops.first?.hidden ?? 0
        print("\(crops.count) crops × \(tokens) tokens × \(hidden) hidden (float32) → \(output)")
        for (i, crop) in crops.enumerated() {
            let box = crop.box ?? V1.CropBox()
            print("  crop \(i): x \(box.x) y \(box.y) \(box.width)×\(box.height)")
        }
    }
}

func imageMessage(png: Data, panAndScan: Bool) -> V1.Image {
    var image = V1.Image()
    image.source = .png(Array(png))
    if panAndScan {
        var options = V1.PanAndScan()
        options.enabled = true
        image.panAndScan = options
    }
    return image
}
