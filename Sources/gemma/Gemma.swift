import ArgumentParser
import Foundation
import GemmaAPI
import GemmaRPC

@main
struct Gemma: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemma",
        abstract: "Client of the Gemma 3 services: health, tokenization, generation, scoring, images, benchmarks.",
        subcommands: [Health.self, Info.self, Tokenize.self, Detokenize.self, ChatTemplateCommand.self,
                      Generate.self, Chat.self, Score.self, EmbedImage.self, Bench.self])
}

/// Which service a command talks to, and where each one is.
struct ServiceAddresses: ParsableArguments {
    @Option(help: "Tokenizer service address (unix:/path or HOST:PORT). Environment: GEMMA_TOKENIZER.")
    var tokenizer: String?
    @Option(help: "Vision service address. Environment: GEMMA_VISION.")
    var vision: String?
    @Option(help: "Decoder service address. Environment: GEMMA_DECODER.")
    var decoder: String?
    @Option(help: "Seconds to wait for an answer.")
    var timeout: Double = 600

    static let defaults: [ServiceKind: String] = [
        .tokenizer: "unix:/run/gemma/tokenizer.sock",
        .vision: "unix:/run/gemma/vision.sock",
        .decoder: "unix:/run/gemma/decoder.sock",
    ]

    func address(of kind: ServiceKind) -> String {
        let flag: String? = switch kind {
        case .tokenizer: tokenizer
        case .vision: vision
        case .decoder: decoder
        }
        return flag ?? ProcessInfo.processInfo.environment[kind.environmentVariable] ?? Self.defaults[kind]!
    }

    func client(_ kind: ServiceKind) throws -> RPCClient { try RPCClient(address(of: kind)) }

    /// The services named by flags, or `all` when none is.
    var selected: [ServiceKind] {
        let named = ServiceKind.allCases.filter { kind in
            switch kind {
            case .tokenizer: tokenizer != nil
            case .vision: vision != nil
            case .decoder: decoder != nil
            }
        }
        return named.isEmpty ? ServiceKind.allCases : named
    }

    var callTimeout: Duration { .milliseconds(Int64(timeout * 1000)) }
}

enum ServiceKind: String, CaseIterable {
    case tokenizer, vision, decoder

    var serviceName: String {
        switch self {
        case .tokenizer: "gemma.v1.Tokenizer"
        case .vision: "gemma.v1.VisionEncoder"
        case .decoder: "gemma.v1.Decoder"
        }
    }

    var environmentVariable: String { "GEMMA_\(rawValue.uppercased())" }

    func method(_ name: String) -> String { "/\(serviceName)/\(name)" }
}

/// Prints to standard error and exits with a status that says which kind of failure it was.
func fail(_ message: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("gemma: \(message)\n".utf8))
    exit(code)
}

struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Exit 0 only when every named service (all three by default) answers SERVING.")

    @OptionGroup var services: ServiceAddresses

    func run() async throws {
        var healthy = true
        for kind in services.selected {
            let address = services.address(of: kind)
            do {
                let response = try await services.client(kind).unary(
                    kind.method("Health"), V1.HealthRequest(), as: V1.HealthResponse.self, timeout: services.callTimeout)
                let serving = response.status == .serving
                healthy = healthy && serving
                print("\(kind.rawValue) \(address): \(serving ? "SERVING" : "NOT_SERVING")")
            } catch {
                healthy = false
                print("\(kind.rawValue) \(address): \(error)")
            }
        }
        if !healthy { throw ExitCode(1) }
    }
}

struct Info: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print what each named service holds.")

    @OptionGroup var services: ServiceAddresses

    func run() async throws {
        var ok = true
        for kind in services.selected {
            do {
                let client = try services.client(kind)
                let method = kind.method("Info")
                let timeout = services.callTimeout
                let text: String = switch kind {
                case .tokenizer: describe(try await client.unary(method, V1.InfoRequest(), as: V1.TokenizerInfo.self, timeout: timeout))
                case .vision: describe(try await client.unary(method, V1.InfoRequest(), as: V1.VisionInfo.self, timeout: timeout))
                case .decoder: describe(try await client.unary(method, V1.InfoRequest(), as: V1.DecoderInfo.self, timeout: timeout))
                }
                print("\(kind.rawValue) \(services.address(of: kind)):\n\(text)")
            } catch {
                ok = false
                print("\(kind.rawValue) \(services.address(of: kind)): \(error)")
            }
        }
        if !ok { throw ExitCode(1) }
    }
}

/// "  field: value" lines of a message, by reflection.
func describe(_ value: Any, indent: String = "  ") -> String {
    Mirror(reflecting: value).children.compactMap { child -> String? in
        guard let label = child.label else { return nil }
        let inner = Mirror(reflecting: child.value)
        if inner.displayStyle == .optional {
            guard let wrapped = inner.children.first?.value else { return nil }
            return "\(indent)\(label):\n" + describe(wrapped, indent: indent + "  ")
        }
        return "\(indent)\(label): \(child.value)"
    }.joined(separator: "\n")
}
