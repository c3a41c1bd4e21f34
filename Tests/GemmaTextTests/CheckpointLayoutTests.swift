import Foundation
import XCTest
import GemmaText

/// The third safetensors naming (`model.language_model.…`, current transformers multimodal)
/// and incomplete checkpoints, made by rewriting names in the committed fixture's header.
final class CheckpointLayoutTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("layout-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    /// Copies the released-layout fixture with `old` replaced by `new` (same length) in the
    /// safetensors header, so data offsets stay valid.
    func rewrittenFixture(replacing old: String, with new: String) throws -> String {
        precondition(old.utf8.count == new.utf8.count)
        let source = textFixtures.appendingPathComponent("mqa_released")
        var bytes = [UInt8](try Data(contentsOf: source.appendingPathComponent("model.safetensors")))
        let headerLength = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        let header = String(decoding: bytes[8..<(8 + headerLength)], as: UTF8.self).replacingOccurrences(of: old, with: new)
        bytes.replaceSubrange(8..<(8 + headerLength), with: Array(header.utf8))
        try Data(bytes).write(to: folder.appendingPathComponent("model.safetensors"))
        try FileManager.default.copyItem(at: source.appendingPathComponent("config.json"),
                                         to: folder.appendingPathComponent("config.json"))
        return folder.path
    }

    func testCurrentMultimodalNamingGivesTheSameLogits() throws {
        let released = try TextModel(path: textFixtures.appendingPathComponent("mqa_released").path, threads: 1)
        let path = try rewrittenFixture(replacing: "language_model.model.", with: "model.language_model.")
        let current = try TextModel(path: path, threads: 1)
        let tokens: [Int32] = [2, 10, 20, 30, 40, 50, 60, 70, 80]
        XCTAssertEqual(try current.prefill(tokens: tokens, cache: current.makeCache(maxContext: 16)),
                       try released.prefill(tokens: tokens, cache: released.makeCache(maxContext: 16)))
    }

    func testMissingTensorThrows() throws {
        let path = try rewrittenFixture(replacing: "layers.3.mlp.up_proj", with: "layers.3.mlp.xx_proj")
        XCTAssertThrowsError(try TextModel(path: path, threads: 1)) { error in
            XCTAssertTrue("\(error)".contains("up_proj"), "\(error)")
        }
    }

    func testMissingFilesThrow() {
        XCTAssertThrowsError(try TextModel(path: folder.appendingPathComponent("absent.gguf").path, threads: 1))
        XCTAssertThrowsError(try TextModel(path: folder.path, threads: 1))  // no config.json
    }
}
