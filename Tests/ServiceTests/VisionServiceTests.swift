import Foundation
import GemmaAPI
import GemmaRPC
import XCTest

/// The vision service, socket-activated, on a small random-weight fixture model whose
/// expected soft tokens come from transformers (tools/make_vision_fixtures.py).
final class VisionServiceTests: XCTestCase {
    nonisolated(unsafe) static var service: ActivatedService?
    static let fixtures = repositoryRoot + "/Tests/Fixtures/vision"

    /// Statics outlive the test process's last test: stop the services here, not at exit.
    override class func tearDown() {
        service = nil
        super.tearDown()
    }

    override func setUpWithError() throws {
        if Self.service == nil {
            Self.service = try ActivatedService(
                binary: "gemma-vision",
                arguments: ["--model", Self.fixtures + "/tiny64", "--max-images", "3", "--max-pixels", "1000000"],
                name: "vision")
        }
    }

    private var client: RPCClient { get throws { try RPCClient(Self.service!.unixAddress) } }

    private func png(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: "\(Self.fixtures)/\(name)")))
    }

    private func floats(_ name: String) throws -> [Float] {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(Self.fixtures)/\(name)"))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    private func image(_ name: String, panAndScan: Bool = false) throws -> V1.Image {
        var image = V1.Image()
        image.source = .png(try png(name))
        if panAndScan {
            var options = V1.PanAndScan()
            options.enabled = true
            image.panAndScan = options
        }
        return image
    }

    func testSoftTokensEqualTransformersThroughTheService() async throws {
        var request = V1.EncodeImageRequest()
        request.images = [try image("images/rgb_64.png")]
        let response = try await client.unary("/gemma.v1.VisionEncoder/EncodeImage", request, as: V1.EncodeImageResponse.self)
        let crop = try XCTUnwrap(response.images.first?.crops.first)
        XCTAssertEqual(crop.tokens, 4)
        XCTAssertEqual(crop.hidden, 48)
        XCTAssertEqual(crop.box, { var b = V1.CropBox(); b.width = 64; b.height = 64; return b }())
        let ours = crop.data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let expected = try floats("expected/tiny64_rgb.tokens.f32")
        XCTAssertEqual(ours.count, expected.count)
        let scale = expected.map(abs).max() ?? 1
        let worst = zip(ours, expected).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst / scale, 1e-4)

        // bf16 on request: the same values, rounded.
        request.type = .bf16
        let half = try await client.unary("/gemma.v1.VisionEncoder/EncodeImage", request, as: V1.EncodeImageResponse.self)
        let bf16 = try XCTUnwrap(half.images.first?.crops.first?.data)
        XCTAssertEqual(bf16.count, expected.count * 2)
        for i in stride(from: 0, to: expected.count, by: 7) {
            let value = Float(bitPattern: UInt32(bf16[2 * i]) << 16 | UInt32(bf16[2 * i + 1]) << 24)
            XCTAssertEqual(value, expected[i], accuracy: abs(expected[i]) / 128 + 1e-6)
        }
    }

    func testPanAndScanGivesTheWholeImageThenItsCrops() async throws {
        var request = V1.EncodeImageRequest()
        request.images = [try image("images/tall_270x900.png", panAndScan: true), try image("images/rgb_64.png")]
        let response = try await client.unary("/gemma.v1.VisionEncoder/EncodeImage", request, as: V1.EncodeImageResponse.self)
        XCTAssertEqual(response.images.count, 2)
        // transformers' boxes for this image (manifest case pas_tall_270x900).
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/manifest.json"))) as! [String: Any]
        let cases = manifest["cases"] as! [[String: Any]]
        let expected = (cases.first { $0["name"] as? String == "pas_tall_270x900" }!["boxes"] as! [[Int]])
        let boxes = response.images[0].crops.map { crop in
            [Int(crop.box!.x), Int(crop.box!.y), Int(crop.box!.width), Int(crop.box!.height)]
        }
        XCTAssertEqual(boxes, expected)
        XCTAssertEqual(response.images[1].crops.count, 1)
    }

    func testEmbedImageCommandWritesTheCrops() throws {
        let output = NSTemporaryDirectory() + "embed-\(getpid()).f32"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let out = try runProcess(binDirectory + "/gemma", ["embed-image", "--image", Self.fixtures + "/images/rgb_64.png",
                                                            "--output", output, "--vision", Self.service!.unixAddress])
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertTrue(out.stdout.contains("1 crops × 4 tokens × 48 hidden"), out.stdout)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: output)).count, 4 * 48 * 4)
    }

    func testBadImagesGetAStatusAndTheServiceKeepsServing() async throws {
        let client = try client
        for name in ["garbage.bin", "truncated_half.png", "corrupt_idat.png", "zero_width.png", "empty.bin"] {
            var request = V1.EncodeImageRequest()
            request.images = [try image("corrupt/\(name)")]
            await assertStatus(.invalidArgument) {
                _ = try await client.unary("/gemma.v1.VisionEncoder/EncodeImage", request, as: V1.EncodeImageResponse.self)
            }
        }
        var bomb = V1.EncodeImageRequest()
        bomb.images = [try image("corrupt/huge_declared.png")]
        await assertStatus(.resourceExhausted) {
            _ = try await client.unary("/gemma.v1.VisionEncoder/EncodeImage", bomb, as: V1.EncodeImageResponse.self)
        }
        var many = V1.EncodeImageRequest()
        many.images = Array(repeating: try image("images/rgb_64.png"), count: 4)
        await assertStatus(.resourceExhausted) {
            _ = try await client.unary("/gemma.v1.VisionEncoder/EncodeImage", many, as: V1.EncodeImageResponse.self)
        }
        var raw = V1.EncodeImageRequest()
        var image = V1.Image()
        var pixels = V1.RawImage()
        pixels.width = 10
        pixels.height = 10
        pixels.rgb = [1, 2, 3]
        image.source = .raw(pixels)
        raw.images = [image]
        await assertStatus(.invalidArgument) {
            _ = try await client.unary("/gemma.v1.VisionEncoder/EncodeImage", raw, as: V1.EncodeImageResponse.self)
        }
        await assertStatus(.invalidArgument) {
            _ = try await client.unary("/gemma.v1.VisionEncoder/EncodeImage", V1.EncodeImageRequest(), as: V1.EncodeImageResponse.self)
        }
        let health = try await client.unary("/gemma.v1.VisionEncoder/Health", V1.HealthRequest(), as: V1.HealthResponse.self)
        XCTAssertEqual(health.status, .serving)
    }
}
