import GemmaAPI
import GemmaRPC
import GemmaTokenizer

/// The tokenizer service's detokenization table (its `Surfaces` method), fetched once per
/// decoder process and shared by every stream, so that a streamed token's text costs no call:
/// a tokenizer round trip per token took ~4% off decode through the services on two cores.
/// (A tokenizer service restarted on another vocabulary needs the decoder restarted too, as
/// its model's vocabulary would.)
actor SurfaceTable {
    /// Largest vocabulary and most added tokens accepted from a tokenizer service.
    static let maxVocabulary = 1 << 22, maxAddedTokens = 4096

    private let client: RPCClient
    private var table: TokenSurfaces?
    private var download: Task<TokenSurfaces, any Error>?
    /// A tokenizer service without `Surfaces` is not asked again until then.
    private var unsupportedUntil: ContinuousClock.Instant?

    init(client: RPCClient) {
        self.client = client
    }

    /// The table; a failed fetch is not remembered (the next stream asks again), except that a
    /// service without the method (UNIMPLEMENTED) is taken at its word for a minute.
    func get() async throws -> TokenSurfaces {
        if let table { return table }
        if let until = unsupportedUntil, ContinuousClock.now < until {
            throw RPCError(.unimplemented, "the tokenizer service has no Surfaces method")
        }
        let download = self.download ?? Task { [client] in try await Self.fetch(client) }
        self.download = download
        do {
            let table = try await download.value
            self.table = table
            return table
        } catch {
            // Another stream may have started a newer download meanwhile.
            if self.download == download { self.download = nil }
            if let error = error as? RPCError, error.code == .unimplemented { unsupportedUntil = .now + .seconds(60) }
            throw error
        }
    }

    /// Reads every page and checks they fit together (consecutive ids, as many lengths and
    /// flags as ids, lengths adding up to the bytes, all the vocabulary).
    static func fetch(_ client: RPCClient) async throws -> TokenSurfaces {
        var bytes: [UInt8] = [], offsets: [Int32] = [0], skippable: [Bool] = [], added: [Int32: String] = [:]
        var vocabulary: UInt32?
        func malformed(_ what: String) -> RPCError { RPCError(.internal, "bad Surfaces page: \(what)") }
        for try await page in client.serverStreaming("/gemma.v1.Tokenizer/Surfaces", V1.SurfacesRequest(),
                                                     as: V1.SurfacesPage.self, timeout: .seconds(30)) {
            guard vocabulary == nil || vocabulary == page.vocabularySize else { throw malformed("vocabulary size changed") }
            guard page.vocabularySize <= maxVocabulary else { throw malformed("a vocabulary of \(page.vocabularySize) ids") }
            vocabulary = page.vocabularySize
            guard page.firstID == skippable.count else { throw malformed("ids from \(page.firstID), expected \(skippable.count)") }
            guard page.lengths.count == page.skippable.count,
                  page.lengths.reduce(0, { $0 + Int($1) }) == page.bytes.count,
                  skippable.count + page.lengths.count <= Int(page.vocabularySize) else {
                throw malformed("lengths, flags and bytes of ids from \(page.firstID) do not fit")
            }
            guard bytes.count + page.bytes.count < Int(Int32.max) else { throw malformed("too many bytes") }
            for length in page.lengths { offsets.append(offsets.last! + Int32(length)) }
            bytes += page.bytes
            skippable += page.skippable.map { $0 != 0 }
            for token in page.added { added[token.id] = token.text }
            guard added.count <= maxAddedTokens else { throw malformed("over \(maxAddedTokens) added tokens") }
        }
        guard let vocabulary, skippable.count == Int(vocabulary) else {
            throw malformed("\(skippable.count) ids for a vocabulary of \(vocabulary ?? 0)")
        }
        do {
            return try TokenSurfaces(bytes: bytes, offsets: offsets, skippable: skippable, added: added)
        } catch {
            throw malformed("\(error)")
        }
    }
}

/// A stream's detokenizer: from the shared table where the tokenizer service hands it out;
/// one DecodeIncremental call per token with a tokenizer service that does not (an older
/// one); none when the prompt came as ids and no tokenizer service can be reached (the
/// stream then carries ids without text).
enum StreamDetokenizer {
    case table(StreamingDetokenizer)
    case remote(RemoteDetokenizer)
    case none

    static func start(table: SurfaceTable, client: RPCClient, optional: Bool) async throws -> StreamDetokenizer {
        do {
            return .table(StreamingDetokenizer(surfaces: try await table.get(), skipSpecial: true))
        } catch let error as RPCError where error.code == .unimplemented {
            return .remote(RemoteDetokenizer(client: client, optional: optional))
        } catch let error as RPCError where optional && error.code == .unavailable {
            return .none
        } catch let error as RPCError {
            throw RPCError(error.code, "tokenizer service: \(error.message)")
        }
    }

    /// The text `token` completes (often empty while a character is being assembled).
    mutating func append(_ token: Int32) async throws -> String {
        switch self {
        case .table(var detokenizer):
            defer { self = .table(detokenizer) }
            do {
                return try detokenizer.append(token)
            } catch let error as TokenizerError {
                throw RPCError.invalidArgument(error.description)
            }
        case .remote(var detokenizer):
            defer { self = .remote(detokenizer) }
            return try await detokenizer.append(token)
        case .none:
            return ""
        }
    }

    /// Held-back bytes at the end of the stream (an unfinished character becomes U+FFFD).
    mutating func finish() async throws -> String {
        switch self {
        case .table(var detokenizer):
            defer { self = .table(detokenizer) }
            return detokenizer.finish()
        case .remote(var detokenizer):
            defer { self = .remote(detokenizer) }
            return try await detokenizer.finish()
        case .none:
            return ""
        }
    }
}
