import GemmaWeights

/// Element encodings the vision model accepts for its weights.
public enum TensorElementType: Sendable, Equatable {
    case f32, f16, bf16

    var byteSize: Int { self == .f32 ? 4 : 2 }
}

/// One stored tensor: element type, shape (outermost first, PyTorch order) and its bytes.
/// `bytes` stays valid as long as the `TensorSource` that returned it is alive.
public struct RawTensor: @unchecked Sendable {
    public let name: String
    public let type: TensorElementType
    public let shape: [Int]
    public let bytes: UnsafeRawBufferPointer

    public init(name: String, type: TensorElementType, shape: [Int], bytes: UnsafeRawBufferPointer) {
        self.name = name
        self.type = type
        self.shape = shape
        self.bytes = bytes
    }

    public var elementCount: Int { shape.reduce(1, *) }

    /// Writes the elements as f32 to `destination` (room for `elementCount` floats).
    func copyAsFloats(to destination: UnsafeMutablePointer<Float>) {
        let count = elementCount
        switch type {
        case .f32:
            UnsafeMutableRawPointer(destination).copyMemory(from: bytes.baseAddress!, byteCount: count * 4)
        case .bf16:
            // bf16 is the top half of an f32.
            for i in 0..<count {
                let bits = UInt32(bytes.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
                destination[i] = Float(bitPattern: bits << 16)
            }
        case .f16:
            for i in 0..<count {
                let bits = bytes.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)
                destination[i] = Float(Float16(bitPattern: bits))
            }
        }
    }

    /// The elements as a new f32 array.
    func floats() -> [Float] {
        [Float](unsafeUninitializedCapacity: elementCount) { buffer, initialized in
            copyAsFloats(to: buffer.baseAddress!)
            initialized = elementCount
        }
    }
}

/// Named tensors of a checkpoint. The Hugging Face safetensors reader, the GGUF reader and the
/// in-memory benchmark weights all sit behind this.
public protocol TensorSource: AnyObject, Sendable {
    /// The tensor called `name`; nil when absent. Throws when it exists with an element type
    /// the vision model cannot read.
    func tensor(named name: String) throws -> RawTensor?
}

/// A Hugging Face safetensors checkpoint (single file, folder, or sharded folder with index).
public final class SafetensorsTensorSource: TensorSource {
    public let checkpoint: SafetensorsCheckpoint

    public init(path: String) throws {
        checkpoint = try SafetensorsCheckpoint(path: path)
    }

    public func tensor(named name: String) throws -> RawTensor? {
        guard let tensor = checkpoint.tensor(name) else { return nil }
        let type: TensorElementType
        switch tensor.dtype {
        case .f32: type = .f32
        case .f16: type = .f16
        case .bf16: type = .bf16
        default:
            throw VisionError.invalidWeights("\(name) has dtype \(tensor.dtype.rawValue); expected F32, F16 or BF16")
        }
        return RawTensor(name: name, type: type, shape: tensor.shape, bytes: tensor.bytes)
    }
}

/// A GGUF file (a llama.cpp `mmproj`); shapes are reported outermost first, the reverse of
/// ggml's `ne` order, so they read like the Hugging Face shapes they were converted from.
public final class GGUFTensorSource: TensorSource {
    public let file: GGUFFile

    public init(file: GGUFFile) {
        self.file = file
    }

    public func tensor(named name: String) throws -> RawTensor? {
        guard let info = file.tensor(name) else { return nil }
        let type: TensorElementType
        switch info.type {
        case .f32: type = .f32
        case .f16: type = .f16
        case .bf16: type = .bf16
        default:
            throw VisionError.invalidWeights(
                "\(name) is \(info.type); the vision model reads F32, F16 and BF16 GGUF tensors only")
        }
        return RawTensor(name: name, type: type, shape: Array(info.dimensions.reversed()),
                         bytes: file.bytes(of: info))
    }
}

/// Tensors held in memory (the benchmark's random weights). Thread-safe once built.
public final class InMemoryTensorSource: TensorSource, @unchecked Sendable {
    private var storage: [String: (type: TensorElementType, shape: [Int], bytes: UnsafeMutableRawBufferPointer)] = [:]

    public init() {}

    deinit {
        for entry in storage.values { entry.bytes.deallocate() }
    }

    /// Adds (or replaces) a tensor; `fill` writes `elementCount` values of `type` into the buffer.
    /// Not thread-safe: build the source before sharing it.
    public func add(_ name: String, type: TensorElementType, shape: [Int],
                    fill: (UnsafeMutableRawBufferPointer) -> Void) {
        let byteCount = shape.reduce(1, *) * type.byteSize
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        fill(UnsafeMutableRawBufferPointer(rebasing: bytes[0..<byteCount]))
        if let old = storage[name] { old.bytes.deallocate() }
        storage[name] = (type, shape, bytes)
    }

    public func tensor(named name: String) throws -> RawTensor? {
        guard let entry = storage[name] else { return nil }
        let byteCount = entry.shape.reduce(1, *) * entry.type.byteSize
        return RawTensor(name: name, type: entry.type, shape: entry.shape,
                         bytes: UnsafeRawBufferPointer(rebasing: entry.bytes[0..<byteCount]))
    }
}
