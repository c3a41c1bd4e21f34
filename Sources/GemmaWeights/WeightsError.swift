/// A failure to open or interpret a weights file.
///
/// `description` always names the file, so a message that reaches a log or a client says
/// which file is at fault without extra context.
public struct WeightsError: Error, CustomStringConvertible, Sendable {
    /// The file the error is about.
    public let path: String
    /// What is wrong, without the path.
    public let message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}
