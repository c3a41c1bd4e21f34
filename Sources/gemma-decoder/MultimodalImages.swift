import Foundation
import GemmaAPI
import GemmaRPC
import GemmaVision

/// One crop's soft tokens as the text model takes them: `tokens × hidden` f32, row after row.
struct SoftTokens: Sendable, Equatable {
    let tokens: Int
    let hidden: Int
    let values: [Float]

    var bytes: Int { values.count * MemoryLayout<Float>.size }

    /// Reads a `CropEmbeddings` message (f32 or bf16, little-endian). `what` names the crop in
    /// error messages; malformed data is INVALID_ARGUMENT.
    init(_ crop: V1.CropEmbeddings, what: String) throws {
        let tokens = Int(crop.tokens), hidden = Int(crop.hidden)
        guard tokens > 0, hidden > 0 else {
            throw RPCError.invalidArgument("\(what): tokens (\(tokens)) and hidden (\(hidden)) must be positive")
        }
        let (count, overflow) = tokens.multipliedReportingOverflow(by: hidden)
        let width = crop.type == .bf16 ? 2 : 4
        guard !overflow, count <= Int.max / 4, crop.data.count == count * width else {
            throw RPCError.invalidArgument(
                "\(what): \(crop.data.count) bytes for \(tokens) × \(hidden) \(crop.type == .bf16 ? "bf16" : "f32") values")
        }
        var values = [Float](repeating: 0, count: count)
        crop.data.withUnsafeBytes { raw in
            if width == 4 {
                for i in 0..<count {
                    values[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
                }
            } else {
                for i in 0..<count {
                    let half = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
                    values[i] = Float(bitPattern: UInt32(half) << 16)
                }
            }
        }
        guard values.allSatisfy(\.isFinite) else {
            throw RPCError.invalidArgument("\(what): soft tokens hold NaN or infinite values")
        }
        self.tokens = tokens
        self.hidden = hidden
        self.values = values
    }
}

/// SHA-256 (FIPS 180-4), for cache keys. The round constants are computed at first use from
/// the primes, as the standard defines them (fractional parts of square and cube roots).
struct SHA256 {
    private static let constants: (initial: [UInt32], rounds: [UInt32]) = {
        var primes: [Int] = []
        var n = 2
        while primes.count < 64 {
            if !primes.contains(where: { n % $0 == 0 }) { primes.append(n) }
            n += 1
        }
        func fraction32(_ x: Double) -> UInt32 { UInt32((x - x.rounded(.down)) * 4_294_967_296) }
        return (primes.prefix(8).map { fraction32(Double($0).squareRoot()) },
                primes.map { fraction32(cbrt(Double($0))) })
    }()

    private var state: [UInt32]
    private var pending: [UInt8] = []
    private var length: UInt64 = 0

    init() { state = Self.constants.initial }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        length &+= UInt64(bytes.count)
        var offset = 0
        if !pending.isEmpty {
            let take = min(64 - pending.count, bytes.count)
            pending += bytes[0..<take]
            offset = take
            if pending.count == 64 {
                pending.withUnsafeBytes { compress($0.baseAddress!) }
                pending.removeAll(keepingCapacity: true)
            }
        }
        while bytes.count - offset >= 64 {
            compress(bytes.baseAddress! + offset)
            offset += 64
        }
        if offset < bytes.count { pending += bytes[offset...] }
    }

    mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    mutating func update<T: FixedWidthInteger>(integer value: T) {
        withUnsafeBytes(of: value.littleEndian) { update($0) }
    }

    mutating func finish() -> [UInt8] {
        let bits = length &* 8
        var tail: [UInt8] = [0x80]
        while (pending.count + tail.count) % 64 != 56 { tail.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) { tail.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
        let saved = length
        tail.withUnsafeBytes { update($0) }
        length = saved
        precondition(pending.isEmpty)
        var digest: [UInt8] = []
        for word in state { for shift in stride(from: 24, through: 0, by: -8) { digest.append(UInt8(truncatingIfNeeded: word >> UInt32(shift))) } }
        return digest
    }

    private mutating func compress(_ block: UnsafeRawPointer) {
        let k = Self.constants.rounds
        var w = [UInt32](repeating: 0, count: 64)
        for i in 0..<16 { w[i] = UInt32(bigEndian: block.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)) }
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        for i in 16..<64 {
            let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
            let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
            w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
        }
        var (a, b, c, d, e, f, g, h) = (state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7])
        for i in 0..<64 {
            let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
            let choice = (e & f) ^ (~e & g)
            let t1 = h &+ s1 &+ choice &+ k[i] &+ w[i]
            let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
            let majority = (a & b) ^ (a & c) ^ (b & c)
            let t2 = s0 &+ majority
            (h, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
        }
        state[0] &+= a; state[1] &+= b; state[2] &+= c; state[3] &+= d
        state[4] &+= e; state[5] &+= f; state[6] &+= g; state[7] &+= h
    }
}

/// Soft tokens of recently seen images, keyed by SHA-256 of the decoded pixels and the Pan &
/// Scan options, least recently used evicted beyond a byte budget.
actor SoftTokenCache {
    private struct Entry {
        let crops: [SoftTokens]
        let bytes: Int
        var lastUsed: UInt64
    }

    let budgetBytes: Int
    private var entries: [[UInt8]: Entry] = [:]
    private var tick: UInt64 = 0
    private(set) var bytesInUse = 0
    private(set) var hits = 0
    private(set) var misses = 0

    init(budgetBytes: Int) {
        self.budgetBytes = budgetBytes
    }

    func lookup(_ key: [UInt8]) -> [SoftTokens]? {
        tick += 1
        guard var entry = entries[key] else {
            misses += 1
            return nil
        }
        hits += 1
        entry.lastUsed = tick
        entries[key] = entry
        return entry.crops
    }

    func store(_ key: [UInt8], _ crops: [SoftTokens]) {
        let bytes = crops.reduce(0) { $0 + $1.bytes }
        guard bytes <= budgetBytes else { return }
        tick += 1
        if let old = entries.removeValue(forKey: key) { bytesInUse -= old.bytes }
        while bytesInUse + bytes > budgetBytes, let oldest = entries.min(by: { $0.value.lastUsed < $1.value.lastUsed }) {
            entries.removeValue(forKey: oldest.key)
            bytesInUse -= oldest.value.bytes
        }
        entries[key] = Entry(crops: crops, bytes: bytes, lastUsed: tick)
        bytesInUse += bytes
    }

    var count: Int { entries.count }
}

/// The vision services: each EncodeImage call goes to the next address in turn; an address
/// that cannot be reached is skipped for the next one.
final class VisionPool: Sendable {
    let clients: [RPCClient]
    let timeout: Duration
    /// Images per EncodeImage call (the vision service's default limit is 8).
    let imagesPerCall: Int
    private let turn = Turn()

    private actor Turn {
        var next = 0
        func take(_ count: Int) -> Int {
            defer { next += count }
            return next
        }
    }

    init(addresses: [String], timeout: Duration, imagesPerCall: Int = 4) throws {
        clients = try addresses.map { try RPCClient($0) }
        self.timeout = timeout
        self.imagesPerCall = max(1, imagesPerCall)
    }

    /// The embeddings of `images`, in order. The images are split evenly over the addresses
    /// (at most `imagesPerCall` per call) and the calls run concurrently.
    func encode(_ images: [V1.Image]) async throws -> [V1.ImageEmbeddings] {
        let perCall = max(1, min(imagesPerCall, (images.count + clients.count - 1) / clients.count))
        let chunks = stride(from: 0, to: images.count, by: perCall).map { $0..<min(images.count, $0 + perCall) }
        let first = await turn.take(chunks.count)
        var results = [[V1.ImageEmbeddings]](repeating: [], count: chunks.count)
        try await withThrowingTaskGroup(of: (Int, [V1.ImageEmbeddings]).self) { group in
            for (index, chunk) in chunks.enumerated() {
                let batch = Array(images[chunk])
                group.addTask { (index, try await self.call(batch, startingAt: first + index)) }
            }
            for try await (index, embeddings) in group { results[index] = embeddings }
        }
        return results.flatMap { $0 }
    }

    private func call(_ images: [V1.Image], startingAt start: Int) async throws -> [V1.ImageEmbeddings] {
        var request = V1.EncodeImageRequest()
        request.images = images
        request.type = .f32
        var unavailable: [String] = []
        for attempt in 0..<clients.count {
            let client = clients[(start + attempt) % clients.count]
            do {
                let response = try await client.unary("/gemma.v1.VisionEncoder/EncodeImage", request,
                                                      as: V1.EncodeImageResponse.self, timeout: timeout)
                guard response.images.count == images.count else {
                    throw RPCError.internal("vision service \(client.address): \(response.images.count) results for \(images.count) images")
                }
                return response.images
            } catch let error as RPCError where error.code == .unavailable {
                unavailable.append("\(client.address): \(error.message)")
            } catch let error as RPCError where error.code == .deadlineExceeded {
                throw RPCError(.deadlineExceeded, "vision service \(client.address) did not answer within \(timeout): \(error.message)")
            } catch let error as RPCError {
                throw RPCError(error.code, "vision service \(client.address): \(error.message)")
            }
        }
        throw RPCError.unavailable("no vision service could be reached (\(unavailable.joined(separator: "; ")))")
    }
}
