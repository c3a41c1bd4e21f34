import Foundation
import Testing
@testable import GemmaVision

@Suite("Vision encoder against transformers")
struct VisionEncoderTests {
    static let encoders: [String: VisionEncoder] = {
        var result: [String: VisionEncoder] = [:]
        for (name, model) in Fixtures.manifest.models {
            // 24-row attention blocks: the 64-patch fixtures run blocks of 24, 24 and 16 rows.
            result[name] = try! VisionEncoder(path: Fixtures.path(model.dir), maxCropsPerBatch: 3, attentionBlockRows: 24)
        }
        return result
    }()

    /// Largest |a − b| divided by the largest |b|.
    static func relativeError(_ actual: [Float], _ expected: [Float]) -> Float {
        precondition(actual.count == expected.count)
        let scale = expected.map(abs).max() ?? 1
        var worst: Float = 0
        for i in 0..<actual.count { worst = max(worst, abs(actual[i] - expected[i])) }
        return worst / max(scale, .leastNormalMagnitude)
    }

    static func recordedPixelValues(_ testCase: Fixtures.Manifest.Case, _ encoder: VisionEncoder) throws -> [Float] {
        let levels = try Fixtures.bytes(testCase.pixels)
        let plane = encoder.config.imageSize * encoder.config.imageSize
        return levels.enumerated().map { index, level in
            encoder.config.preprocessor.normalized(level: level, channel: (index / plane) % 3)
        }
    }

    @Test("configuration read from config.json / mmproj GGUF", arguments: Array(Fixtures.manifest.models.keys).sorted())
    func configuration(model: String) {
        let expected = Fixtures.manifest.models[model]!
        let config = Self.encoders[model]!.config
        #expect(config.imageSize == expected.image_size)
        #expect(config.tokensPerImage == expected.tokens)
        #expect(config.textHidden == expected.text_hidden)
        #expect(config.width == expected.width)
    }

    /// Model only: transformers' own pixel_values in, vision tower output and soft tokens out.
    @Test("tower output and soft tokens within 1e-4 for transformers' pixel values",
          arguments: Fixtures.manifest.cases.map(\.name))
    func modelMatches(name: String) throws {
        let testCase = Fixtures.manifest.cases.first { $0.name == name }!
        let encoder = Self.encoders[testCase.model]!
        let crops = testCase.num_crops + 1
        let results = try encoder.run(pixelValues: try Self.recordedPixelValues(testCase, encoder), crops: crops)
        let tower = results.flatMap(\.tower)
        let tokens = results.flatMap(\.tokens)
        let expectedTower = try Fixtures.floats(testCase.tower)
        let expectedTokens = try Fixtures.floats(testCase.tokens)
        #expect(tower.count == expectedTower.count && tokens.count == expectedTokens.count)
        guard tower.count == expectedTower.count, tokens.count == expectedTokens.count else { return }
        #expect(Self.relativeError(tower, expectedTower) <= 1e-4)
        #expect(Self.relativeError(tokens, expectedTokens) <= 1e-4)
    }

    /// End to end where no resize happens and decoding is exact: PNG bytes in, soft tokens out.
    @Test("PNG to soft tokens within 1e-4 when no resize happens",
          arguments: Fixtures.manifest.cases.filter { !$0.resize && ($0.levels ?? 0) == 0 }.map(\.name))
    func endToEnd(name: String) throws {
        let testCase = Fixtures.manifest.cases.first { $0.name == name }!
        let encoder = Self.encoders[testCase.model]!
        let image = try PNGDecoder.decode(bytes: try Fixtures.bytes(testCase.png))
        let encoded = try encoder.encode(images: [image], panAndScan: nil)
        #expect(encoded.count == 1 && encoded[0].crops.count == 1)
        let expected = try Fixtures.floats(testCase.tokens)
        #expect(Self.relativeError(encoded[0].crops[0].embeddings, expected) <= 1e-4)
    }

    /// Several images with Pan & Scan in one call: crop counts, boxes and order as transformers.
    @Test("batched Pan & Scan call keeps images and crops in order")
    func batchedPanAndScan() throws {
        let cases = Fixtures.manifest.cases.filter { $0.model == "tiny64" && $0.pan_and_scan != nil
            && $0.pan_and_scan!.options == PanAndScanOptions() }
        #expect(cases.count >= 3)
        let encoder = Self.encoders["tiny64"]!
        let images = try cases.map { try PNGDecoder.decode(bytes: try Fixtures.bytes($0.png)) }
        let encoded = try encoder.encode(images: images, panAndScan: PanAndScanOptions())
        #expect(encoded.count == cases.count)
        for (result, testCase) in zip(encoded, cases) {
            let boxes = result.crops.map { [$0.box.x, $0.box.y, $0.box.width, $0.box.height] }
            #expect(boxes == testCase.boxes, "\(testCase.name)")
            let size = encoder.config.tokensPerImage * encoder.config.textHidden
            #expect(result.crops.allSatisfy { $0.embeddings.count == size })
            // The resize is bit-exact with PIL, so whole images and crops match transformers.
            let expected = try Fixtures.floats(testCase.tokens)
            #expect(Self.relativeError(result.crops.flatMap(\.embeddings), expected) <= 1e-4, "\(testCase.name)")
        }
    }

    @Test("one attention block and several give the same result")
    func attentionBlocks() throws {
        let testCase = Fixtures.manifest.cases.first { $0.name == "tiny112_rgb" }!
        let blocked = Self.encoders[testCase.model]!
        let whole = try VisionEncoder(path: Fixtures.path(Fixtures.manifest.models[testCase.model]!.dir))
        let pixels = try Self.recordedPixelValues(testCase, blocked)
        let a = try blocked.run(pixelValues: pixels, crops: 1)[0].tower
        let b = try whole.run(pixelValues: pixels, crops: 1)[0].tower
        #expect(Self.relativeError(a, b) <= 1e-5)
    }

    @Test("bad checkpoints are rejected with a clear error")
    func badCheckpoints() throws {
        #expect(throws: (any Error).self) { try VisionEncoder(path: Fixtures.path("does-not-exist")) }
        #expect(throws: (any Error).self) { try VisionEncoder(path: Fixtures.path("images/rgb_64.png")) }
        let empty = InMemoryTensorSource()
        let config = Self.encoders["tiny64"]!.config
        #expect(throws: VisionError.self) { try VisionEncoder(config: config, huggingFaceTensors: empty) }
    }
}
