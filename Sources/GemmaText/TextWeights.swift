import Foundation
import GemmaKernels
import GemmaWeights

/// One decoder layer's weights. Matrices stay in their stored format; norm weights are small,
/// so they are decoded to f32 once, already in the multiplied form (`1 + w`).
struct LayerWeights: @unchecked Sendable {
    let inputNorm: [Float]
    let query: WeightMatrix
    let key: WeightMatrix
    let value: WeightMatrix
    let queryNorm: [Float]
    let keyNorm: [Float]
    let output: WeightMatrix
    let postAttentionNorm: [Float]
    let preFeedForwardNorm: [Float]
    let gate: WeightMatrix
    let up: WeightMatrix
    let down: WeightMatrix
    let postFeedForwardNorm: [Float]
}

/// All text weights, bound by name from a GGUF file or a safetensors checkpoint.
///
/// Holds the file objects, which own the mappings the matrices point into.
struct TextWeights: @unchecked Sendable {
    let config: TextConfig
    /// `[vocab × hidden]` embedding.
    let embedding: WeightMatrix
    /// `[vocab × hidden]` output head: the embedding itself (Gemma ties them) unless the file
    /// carries a separate one (GGUF `output.weight`, safetensors `lm_head.weight`).
    let outputHead: WeightMatrix
    /// Embedding rows are multiplied by this (√hidden, rounded as the format's reference does).
    let embeddingScale: Float
    let layers: [LayerWeights]
    let finalNorm: [Float]
    /// Keeps the mappings alive.
    let storage: [AnyObject]
}

extension TextWeights {
    /// Loads from `path`: a `.gguf` file, a `.safetensors` file next to a `config.json`, or a
    /// Hugging Face folder (`config.json` with `model.safetensors` or an index and shards).
    static func load(path: String) throws -> TextWeights {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw WeightsError(path: path, message: "no such file or folder")
        }
        if !isFolder.boolValue, try isGGUF(path: path) {
            return try loadGGUF(GGUFFile(path: path))
        }
        let folder = isFolder.boolValue ? URL(fileURLWithPath: path) : URL(fileURLWithPath: path).deletingLastPathComponent()
        let configURL = folder.appendingPathComponent("config.json")
        let config = try TextConfig(configJSON: Data(contentsOf: configURL))
        return try loadSafetensors(SafetensorsCheckpoint(path: path), config: config)
    }

    private static func isGGUF(path: String) throws -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw WeightsError(path: path, message: "cannot open")
        }
        defer { try? handle.close() }
        return handle.readData(ofLength: 4) == Data("GGUF".utf8)
    }

    // MARK: GGUF

    /// GGUF names (`blk.N.attn_q.weight`, …). llama.cpp's converter already stored norms as
    /// `1 + w`, so they are used as they are.
    static func loadGGUF(_ file: GGUFFile) throws -> TextWeights {
        let config = try TextConfig(gguf: file)
        func matrix(_ name: String, rows: Int, columns: Int) throws -> WeightMatrix {
            guard let info = file.tensor(name) else { throw TextModelError.missingTensor(name) }
            // ggml lists the row length first: [columns, rows].
            guard info.dimensions.count == 2, info.dimensions[0] == columns, info.dimensions[1] == rows else {
                throw TextModelError.badTensor("\(name) has shape \(info.dimensions), expected [\(columns), \(rows)]")
            }
            do {
                return try WeightMatrix(format: info.type, bytes: file.bytes(of: info), rows: rows, columns: columns)
            } catch {
                throw TextModelError.badTensor("\(name): \(error)")
            }
        }
        func vector(_ name: String, count: Int) throws -> [Float] {
            guard let info = file.tensor(name) else { throw TextModelError.missingTensor(name) }
            guard info.elementCount == count else {
                throw TextModelError.badTensor("\(name) has \(info.elementCount) values, expected \(count)")
            }
            return try decodeVector(name: name, format: info.type, bytes: file.bytes(of: info), count: count, addOne: false)
        }
        let c = config
        let layers = try (0..<c.layerCount).map { i in
            let p = "blk.\(i)."
            return LayerWeights(
                inputNorm: try vector(p + "attn_norm.weight", count: c.hiddenSize),
                query: try matrix(p + "attn_q.weight", rows: c.queryDim, columns: c.hiddenSize),
                key: try matrix(p + "attn_k.weight", rows: c.kvDim, columns: c.hiddenSize),
                value: try matrix(p + "attn_v.weight", rows: c.kvDim, columns: c.hiddenSize),
                queryNorm: try vector(p + "attn_q_norm.weight", count: c.headDim),
                keyNorm: try vector(p + "attn_k_norm.weight", count: c.headDim),
                output: try matrix(p + "attn_output.weight", rows: c.hiddenSize, columns: c.queryDim),
                postAttentionNorm: try vector(p + "post_attention_norm.weight", count: c.hiddenSize),
                preFeedForwardNorm: try vector(p + "ffn_norm.weight", count: c.hiddenSize),
                gate: try matrix(p + "ffn_gate.weight", rows: c.intermediateSize, columns: c.hiddenSize),
                up: try matrix(p + "ffn_up.weight", rows: c.intermediateSize, columns: c.hiddenSize),
                down: try matrix(p + "ffn_down.weight", rows: c.hiddenSize, columns: c.intermediateSize),
                postFeedForwardNorm: try vector(p + "post_ffw_norm.weight", count: c.hiddenSize))
        }
        let embedding = try matrix("token_embd.weight", rows: c.vocabSize, columns: c.hiddenSize)
        let head = file.tensor("output.weight") == nil
            ? embedding : try matrix("output.weight", rows: c.vocabSize, columns: c.hiddenSize)
        return TextWeights(
            config: config,
            embedding: embedding,
            outputHead: head,
            // llama.cpp multiplies by an unrounded f32 √hidden.
            embeddingScale: Float(Double(c.hiddenSize).squareRoot()),
            layers: layers,
            finalNorm: try vector("output_norm.weight", count: c.hiddenSize),
            storage: [file])
    }

    // MARK: safetensors

    /// The three layouts in use: Google's releases (`language_model.model.`), current
    /// transformers multimodal (`model.language_model.`), and text-only (`model.`).
    static let safetensorsPrefixes = ["language_model.model.", "model.language_model.", "model."]
    /// Where a checkpoint keeps an output head of its own (Gemma ties it to the embedding, and
    /// transformers then saves none): text-only and current multimodal, then Google's layout.
    static let untiedHeadNames = ["lm_head.weight", "language_model.lm_head.weight"]

    /// Hugging Face names; norms hold `w` and the model computes `x·(1 + w)`, so 1 is added here.
    static func loadSafetensors(_ checkpoint: SafetensorsCheckpoint, config: TextConfig) throws -> TextWeights {
        guard let prefix = safetensorsPrefixes.first(where: { checkpoint.tensor($0 + "embed_tokens.weight") != nil }) else {
            throw TextModelError.missingTensor("embed_tokens.weight (under any of \(safetensorsPrefixes))")
        }
        func tensor(_ name: String) throws -> SafetensorsTensor {
            guard let tensor = checkpoint.tensor(prefix + name) else { throw TextModelError.missingTensor(prefix + name) }
            return tensor
        }
        func format(_ tensor: SafetensorsTensor) throws -> GGMLType {
            switch tensor.dtype {
            case .f32: return .f32
            case .f16: return .f16
            case .bf16: return .bf16
            default: throw TextModelError.badTensor("\(tensor.name) has dtype \(tensor.dtype.rawValue); need F32, F16 or BF16")
            }
        }
        func matrix(_ name: String, rows: Int, columns: Int) throws -> WeightMatrix {
            let t = try tensor(name)
            guard t.shape == [rows, columns] else {
                throw TextModelError.badTensor("\(t.name) has shape \(t.shape), expected [\(rows), \(columns)]")
            }
            return try WeightMatrix(format: format(t), bytes: t.bytes, rows: rows, columns: columns)
        }
        func vector(_ name: String, count: Int) throws -> [Float] {
            let t = try tensor(name)
            guard t.shape == [count] else {
                throw TextModelError.badTensor("\(t.name) has shape \(t.shape), expected [\(count)]")
            }
            return try decodeVector(name: t.name, format: format(t), bytes: t.bytes, count: count, addOne: true)
        }
        let c = config
        let layers = try (0..<c.layerCount).map { i in
            let p = "layers.\(i)."
            return LayerWeights(
                inputNorm: try vector(p + "input_layernorm.weight", count: c.hiddenSize),
                query: try matrix(p + "self_attn.q_proj.weight", rows: c.queryDim, columns: c.hiddenSize),
                key: try matrix(p + "self_attn.k_proj.weight", rows: c.kvDim, columns: c.hiddenSize),
                value: try matrix(p + "self_attn.v_proj.weight", rows: c.kvDim, columns: c.hiddenSize),
                queryNorm: try vector(p + "self_attn.q_norm.weight", count: c.headDim),
                keyNorm: try vector(p + "self_attn.k_norm.weight", count: c.headDim),
                output: try matrix(p + "self_attn.o_proj.weight", rows: c.hiddenSize, columns: c.queryDim),
                postAttentionNorm: try vector(p + "post_attention_layernorm.weight", count: c.hiddenSize),
                preFeedForwardNorm: try vector(p + "pre_feedforward_layernorm.weight", count: c.hiddenSize),
                gate: try matrix(p + "mlp.gate_proj.weight", rows: c.intermediateSize, columns: c.hiddenSize),
                up: try matrix(p + "mlp.up_proj.weight", rows: c.intermediateSize, columns: c.hiddenSize),
                down: try matrix(p + "mlp.down_proj.weight", rows: c.hiddenSize, columns: c.intermediateSize),
                postFeedForwardNorm: try vector(p + "post_feedforward_layernorm.weight", count: c.hiddenSize))
        }
        let embedding = try matrix("embed_tokens.weight", rows: c.vocabSize, columns: c.hiddenSize)
        // An untied head (`tie_word_embeddings: false`) is stored beside the model, not under it.
        var outputHead = embedding
        let untiedHead = untiedHeadNames.lazy.compactMap({ checkpoint.tensor($0) }).first
        if untiedHead == nil && !c.tiedEmbeddings {
            throw TextModelError.missingTensor("lm_head.weight (tie_word_embeddings is false)")
        }
        if let head = untiedHead {
            guard head.shape == [c.vocabSize, c.hiddenSize] else {
                throw TextModelError.badTensor("\(head.name) has shape \(head.shape), expected [\(c.vocabSize), \(c.hiddenSize)]")
            }
            outputHead = try WeightMatrix(format: format(head), bytes: head.bytes, rows: c.vocabSize, columns: c.hiddenSize)
        }
        return TextWeights(
            config: config,
            embedding: embedding,
            outputHead: outputHead,
            embeddingScale: roundedScale(Float(Double(c.hiddenSize).squareRoot()), to: embedding.format),
            layers: layers,
            finalNorm: try vector("norm.weight", count: c.hiddenSize),
            storage: [checkpoint])
    }

    /// transformers multiplies embeddings by √hidden cast to the weight dtype (bf16 √640 →
    /// 25.25), so a checkpoint in bf16 or f16 gets the rounded factor.
    static func roundedScale(_ scale: Float, to format: GGMLType) -> Float {
        switch format {
        case .bf16:
            // Round to nearest even on the top 16 bits.
            let bits = scale.bitPattern
            let rounded = (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000
            return Float(bitPattern: rounded)
        case .f16:
            return HalfFloat.f16ToFloat(HalfFloat.floatToF16(scale))
        default:
            return scale
        }
    }

    /// Decodes a small vector (a norm weight) to f32, adding 1 when the checkpoint stores `w`.
    static func decodeVector(name: String, format: GGMLType, bytes: UnsafeRawBufferPointer, count: Int,
                             addOne: Bool) throws -> [Float] {
        let matrix: WeightMatrix
        do {
            matrix = try WeightMatrix(format: format, bytes: bytes, rows: 1, columns: count)
        } catch {
            throw TextModelError.badTensor("\(name): \(error)")
        }
        var values = [Float](repeating: 0, count: count)
        values.withUnsafeMutableBufferPointer { matrix.dequantizeRow(0, into: $0.baseAddress!) }
        if addOne {
            for i in values.indices { values[i] += 1 }
        }
        return values
    }
}
