import Dispatch
import Foundation
import GemmaWeights

/// Ids of the tokens a Gemma 3 runtime treats specially, read from the vocabulary by
/// piece name.
public struct SpecialTokenIDs: Sendable, Equatable {
    public let bos: Int32
    public let eos: Int32
    public let pad: Int32
    public let unk: Int32
    public let startOfTurn: Int32
    public let endOfTurn: Int32
    /// `<start_of_image>` (boi, 255999 in Gemma 3).
    public let startOfImage: Int32
    /// `<end_of_image>` (eoi, 256000 in Gemma 3).
    public let endOfImage: Int32
    /// `<image_soft_token>` (262144 in Gemma 3): outside the SentencePiece vocabulary; its
    /// embedding slots are filled with the vision projector's output.
    public let imageSoftToken: Int32
}

/// Token ids with the byte range of the UTF-8 input each one covers.
public struct EncodedText: Sendable, Equatable {
    public let ids: [Int32]
    /// One range per id, in bytes of the input's UTF-8. A BOS added by `addBOS` has the
    /// empty range `0..<0`. Byte-fallback pieces of one character each report the range
    /// SentencePiece gives them.
    public let byteRanges: [Range<Int>]
}

/// Gemma's SentencePiece tokenizer.
///
/// Loads from a `tokenizer.model`, a Hugging Face checkpoint folder, or a GGUF file (whose
/// vocabulary is turned back into a SentencePiece model). Encoding runs libsentencepiece;
/// decoding is done here from each piece's bytes so that it and `StreamingDetokenizer`
/// agree byte for byte. Safe to share between threads.
public final class Tokenizer: Sendable {
    /// The SentencePiece `ModelProto` this tokenizer runs; `writeModel(to:)` saves it.
    public let serializedModelProto: [UInt8]
    /// Number of pieces in the SentencePiece model (262,144 for Gemma 3). Added tokens
    /// (`addedTokens`) have ids at or above it.
    public let vocabularySize: Int
    public let specialTokens: SpecialTokenIDs
    /// Tokens outside the SentencePiece vocabulary, by id (Gemma 3: `<image_soft_token>`).
    public var addedTokens: [Int32: String] { surfaces.added }

    private let processor: SentencePieceProcessor
    /// Control, unknown and user-defined pieces plus added tokens: the split for `parseSpecial`.
    private let specialMatcher: SpecialTokenMatcher
    /// User-defined pieces only. SentencePiece's BPE matches these greedily and never merges
    /// them with neighbours ("frozen" symbols), so splitting the text at them first gives
    /// identical ids; it keeps each SentencePiece call short, and its BPE slows down on long
    /// inputs (1 MB of text in one call runs at a third of the speed of 10 KB calls).
    private let userDefinedMatcher: SpecialTokenMatcher
    /// Decoded bytes of every piece and of the added tokens, and what `skipSpecial` drops:
    /// what `decode` and `StreamingDetokenizer` read (and the tokenizer service hands out).
    public let surfaces: TokenSurfaces
    private let pieceTypes: [PieceType]

    // MARK: Loading

    /// Loads a serialized SentencePiece `ModelProto`.
    /// - Parameter addedTokens: tokens beyond the model's pieces, by id (entries with ids
    ///   inside the vocabulary are ignored). If it has no
    ///   `<image_soft_token>` and the model has no such piece, one is added with id
    ///   `vocabularySize`, as Gemma 3 numbers it.
    public init(serializedModelProto: [UInt8], addedTokens: [Int32: String] = [:]) throws {
        let processor = try SentencePieceProcessor(serializedModel: serializedModelProto)
        self.processor = processor
        self.serializedModelProto = serializedModelProto
        let size = processor.vocabularySize
        vocabularySize = size

        var types: [PieceType] = []
        types.reserveCapacity(size)
        var skippable: [Bool] = []
        skippable.reserveCapacity(size)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(size * 8)
        var offsets: [Int32] = [0]
        offsets.reserveCapacity(size + 1)
        var specialTexts: [(text: String, id: Int32)] = []
        var userDefinedTexts: [(text: String, id: Int32)] = []
        for id in 0..<Int32(size) {
            guard let type = processor.type(id), let piece = processor.pieceBytes(id) else {
                throw TokenizerError.invalidModel("piece \(id) has no type or text")
            }
            types.append(type)
            skippable.append(type == .control || type == .unknown || type == .unused)
            switch type {
            case .byte:
                guard let value = Self.byteValue(ofBytePiece: piece) else {
                    throw TokenizerError.invalidModel("byte piece \(id) is not of the form <0xHH>")
                }
                bytes.append(value)
            case .normal, .userDefined:
                Self.appendUnescaped(piece, to: &bytes)
            case .control, .unknown, .unused:
                bytes.append(contentsOf: piece)
            }
            guard bytes.count < Int(Int32.max) else { throw TokenizerError.invalidModel("vocabulary text too large") }
            offsets.append(Int32(bytes.count))
            if type == .control || type == .unknown || type == .userDefined {
                specialTexts.append((String(decoding: piece, as: UTF8.self), id))
            }
            if type == .userDefined {
                userDefinedTexts.append((String(decoding: piece, as: UTF8.self), id))
            }
        }

        func pieceID(_ name: String) throws -> Int32 {
            guard let id = processor.id(ofPiece: name) else {
                throw TokenizerError.invalidModel("the vocabulary has no \(name) piece")
            }
            return id
        }
        // Entries inside the vocabulary restate pieces (Hugging Face configs list every
        // special piece); the model's own pieces govern those.
        var added = addedTokens.filter { $0.key >= Int32(size) }
        let imageSoftToken: Int32
        if let id = processor.id(ofPiece: "<image_soft_token>") {
            imageSoftToken = id
        } else if let id = added.first(where: { $0.value == "<image_soft_token>" })?.key {
            imageSoftToken = id
        } else {
            // Gemma 3 numbers it right after the vocabulary; if a checkpoint's own added
            // tokens took that id, it goes after them instead of replacing one.
            imageSoftToken = added[Int32(size)] == nil ? Int32(size) : (added.keys.max() ?? Int32(size)) + 1
            added[imageSoftToken] = "<image_soft_token>"
        }
        for (id, text) in added { specialTexts.append((text, id)) }

        let unknownID: Int32
        if let index = types.firstIndex(of: .unknown) { unknownID = Int32(index) } else { unknownID = try pieceID("<unk>") }
        specialTokens = SpecialTokenIDs(
            bos: try pieceID("<bos>"), eos: try pieceID("<eos>"), pad: try pieceID("<pad>"),
            unk: unknownID,
            startOfTurn: try pieceID("<start_of_turn>"), endOfTurn: try pieceID("<end_of_turn>"),
            startOfImage: try pieceID("<start_of_image>"), endOfImage: try pieceID("<end_of_image>"),
            imageSoftToken: imageSoftToken)
        pieceTypes = types
        surfaces = try TokenSurfaces(bytes: bytes, offsets: offsets, skippable: skippable, added: added)
        specialMatcher = SpecialTokenMatcher(tokens: specialTexts)
        userDefinedMatcher = SpecialTokenMatcher(tokens: userDefinedTexts)
    }

    /// Loads a SentencePiece `tokenizer.model` file.
    public convenience init(modelFile path: String) throws {
        let bytes: [UInt8]
        do {
            bytes = try Self.readFile(path)
        } catch {
            throw TokenizerError.invalidModel(String(describing: error))
        }
        do {
            try self.init(serializedModelProto: bytes)
        } catch TokenizerError.invalidModel(let message) {
            throw TokenizerError.invalidModel("\(path): \(message)")
        }
    }

    /// Loads the tokenizer of a Hugging Face checkpoint folder: its `tokenizer.model`, plus
    /// added tokens beyond the vocabulary listed in `tokenizer_config.json`.
    public convenience init(huggingFaceDirectory directory: String) throws {
        let modelPath = (directory as NSString).appendingPathComponent("tokenizer.model")
        guard FileManager.default.fileExists(atPath: modelPath) else {
            throw TokenizerError.invalidModel("\(directory): no tokenizer.model (folders with only tokenizer.json are not supported)")
        }
        let modelBytes: [UInt8]
        do {
            modelBytes = try Self.readFile(modelPath)
        } catch {
            throw TokenizerError.invalidModel(String(describing: error))
        }
        let configPath = (directory as NSString).appendingPathComponent("tokenizer_config.json")
        let added = try Self.addedTokens(fromConfig: configPath)
        do {
            try self.init(serializedModelProto: modelBytes, addedTokens: added)
        } catch TokenizerError.invalidModel(let message) {
            throw TokenizerError.invalidModel("\(modelPath): \(message)")
        }
    }

    /// Builds the tokenizer from the vocabulary in a GGUF file (`tokenizer.ggml.*`).
    public convenience init(gguf: GGUFFile) throws {
        do {
            try self.init(serializedModelProto: SentencePieceModelBuilder.serialize(gguf: gguf))
        } catch TokenizerError.invalidModel(let message) where !message.hasPrefix(gguf.file.path) {
            throw TokenizerError.invalidModel("\(gguf.file.path): \(message)")
        }
    }

    /// Loads whatever `path` names: a folder (Hugging Face layout), a GGUF file (by its
    /// magic), or otherwise a `tokenizer.model`.
    public static func load(path: String) throws -> Tokenizer {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TokenizerError.invalidModel("\(path): no such file or directory")
        }
        if isDirectory.boolValue { return try Tokenizer(huggingFaceDirectory: path) }
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw TokenizerError.invalidModel(String(describing: error)) }
        if file.bytes.starts(with: "GGUF".utf8) {
            do {
                return try Tokenizer(gguf: try GGUFFile(mappedFile: file))
            } catch let error as WeightsError {
                throw TokenizerError.invalidModel(error.description)
            }
        }
        return try Tokenizer(modelFile: path)
    }

    /// Writes `serializedModelProto` as a `tokenizer.model` file (atomically).
    public func writeModel(to path: String) throws {
        try Data(serializedModelProto).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// The whole file, copied out of the mapping (which must outlive the copy).
    private static func readFile(_ path: String) throws -> [UInt8] {
        let file = try MappedFile(path: path)
        return withExtendedLifetime(file) { Array(file.bytes) }
    }

    private static func addedTokens(fromConfig path: String) throws -> [Int32: String] {
        guard let data = FileManager.default.contents(atPath: path) else { return [:] }
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TokenizerError.invalidModel("\(path): not a JSON object")
        }
        var result: [Int32: String] = [:]
        for (key, value) in root["added_tokens_decoder"] as? [String: Any] ?? [:] {
            guard let id = Int32(key), let content = (value as? [String: Any])?["content"] as? String else {
                throw TokenizerError.invalidModel("\(path): malformed added_tokens_decoder entry \(key)")
            }
            result[id] = content
        }
        return result
    }

    private static func byteValue(ofBytePiece piece: UnsafeRawBufferPointer) -> UInt8? {
        // "<0xHH>"
        guard piece.count == 6, piece[0] == UInt8(ascii: "<"), piece[1] == UInt8(ascii: "0"),
              piece[2] == UInt8(ascii: "x"), piece[5] == UInt8(ascii: ">")
        else { return nil }
        return UInt8(String(decoding: piece[3..<5], as: UTF8.self), radix: 16)
    }

    /// Appends a piece's text with U+2581 (SentencePiece's escaped space) turned back into " ".
    private static func appendUnescaped(_ piece: UnsafeRawBufferPointer, to bytes: inout [UInt8]) {
        var index = 0
        while index < piece.count {
            if index + 2 < piece.count, piece[index] == 0xE2, piece[index + 1] == 0x96, piece[index + 2] == 0x81 {
                bytes.append(0x20)
                index += 3
            } else {
                bytes.append(piece[index])
                index += 1
            }
        }
    }

    // MARK: Vocabulary

    /// Whether `id` is a piece or an added token.
    public func isValid(_ id: Int32) -> Bool { surfaces.isValid(id) }

    /// The piece text of `id` as stored in the model (spaces appear as U+2581).
    public func piece(for id: Int32) throws -> String {
        if let added = addedTokens[id] { return added }
        guard let bytes = processor.pieceBytes(id) else { throw outOfRange(id) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The id of a piece or added token, nil if there is none.
    public func id(forPiece piece: String) -> Int32? {
        processor.id(ofPiece: piece) ?? addedTokens.first(where: { $0.value == piece })?.key
    }

    /// The SentencePiece type of a piece; added tokens count as control tokens.
    public func pieceType(of id: Int32) throws -> PieceType {
        if addedTokens[id] != nil { return .control }
        guard id >= 0, Int(id) < vocabularySize else { throw outOfRange(id) }
        return pieceTypes[Int(id)]
    }

    /// The piece's score in the model (BPE merge priority).
    public func score(of id: Int32) throws -> Float {
        guard id >= 0, Int(id) < vocabularySize else { throw outOfRange(id) }
        return processor.score(id)
    }

    private func outOfRange(_ id: Int32) -> TokenizerError {
        .idOutOfRange(id: id, vocabularySize: vocabularySize)
    }

    // MARK: Encoding

    /// Encodes text.
    /// - Parameters:
    ///   - addBOS: prepend `<bos>` (Gemma expects it at the start of every sequence).
    ///   - parseSpecial: turn control and user-defined token strings written in the text
    ///     (`<start_of_turn>`, `<eos>`, `<start_of_image>`, `<image_soft_token>` …) into
    ///     their ids, as Hugging Face tokenizers do; when false they are encoded as plain text.
    public func encode(_ text: String, addBOS: Bool, parseSpecial: Bool) throws -> [Int32] {
        var text = text
        return try text.withUTF8 { try encodeValid(UnsafeRawBufferPointer($0), addBOS: addBOS, parseSpecial: parseSpecial, withOffsets: false).ids }
    }

    /// Encodes UTF-8 bytes; throws `TokenizerError.invalidUTF8` for malformed input.
    public func encode(utf8 bytes: [UInt8], addBOS: Bool, parseSpecial: Bool) throws -> [Int32] {
        try bytes.withUnsafeBytes { buffer in
            if let offset = UTF8Validation.firstInvalidOffset(buffer) { throw TokenizerError.invalidUTF8(offset: offset) }
            return try encodeValid(buffer, addBOS: addBOS, parseSpecial: parseSpecial, withOffsets: false).ids
        }
    }

    /// Encodes text and reports the UTF-8 byte range each token covers.
    public func encodeWithOffsets(_ text: String, addBOS: Bool, parseSpecial: Bool) throws -> EncodedText {
        var text = text
        return try text.withUTF8 { try encodeValid(UnsafeRawBufferPointer($0), addBOS: addBOS, parseSpecial: parseSpecial, withOffsets: true) }
    }

    /// `encodeWithOffsets` for UTF-8 bytes; throws `TokenizerError.invalidUTF8` for malformed input.
    public func encodeWithOffsets(utf8 bytes: [UInt8], addBOS: Bool, parseSpecial: Bool) throws -> EncodedText {
        try bytes.withUnsafeBytes { buffer in
            if let offset = UTF8Validation.firstInvalidOffset(buffer) { throw TokenizerError.invalidUTF8(offset: offset) }
            return try encodeValid(buffer, addBOS: addBOS, parseSpecial: parseSpecial, withOffsets: true)
        }
    }

    /// Encodes several texts on all cores; results are in input order. Throws the first
    /// error (by input order) if any text fails.
    public func encodeBatch(_ texts: [String], addBOS: Bool, parseSpecial: Bool) throws -> [[Int32]] {
        let results = ResultSlots<[Int32]>(count: texts.count)
        DispatchQueue.concurrentPerform(iterations: texts.count) { index in
            results.store(Result { try self.encode(texts[index], addBOS: addBOS, parseSpecial: parseSpecial) }, at: index)
        }
        return try results.collect()
    }

    private func encodeValid(_ text: UnsafeRawBufferPointer, addBOS: Bool, parseSpecial: Bool, withOffsets: Bool) throws -> EncodedText {
        var ids: [Int32] = []
        var ranges: [Range<Int>] = []
        if addBOS {
            ids.append(specialTokens.bos)
            if withOffsets { ranges.append(0..<0) }
        }
        func encodeSegment(_ range: Range<Int>) throws {
            guard !range.isEmpty else { return }
            let piece = try processor.encode(UnsafeRawBufferPointer(rebasing: text[range]), withOffsets: withOffsets)
            ids.append(contentsOf: piece.ids)
            if withOffsets {
                ranges.append(contentsOf: piece.byteRanges.map { ($0.lowerBound + range.lowerBound)..<($0.upperBound + range.lowerBound) })
            }
        }
        let matcher = parseSpecial ? specialMatcher : userDefinedMatcher
        var segmentStart = 0
        var position = 0
        while position < text.count {
            if let match = matcher.longestMatch(in: text, at: position) {
                try encodeSegment(segmentStart..<position)
                ids.append(match.id)
                if withOffsets { ranges.append(position..<(position + match.length)) }
                position += match.length
                segmentStart = position
            } else {
                position += 1
            }
        }
        try encodeSegment(segmentStart..<text.count)
        return EncodedText(ids: ids, byteRanges: ranges)
    }

    // MARK: Decoding

    /// Decodes ids to text. Control tokens (and `<unk>`, added tokens) appear as their piece
    /// text unless `skipSpecial`; byte-fallback pieces are joined into characters, and bytes
    /// that form no valid UTF-8 become U+FFFD.
    /// - Throws: `TokenizerError.idOutOfRange` for an id that is neither a piece nor an added token.
    public func decode(_ ids: [Int32], skipSpecial: Bool) throws -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for id in ids { try surfaces.append(id, skipSpecial: skipSpecial, to: &bytes) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// libsentencepiece's own decoding, for comparison: control pieces vanish and `<unk>`
    /// becomes " ⁇ ".
    public func sentencePieceDecode(_ ids: [Int32]) throws -> String {
        for id in ids where id < 0 || Int(id) >= vocabularySize { throw outOfRange(id) }
        return String(decoding: try processor.decode(ids), as: UTF8.self)
    }

}

/// Per-index result storage written from `concurrentPerform`; each index is written by
/// exactly one iteration, and reading happens after all iterations finished.
private final class ResultSlots<Value>: @unchecked Sendable {
    private var slots: [Result<Value, Error>?]
    private let lock = NSLock()

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func store(_ result: Result<Value, Error>, at index: Int) {
        lock.lock()
        slots[index] = result
        lock.unlock()
    }

    func collect() throws -> [Value] {
        try slots.map { try $0!.get() }
    }
}
