import Foundation
import Testing
@testable import GemmaVision

@Suite("Preprocessing")
struct PreprocessingTests {
    @Test("crop boxes equal transformers' pan_and_scan", arguments: Fixtures.manifest.cases.map(\.name))
    func cropBoxes(name: String) throws {
        let testCase = Fixtures.manifest.cases.first { $0.name == name }!
        var boxes = [CropBox(x: 0, y: 0, width: testCase.width, height: testCase.height)]
        if let options = testCase.pan_and_scan?.options {
            boxes += options.cropBoxes(width: testCase.width, height: testCase.height)
        }
        let expected = testCase.boxes.map { CropBox(x: $0[0], y: $0[1], width: $0[2], height: $0[3]) }
        #expect(boxes == expected)
        #expect(boxes.count == testCase.num_crops + 1)
    }

    /// 16-bit grey is left out: transformers clips it to white (see PNGDecoder); its decoding
    /// is checked against the high bytes in PNGDecoderTests.
    @Test("pixel values equal transformers' (PIL bilinear, exact for 8-bit sources)",
          arguments: Fixtures.manifest.cases.filter { $0.decoded_rgb == nil }.map(\.name))
    func pixelValues(name: String) throws {
        let testCase = Fixtures.manifest.cases.first { $0.name == name }!
        let size = Fixtures.manifest.models[testCase.model]!.image_size
        let image = try PNGDecoder.decode(bytes: try Fixtures.bytes(testCase.png))
        let preprocessor = ImagePreprocessor(imageSize: size)
        let crops = preprocessor.crops(of: image, panAndScan: testCase.pan_and_scan?.options)
        let expectedLevels = try Fixtures.bytes(testCase.pixels)
        let perCrop = 3 * size * size
        #expect(crops.count * perCrop == expectedLevels.count)
        guard crops.count * perCrop == expectedLevels.count else { return }
        // The recorded levels map back to transformers' pixel_values exactly (checked by the
        // fixture script); compare in normalised units.
        // Exact, except where decoding 16-bit files already differs (`levels`).
        let levels = Float(testCase.levels ?? 0)
        let oneLevel: Float = 2.0 / 255.0
        var worst: Float = 0
        var differing = 0
        for (index, crop) in crops.enumerated() {
            for i in 0..<perCrop {
                let expected = preprocessor.normalized(level: expectedLevels[index * perCrop + i], channel: i / (size * size))
                let difference = abs(crop.pixelValues[i] - expected)
                worst = max(worst, difference)
                if difference > 0 { differing += 1 }
            }
        }
        #expect(worst <= levels * oneLevel * 1.0001 + 1e-6, "worst \(worst * 127.5) levels, \(differing) values differ")
    }

    @Test("resize equals PIL BILINEAR on random sizes", arguments: Array(Fixtures.manifest.resize.indices))
    func resizeSweep(index: Int) throws {
        let entry = Fixtures.manifest.resize[index]
        let image = try RGBImage(width: entry.width, height: entry.height, rgb: try Fixtures.bytes(entry.input))
        let resized = PILBilinear.resize(image, width: entry.out_width, height: entry.out_height)
        #expect(resized.rgb == (try Fixtures.bytes(entry.output)),
                "\(entry.width)×\(entry.height) → \(entry.out_width)×\(entry.out_height)")
    }
}
