/// The version every binary reports (`Info`, `--version`).
public let gemmaVersion = "0.1.0"
