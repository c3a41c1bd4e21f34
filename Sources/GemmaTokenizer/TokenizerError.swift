/// Failures of loading a tokenizer, encoding or decoding.
public enum TokenizerError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The model file or vocabulary could not be read or is inconsistent.
    case invalidModel(String)
    /// Input bytes are not valid UTF-8; `offset` is the first byte of the offending sequence.
    case invalidUTF8(offset: Int)
    /// An id is not in the vocabulary (nor one of the tokenizer's added tokens).
    case idOutOfRange(id: Int32, vocabularySize: Int)
    /// SentencePiece reported an error.
    case sentencePiece(String)
    /// A chat conversation cannot be rendered with the Gemma template.
    case invalidConversation(String)

    public var description: String {
        switch self {
        case .invalidModel(let message): "invalid tokenizer model: \(message)"
        case .invalidUTF8(let offset): "input is not valid UTF-8 (at byte \(offset))"
        case .idOutOfRange(let id, let size): "token id \(id) is outside the vocabulary (0..<\(size))"
        case .sentencePiece(let message): "sentencepiece: \(message)"
        case .invalidConversation(let message): "invalid conversation: \(message)"
        }
    }
}
