import GemmaWeights

/// Piece types as sentencepiece_model.proto numbers `ModelProto.SentencePiece.Type`.
public enum PieceType: Int32, Sendable {
    case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

/// One vocabulary entry of a SentencePiece model.
public struct VocabularyPiece: Sendable, Equatable {
    public var piece: String
    public var score: Float
    public var type: PieceType

    public init(piece: String, score: Float, type: PieceType) {
        self.piece = piece
        self.score = score
        self.type = type
    }
}

/// Builds a serialized SentencePiece `ModelProto` for a Gemma-style BPE vocabulary:
/// byte fallback, identity normalizer, no dummy prefix, digits split, whitespace kept
/// (escaped to U+2581 and allowed as whole pieces). These are the settings of Google's
/// Gemma 3 `tokenizer.model`; GGUF keeps only the vocabulary, so they are restated here.
enum SentencePieceModelBuilder {
    // Field numbers from sentencepiece_model.proto.
    private enum ModelProtoField { static let pieces = 1, trainerSpec = 2, normalizerSpec = 3 }
    private enum PieceField { static let piece = 1, score = 2, type = 3 }
    private enum TrainerField {
        static let modelType = 3, vocabSize = 4, splitDigits = 25, allowWhitespaceOnlyPieces = 26
        static let byteFallback = 35, unkID = 40, bosID = 41, eosID = 42, padID = 43
        static let unkPiece = 45, bosPiece = 46, eosPiece = 47, padPiece = 48
    }
    private enum NormalizerField {
        static let name = 1, addDummyPrefix = 3, removeExtraWhitespaces = 4, escapeWhitespaces = 5
    }
    private static let bpeModelType: UInt64 = 2

    struct SpecialPieceIDs {
        var unk: Int32, bos: Int32, eos: Int32, pad: Int32
    }

    static func serialize(pieces: [VocabularyPiece], special: SpecialPieceIDs) -> [UInt8] {
        var model = ProtobufWriter()
        for entry in pieces {
            var piece = ProtobufWriter()
            piece.writeString(PieceField.piece, entry.piece)
            piece.writeFloat(PieceField.score, entry.score)
            piece.writeVarint(PieceField.type, UInt64(entry.type.rawValue))
            model.writeMessage(ModelProtoField.pieces, piece)
        }

        var trainer = ProtobufWriter()
        trainer.writeVarint(TrainerField.modelType, bpeModelType)
        trainer.writeInt32(TrainerField.vocabSize, Int32(pieces.count))
        trainer.writeBool(TrainerField.splitDigits, true)
        trainer.writeBool(TrainerField.allowWhitespaceOnlyPieces, true)
        trainer.writeBool(TrainerField.byteFallback, true)
        trainer.writeInt32(TrainerField.unkID, special.unk)
        trainer.writeInt32(TrainerField.bosID, special.bos)
        trainer.writeInt32(TrainerField.eosID, special.eos)
        trainer.writeInt32(TrainerField.padID, special.pad)
        // SentencePiece resolves bos_id()/eos_id() through these names, not the ids above.
        func name(_ id: Int32) -> String { pieces.indices.contains(Int(id)) ? pieces[Int(id)].piece : "" }
        trainer.writeString(TrainerField.unkPiece, name(special.unk))
        trainer.writeString(TrainerField.bosPiece, name(special.bos))
        trainer.writeString(TrainerField.eosPiece, name(special.eos))
        trainer.writeString(TrainerField.padPiece, name(special.pad))
        model.writeMessage(ModelProtoField.trainerSpec, trainer)

        var normalizer = ProtobufWriter()
        normalizer.writeString(NormalizerField.name, "identity")
        normalizer.writeBool(NormalizerField.addDummyPrefix, false)
        normalizer.writeBool(NormalizerField.removeExtraWhitespaces, false)
        normalizer.writeBool(NormalizerField.escapeWhitespaces, true)
        model.writeMessage(ModelProtoField.normalizerSpec, normalizer)
        return model.bytes
    }

    /// Reads the vocabulary llama.cpp stores in a GGUF (`tokenizer.ggml.*`) and serializes
    /// the equivalent `ModelProto`.
    /// - Throws: `TokenizerError.invalidModel` if the arrays are missing, inconsistent or
    ///   not a SentencePiece ("llama") vocabulary.
    static func serialize(gguf: GGUFFile) throws -> [UInt8] {
        let source = gguf.file.path
        func invalid(_ message: String) -> TokenizerError { .invalidModel("\(source): \(message)") }

        guard let model = gguf.string("tokenizer.ggml.model") else {
            throw invalid("no tokenizer.ggml.model key: the file carries no tokenizer")
        }
        guard model == "llama" else {
            throw invalid("tokenizer.ggml.model is \"\(model)\"; only SentencePiece (\"llama\") vocabularies are supported")
        }
        guard let tokens = gguf.stringArray("tokenizer.ggml.tokens"), !tokens.isEmpty else {
            throw invalid("tokenizer.ggml.tokens is missing or not an array of strings")
        }
        guard let scores = gguf.floatArray("tokenizer.ggml.scores"), scores.count == tokens.count else {
            throw invalid("tokenizer.ggml.scores is missing or its length differs from the token count \(tokens.count)")
        }
        guard let llamaTypes = gguf.intArray("tokenizer.ggml.token_type"), llamaTypes.count == tokens.count else {
            throw invalid("tokenizer.ggml.token_type is missing or its length differs from the token count \(tokens.count)")
        }
        guard tokens.count <= Int(Int32.max) else { throw invalid("too many tokens") }

        func specialID(_ key: String, piece: String) throws -> Int32 {
            if let id = gguf.int(key) {
                guard tokens.indices.contains(id) else { throw invalid("\(key) \(id) is outside the vocabulary") }
                return Int32(id)
            }
            guard let index = tokens.firstIndex(of: piece) else {
                throw invalid("no \(key) and no \(piece) piece")
            }
            return Int32(index)
        }
        let special = SpecialPieceIDs(
            unk: try specialID("tokenizer.ggml.unknown_token_id", piece: "<unk>"),
            bos: try specialID("tokenizer.ggml.bos_token_id", piece: "<bos>"),
            eos: try specialID("tokenizer.ggml.eos_token_id", piece: "<eos>"),
            pad: try specialID("tokenizer.ggml.padding_token_id", piece: "<pad>"))

        var pieces: [VocabularyPiece] = []
        pieces.reserveCapacity(tokens.count)
        for index in tokens.indices {
            var type: PieceType
            switch llamaTypes[index] {
            case 0, 1: type = .normal       // llama.cpp: 0 undefined, 1 normal
            case 2: type = .unknown
            case 3: type = .control
            case 4: type = .userDefined
            case 5: type = .unused
            case 6: type = .byte
            default: throw invalid("token \(index) has unknown token type \(llamaTypes[index])")
            }
            // SentencePiece needs exactly one unknown piece; llama.cpp's Gemma conversion
            // files <unk> as a control token.
            if index == Int(special.unk) { type = .unknown } else if type == .unknown { type = .control }
            var piece = tokens[index]
            // llama.cpp writes the whitespace-run user-defined pieces with real spaces;
            // SentencePiece matches them after escaping spaces to U+2581, so restore that.
            if type == .userDefined, !piece.isEmpty, piece.utf8.allSatisfy({ $0 == 0x20 }) {
                piece = String(repeating: "\u{2581}", count: piece.utf8.count)
            }
            pieces.append(VocabularyPiece(piece: piece, score: scores[index], type: type))
        }
        return serialize(pieces: pieces, special: special)
    }
}
