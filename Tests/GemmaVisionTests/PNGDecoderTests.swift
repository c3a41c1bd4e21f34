import Foundation
import Testing
@testable import GemmaVision

@Suite("PNG decoding")
struct PNGDecoderTests {
    /// Cases whose image is the model size: the decoded pixels are what transformers fed the
    /// model (no resize in between), so they can be compared with the recorded pixels.
    static let unresized = Fixtures.manifest.cases.filter { !$0.resize }

    @Test("decoded pixels match transformers' PIL conversion", arguments: unresized.map(\.name))
    func decodedPixels(name: String) throws {
        let testCase = Fixtures.manifest.cases.first { $0.name == name }!
        let image = try PNGDecoder.decode(bytes: try Fixtures.bytes(testCase.png))
        #expect(image.width == testCase.width && image.height == testCase.height)
        // Recorded pixels are channel-first; the reference for 16-bit grey is the high byte
        // (transformers clips those images to white; see PNGDecoder).
        let expected: [UInt8]
        if let rgbPath = testCase.decoded_rgb {
            expected = try Fixtures.bytes(rgbPath)
        } else {
            let chw = try Fixtures.bytes(testCase.pixels)
            let plane = image.width * image.height
            expected = (0..<(plane * 3)).map { chw[($0 % 3) * plane + $0 / 3] }
        }
        let tolerance = testCase.levels ?? 0
        var worst = 0
        for i in 0..<expected.count {
            worst = max(worst, abs(Int(expected[i]) - Int(image.rgb[i])))
        }
        #expect(worst <= tolerance, "largest difference \(worst) levels")
    }

    @Test("corrupt, truncated, non-PNG and empty inputs throw", arguments: Fixtures.manifest.corrupt)
    func corruptInputThrows(file: String) throws {
        let bytes = try Fixtures.bytes("corrupt/" + file)
        #expect(throws: VisionError.self) { try PNGDecoder.decode(bytes: bytes) }
    }

    @Test("a declared size over the limit is refused from the header")
    func hugeDeclaredSize() throws {
        let bytes = try Fixtures.bytes("corrupt/huge_declared.png")
        #expect(throws: VisionError.imageTooLarge(width: 100_000, height: 100_000,
                                                  maxPixels: PNGDecoder.defaultMaxPixels)) {
            try PNGDecoder.decode(bytes: bytes)
        }
        let small = try Fixtures.bytes("images/rgb_64.png")
        #expect(throws: VisionError.imageTooLarge(width: 64, height: 64, maxPixels: 4095)) {
            try PNGDecoder.decode(bytes: small, maxPixels: 4095)
        }
        #expect(try PNGDecoder.decode(bytes: small, maxPixels: 4096).width == 64)
    }

    @Test("raw RGB8 input checks its size")
    func rawInput() throws {
        #expect(throws: VisionError.self) { try RGBImage(width: 2, height: 2, rgb: [UInt8](repeating: 0, count: 11)) }
        #expect(throws: VisionError.self) { try RGBImage(width: 0, height: 2, rgb: []) }
        let image = try RGBImage(width: 2, height: 1, rgb: [1, 2, 3, 4, 5, 6])
        #expect(image.cropped(to: CropBox(x: 1, y: 0, width: 1, height: 1)).rgb == [4, 5, 6])
    }
}
