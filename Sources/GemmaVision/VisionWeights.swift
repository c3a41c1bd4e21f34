/// The vision tower's and projector's tensors, found under either naming scheme and checked
/// against the configuration. Tensors stay in the source's storage and element type; the model
/// converts them to f32 one layer at a time while it runs.
struct VisionWeights: @unchecked Sendable {
    struct Linear {
        let weight: RawTensor  // [out, in]
        let bias: RawTensor    // [out]
    }
    struct Norm {
        let weight: RawTensor
        let bias: RawTensor
    }
    struct Layer {
        let norm1: Norm, query: Linear, key: Linear, value: Linear, output: Linear
        let norm2: Norm, up: Linear, down: Linear
    }

    let patchWeight: RawTensor      // [width, 3, patch, patch]
    let patchBias: RawTensor        // [width]
    let positions: RawTensor        // [patches, width]
    let layers: [Layer]
    let postNorm: Norm
    let softEmbeddingNorm: RawTensor  // [width]
    /// True when the stored norm weight already holds 1 + w (llama.cpp's converter adds it).
    let softEmbeddingNormHoldsOnePlus: Bool
    let projection: RawTensor       // [width, textHidden], or [textHidden, width] when transposed
    /// True when the projection is stored as [textHidden, width] (a converter that wrote it in
    /// ggml's usual [out, in] orientation); the model transposes it at load.
    let projectionIsTransposed: Bool

    /// Where a Hugging Face checkpoint keeps the vision tower. Google's releases use
    /// `vision_tower.vision_model.` and `multi_modal_projector.`; newer transformers prefixes
    /// both with `model.`.
    static let visionPrefixes = ["vision_tower.vision_model.", "model.vision_tower.vision_model.",
                                 "model.vision_tower.", "vision_tower."]
    static let projectorPrefixes = ["multi_modal_projector.", "model.multi_modal_projector."]

    static func huggingFace(_ source: TensorSource, config: VisionConfig) throws -> VisionWeights {
        var vision: String?
        for prefix in visionPrefixes where try source.tensor(named: prefix + "embeddings.patch_embedding.weight") != nil {
            vision = prefix
            break
        }
        var projector: String?
        for prefix in projectorPrefixes where try source.tensor(named: prefix + "mm_input_projection_weight") != nil {
            projector = prefix
            break
        }
        guard let v = vision else {
            throw VisionError.invalidWeights("no vision tower: none of \(visionPrefixes.map { $0 + "embeddings.patch_embedding.weight" }) exists")
        }
        guard let p = projector else {
            throw VisionError.invalidWeights("no projector: none of \(projectorPrefixes.map { $0 + "mm_input_projection_weight" }) exists")
        }
        let lookup = Lookup(source: source, config: config)
        func linear(_ name: String, out: Int, in inputs: Int) throws -> Linear {
            Linear(weight: try lookup.get(name + ".weight", [out, inputs]), bias: try lookup.get(name + ".bias", [out]))
        }
        func norm(_ name: String) throws -> Norm {
            Norm(weight: try lookup.get(name + ".weight", [config.width]), bias: try lookup.get(name + ".bias", [config.width]))
        }
        let d = config.width, f = config.mlpWidth
        let layers = try (0..<config.layers).map { i -> Layer in
            let l = "\(v)encoder.layers.\(i)."
            return Layer(norm1: try norm(l + "layer_norm1"),
                         query: try linear(l + "self_attn.q_proj", out: d, in: d),
                         key: try linear(l + "self_attn.k_proj", out: d, in: d),
                         value: try linear(l + "self_attn.v_proj", out: d, in: d),
                         output: try linear(l + "self_attn.out_proj", out: d, in: d),
                         norm2: try norm(l + "layer_norm2"),
                         up: try linear(l + "mlp.fc1", out: f, in: d),
                         down: try linear(l + "mlp.fc2", out: d, in: f))
        }
        return VisionWeights(
            patchWeight: try lookup.get(v + "embeddings.patch_embedding.weight", [d, 3, config.patchSize, config.patchSize]),
            patchBias: try lookup.get(v + "embeddings.patch_embedding.bias", [d]),
            positions: try lookup.get(v + "embeddings.position_embedding.weight", [config.patchCount, d]),
            layers: layers,
            postNorm: try norm(v + "post_layernorm"),
            softEmbeddingNorm: try lookup.get(p + "mm_soft_emb_norm.weight", [d]),
            softEmbeddingNormHoldsOnePlus: false,
            projection: try lookup.get(p + "mm_input_projection_weight", [d, config.textHidden]),
            projectionIsTransposed: false)
    }

    /// llama.cpp `mmproj` names (`v.blk.N.attn_q.weight`, `mm.input_projection.weight`, …).
    static func gguf(_ source: TensorSource, config: VisionConfig) throws -> VisionWeights {
        let lookup = Lookup(source: source, config: config)
        let d = config.width, f = config.mlpWidth
        func linear(_ name: String, out: Int, in inputs: Int) throws -> Linear {
            Linear(weight: try lookup.get(name + ".weight", [out, inputs]), bias: try lookup.get(name + ".bias", [out]))
        }
        func norm(_ name: String) throws -> Norm {
            Norm(weight: try lookup.get(name + ".weight", [d]), bias: try lookup.get(name + ".bias", [d]))
        }
        // llama.cpp keeps the Hugging Face [width, textHidden] layout (ggml ne = [textHidden,
        // width]) and transposes at run time; accept the other orientation too.
        let projectionName = "mm.input_projection.weight"
        let storedShape = try source.tensor(named: projectionName)?.shape
        let transposed = storedShape == [config.textHidden, d] && config.textHidden != d
        let projection = try lookup.get(projectionName, transposed ? [config.textHidden, d] : [d, config.textHidden])
        let layers = try (0..<config.layers).map { i -> Layer in
            let l = "v.blk.\(i)."
            return Layer(norm1: try norm(l + "ln1"),
                         query: try linear(l + "attn_q", out: d, in: d),
                         key: try linear(l + "attn_k", out: d, in: d),
                         value: try linear(l + "attn_v", out: d, in: d),
                         output: try linear(l + "attn_out", out: d, in: d),
                         norm2: try norm(l + "ln2"),
                         up: try linear(l + "ffn_up", out: f, in: d),
                         down: try linear(l + "ffn_down", out: d, in: f))
        }
        return VisionWeights(
            patchWeight: try lookup.get("v.patch_embd.weight", [d, 3, config.patchSize, config.patchSize]),
            patchBias: try lookup.get("v.patch_embd.bias", [d]),
            positions: try lookup.get("v.position_embd.weight", [config.patchCount, d]),
            layers: layers,
            postNorm: try norm("v.post_ln"),
            softEmbeddingNorm: try lookup.get("mm.soft_emb_norm.weight", [d]),
            softEmbeddingNormHoldsOnePlus: true,
            projection: projection,
            projectionIsTransposed: transposed)
    }

    private struct Lookup {
        let source: TensorSource
        let config: VisionConfig

        func get(_ name: String, _ shape: [Int]) throws -> RawTensor {
            guard let tensor = try source.tensor(named: name) else {
                throw VisionError.invalidWeights("missing tensor \(name)")
            }
            guard tensor.shape == shape else {
                throw VisionError.invalidWeights("\(name) has shape \(tensor.shape), expected \(shape)")
            }
            guard tensor.bytes.count == tensor.elementCount * tensor.type.byteSize else {
                throw VisionError.invalidWeights("\(name) holds \(tensor.bytes.count) bytes for shape \(shape)")
            }
            return tensor
        }
    }
}
