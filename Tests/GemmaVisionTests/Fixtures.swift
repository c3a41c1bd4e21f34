import Foundation
@testable import GemmaVision

/// The fixtures written by tools/make_vision_fixtures.py (see that script for what each holds).
enum Fixtures {
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/vision")

    struct Manifest: Decodable {
        struct Model: Decodable {
            let dir: String
            let image_size: Int
            let tokens: Int
            let text_hidden: Int
            let width: Int
        }
        struct PanAndScan: Decodable {
            let min_crop_size: Int
            let max_num_crops: Int
            let min_ratio: Double
            var options: PanAndScanOptions {
                PanAndScanOptions(minCropSize: min_crop_size, maxCrops: max_num_crops,
                                  minRatioToActivate: min_ratio)
            }
        }
        struct Case: Decodable {
            let name: String
            let model: String
            let png: String
            let resize: Bool
            /// Allowed difference in 8-bit levels (nil: exact when not resized, one level when resized).
            let levels: Int?
            let pan_and_scan: PanAndScan?
            let width: Int
            let height: Int
            let num_crops: Int
            let boxes: [[Int]]
            let pixels: String
            let tower: String
            let tokens: String
            let tower_shape: [Int]
            let tokens_shape: [Int]
            let decoded_rgb: String?
        }
        struct Resize: Decodable {
            let width: Int
            let height: Int
            let out_width: Int
            let out_height: Int
            let input: String
            let output: String
        }
        let models: [String: Model]
        let resize: [Resize]
        let cases: [Case]
        let corrupt: [String]
    }

    static let manifest: Manifest = {
        let data = try! Data(contentsOf: root.appendingPathComponent("manifest.json"))
        return try! JSONDecoder().decode(Manifest.self, from: data)
    }()

    static func bytes(_ relativePath: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: root.appendingPathComponent(relativePath)))
    }

    static func floats(_ relativePath: String) throws -> [Float] {
        let raw = try bytes(relativePath)
        return raw.withUnsafeBytes { buffer in
            (0..<(raw.count / 4)).map { Float(bitPattern: UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
    }

    static func path(_ relativePath: String) -> String {
        root.appendingPathComponent(relativePath).path
    }
}
