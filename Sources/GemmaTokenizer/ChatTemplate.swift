/// One message of a conversation.
public struct ChatMessage: Sendable, Equatable {
    public enum Role: String, Sendable {
        case system, user, model
        /// Rendered as `model`, as Gemma's template does.
        case assistant
    }

    public enum Part: Sendable, Equatable {
        case text(String)
        case image
    }

    public var role: Role
    public var content: [Part]

    public init(role: Role, content: [Part]) {
        self.role = role
        self.content = content
    }

    public init(role: Role, text: String) {
        self.init(role: role, content: [.text(text)])
    }
}

/// Renders conversations the way Gemma 3's Hugging Face chat template (the Jinja template in
/// google/gemma-3-*-it `tokenizer_config.json`) followed by `Gemma3Processor`'s image
/// expansion does:
///
///     <bos><start_of_turn>user\n{system}\n\n{text}<end_of_turn>\n<start_of_turn>model\n
///
/// - A leading system message is folded into the first turn (its text, then a blank line).
/// - Roles must alternate user, model, user, … after it; `assistant` is written `model`.
/// - Each text part is trimmed of surrounding whitespace (Jinja's `trim`, i.e. Python's
///   `str.strip()`); parts are joined without separators.
/// - Each image becomes `\n\n<start_of_image>` + N × `<image_soft_token>` +
///   `<end_of_image>\n\n`; with Pan & Scan crops, the original image's sequence and one per
///   crop inside the processor's sentence ("Here is the original image … and here are some
///   crops to help you see better …").
public struct ChatTemplate: Sendable {
    public enum Mode: Sendable {
        /// Instruction-tuned models: turns with roles.
        case instruct
        /// Pretrained models: `<bos>` followed by the content as is, no roles, no trimming.
        case pretrained
    }

    public var mode: Mode
    /// Soft tokens per image (`mm_tokens_per_image`; 256 for Gemma 3).
    public var imageTokenCount: Int

    public static let bos = "<bos>"
    public static let startOfTurn = "<start_of_turn>"
    public static let endOfTurn = "<end_of_turn>"
    public static let startOfImage = "<start_of_image>"
    public static let endOfImage = "<end_of_image>"
    public static let imageSoftToken = "<image_soft_token>"

    public init(mode: Mode = .instruct, imageTokenCount: Int = 256) {
        self.mode = mode
        self.imageTokenCount = imageTokenCount
    }

    /// The text that stands for one image with `cropCount` Pan & Scan crops (0: none).
    public func imageSequence(cropCount: Int = 0) -> String {
        let single = "\n\n" + Self.startOfImage
            + String(repeating: Self.imageSoftToken, count: imageTokenCount)
            + Self.endOfImage + "\n\n"
        guard cropCount > 0 else { return single }
        return "Here is the original image \(single) and here are some crops to help you see better "
            + Array(repeating: single, count: cropCount).joined(separator: " ")
    }

    /// Renders a conversation to prompt text.
    /// - Parameters:
    ///   - addGenerationPrompt: end with `<start_of_turn>model\n` so the model answers.
    ///     Ignored in `.pretrained` mode.
    ///   - imageCropCounts: Pan & Scan crops of each image, in order of appearance; images
    ///     past the end of the array have none.
    /// - Throws: `TokenizerError.invalidConversation` for an empty conversation, roles that
    ///   do not alternate, or a system message that does not start with text.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true, imageCropCounts: [Int] = []) throws -> String {
        var imageIndex = 0
        func image() -> String {
            defer { imageIndex += 1 }
            return imageSequence(cropCount: imageIndex < imageCropCounts.count ? imageCropCounts[imageIndex] : 0)
        }

        var output = Self.bos
        if mode == .pretrained {
            for message in messages {
                for part in message.content {
                    switch part {
                    case .text(let text): output += text
                    case .image: output += image()
                    }
                }
            }
            return output
        }

        guard let first = messages.first else {
            throw TokenizerError.invalidConversation("no messages")
        }
        var firstUserPrefix = ""
        var turns = messages[...]
        if first.role == .system {
            // The template takes the system text untrimmed, and only the first part of a
            // multi-part system message.
            guard case .text(let systemText)? = first.content.first else {
                throw TokenizerError.invalidConversation("a system message must start with text")
            }
            firstUserPrefix = systemText + "\n\n"
            turns = messages.dropFirst()
        }
        for (index, message) in turns.enumerated() {
            guard (message.role == .user) == (index % 2 == 0) else {
                throw TokenizerError.invalidConversation("Conversation roles must alternate user/assistant/user/assistant/...")
            }
            let role = message.role == .assistant ? ChatMessage.Role.model.rawValue : message.role.rawValue
            output += Self.startOfTurn + role + "\n" + (index == 0 ? firstUserPrefix : "")
            for part in message.content {
                switch part {
                case .text(let text): output += Self.pythonStrip(text)
                case .image: output += image()
                }
            }
            output += Self.endOfTurn + "\n"
        }
        if addGenerationPrompt {
            output += Self.startOfTurn + "model\n"
        }
        return output
    }

    /// Renders and encodes with special-token parsing, as `apply_chat_template(tokenize=True)`
    /// does (the rendered text already holds `<bos>`, so none is added).
    public func renderIDs(_ messages: [ChatMessage], tokenizer: Tokenizer, addGenerationPrompt: Bool = true, imageCropCounts: [Int] = []) throws -> [Int32] {
        let text = try render(messages, addGenerationPrompt: addGenerationPrompt, imageCropCounts: imageCropCounts)
        return try tokenizer.encode(text, addBOS: false, parseSpecial: true)
    }

    /// Python's `str.strip()` with no arguments: removes leading and trailing characters
    /// for which `str.isspace()` is true (a slightly different set from Swift's
    /// `Character.isWhitespace`, e.g. it includes U+001C…U+001F).
    static func pythonStrip(_ text: String) -> String {
        let scalars = text.unicodeScalars
        guard let start = scalars.firstIndex(where: { !isPythonSpace($0) }) else { return "" }
        let end = scalars.lastIndex(where: { !isPythonSpace($0) })!
        return String(scalars[start...end])
    }

    static func isPythonSpace(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            true
        default:
            false
        }
    }
}
