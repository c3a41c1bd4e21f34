import Foundation
import GemmaVision
import XCTest

/// `preprocessor_config.json` and `vision_config` keys that change the numbers transformers
/// computes: honoured where the encoder can, refused with a clear error where it cannot.
final class VisionConfigTests: XCTestCase {
    private func load(vision: String = "{}", preprocessor: String) throws -> VisionConfig {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("vision-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let config = #"{"vision_config": \#(vision), "text_config": {"hidden_size": 32}, "mm_tokens_per_image": 4}"#
        try Data(config.utf8).write(to: folder.appendingPathComponent("config.json"))
        try Data(preprocessor.utf8).write(to: folder.appendingPathComponent("preprocessor_config.json"))
        return try VisionConfig.huggingFace(folder: folder.path)
    }

    private let tower = #"{"image_size": 56, "patch_size": 14, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 48, "num_hidden_layers": 1}"#

    func testScalarMeanAndStdStandForEveryChannel() throws {
        let config = try load(vision: tower, preprocessor: #"{"image_mean": 0.25, "image_std": 0.75}"#)
        XCTAssertEqual(config.preprocessor.mean, [0.25, 0.25, 0.25])
        XCTAssertEqual(config.preprocessor.std, [0.75, 0.75, 0.75])
    }

    func testRescaleAndNormalizeCanBeTurnedOff() throws {
        let config = try load(vision: tower, preprocessor: #"{"do_rescale": false, "do_normalize": false, "image_mean": [0.1, 0.2, 0.3]}"#)
        XCTAssertEqual(config.preprocessor.rescaleFactor, 1)
        XCTAssertEqual(config.preprocessor.mean, [0, 0, 0])
        XCTAssertEqual(config.preprocessor.std, [1, 1, 1])
        let defaults = try load(vision: tower, preprocessor: #"{"do_rescale": true, "do_normalize": true, "resample": 2}"#)
        XCTAssertEqual(defaults.preprocessor.rescaleFactor, 1.0 / 255.0)
        XCTAssertEqual(defaults.preprocessor.mean, [0.5, 0.5, 0.5])
    }

    func testUnsupportedResampleAndActivationAreRefused() {
        XCTAssertThrowsError(try load(vision: tower, preprocessor: #"{"resample": 3}"#)) { error in
            XCTAssertTrue("\(error)".contains("resample"), "\(error)")
        }
        let relu = tower.replacingOccurrences(of: "}", with: #", "hidden_act": "relu"}"#)
        XCTAssertThrowsError(try load(vision: relu, preprocessor: "{}")) { error in
            XCTAssertTrue("\(error)".contains("hidden_act relu"), "\(error)")
        }
        let tanh = tower.replacingOccurrences(of: "}", with: #", "hidden_act": "gelu_pytorch_tanh"}"#)
        XCTAssertNoThrow(try load(vision: tanh, preprocessor: "{}"))
    }
}
