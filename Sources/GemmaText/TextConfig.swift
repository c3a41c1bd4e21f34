import Foundation
import GemmaKernels
import GemmaWeights

/// Shape and hyper-parameters of a Gemma 3 text decoder.
///
/// Built from GGUF metadata or a Hugging Face `config.json`; keys a checkpoint leaves out take
/// Gemma 3's defaults (the values `Gemma3TextConfig` uses), so a config is always complete.
public struct TextConfig: Sendable, Equatable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    /// Queries are scaled by `queryPreAttnScalar^-0.5`.
    public var queryPreAttnScalar: Float
    public var rmsNormEps: Float
    /// Local layers attend to keys at distance < `slidingWindow` (the key itself included).
    public var slidingWindow: Int
    /// RoPE base and linear scaling factor (positions are divided by it) per layer kind.
    public var localRopeBase: Float
    public var localRopeScaling: Float
    public var globalRopeBase: Float
    public var globalRopeScaling: Float
    /// `true` for layers with full (global) attention, `false` for sliding-window layers.
    public var globalLayers: [Bool]
    /// Longest context the checkpoint was trained for (`context_length`/`max_position_embeddings`).
    public var maxPositions: Int
    /// Attention numerics of the format's reference implementation: `true` for GGUF (llama.cpp
    /// keeps K and V in f16 and rounds Q and the attention weights to f16; the cache then
    /// stores f16), `false` for safetensors (transformers computes in f32; the cache stores f32).
    public var halfPrecisionAttention = false
    /// Feed-forward GELU of the format's reference: `true` for GGUF (llama.cpp looks GELU up in
    /// a table of f16 values), `false` for safetensors (transformers computes it in f32).
    public var halfPrecisionGELU = false
    /// Logits become `cap · tanh(logits / cap)` (`final_logit_softcapping`, Gemma 2's cap; null
    /// in every released Gemma 3). transformers applies it in `Gemma3ForCausalLM` only, so it is
    /// read from a text-only config.json; its Gemma 3 attention ignores `attn_logit_softcapping`,
    /// and so does this model.
    public var finalLogitSoftcap: Float? = nil
    /// Whether the output head is the embedding (`tie_word_embeddings`; Gemma's default). When
    /// false, a safetensors checkpoint must carry `lm_head.weight`.
    public var tiedEmbeddings = true

    public var queryScale: Float { 1 / queryPreAttnScalar.squareRoot() }
    public var kvDim: Int { kvHeadCount * headDim }
    public var queryDim: Int { headCount * headDim }

    /// Gemma 3's rule when a checkpoint does not list layer kinds: every `pattern`-th layer
    /// (1-based) is global.
    public static func defaultGlobalLayers(count: Int, pattern: Int = 6) -> [Bool] {
        (0..<count).map { pattern > 0 && ($0 + 1) % pattern == 0 }
    }

    /// Checks the shape is usable before any weight is bound.
    public func validate() throws {
        func check(_ condition: Bool, _ message: String) throws {
            if !condition { throw TextModelError.badConfig(message) }
        }
        try check(vocabSize > 0 && hiddenSize > 0 && intermediateSize > 0 && layerCount > 0, "non-positive size")
        try check(headCount > 0 && kvHeadCount > 0 && headCount % kvHeadCount == 0,
                  "heads \(headCount) not a multiple of kv heads \(kvHeadCount)")
        try check(headDim > 0 && headDim % 2 == 0, "head_dim \(headDim) must be even")
        try check(slidingWindow > 0, "sliding_window must be positive")
        try check(globalLayers.count == layerCount, "\(globalLayers.count) layer kinds for \(layerCount) layers")
        try check(queryPreAttnScalar > 0 && rmsNormEps >= 0, "bad query_pre_attn_scalar or eps")
        try check(localRopeScaling > 0 && globalRopeScaling > 0, "RoPE scaling must be positive")
        try check(finalLogitSoftcap.map { $0 > 0 && $0.isFinite } ?? true, "final_logit_softcapping must be positive")
    }
}

// MARK: GGUF

extension TextConfig {
    /// Reads `gemma3.*` metadata. Absent in GGUF and filled with Gemma 3 values: the local RoPE
    /// base (10,000), the layer pattern (every 6th global), rope scaling (none), and
    /// `query_pre_attn_scalar`, which llama.cpp takes to be the key length.
    public init(gguf: GGUFFile) throws {
        let architecture = gguf.string("general.architecture") ?? "gemma3"
        guard architecture == "gemma3" else {
            throw TextModelError.badConfig("architecture \(architecture), expected gemma3")
        }
        func required(_ key: String) throws -> Int {
            guard let value = gguf.int("gemma3." + key) else { throw TextModelError.badConfig("GGUF lacks gemma3.\(key)") }
            return value
        }
        let hidden = try required("embedding_length")
        let heads = try required("attention.head_count")
        let layers = try required("block_count")
        let headDim = gguf.int("gemma3.attention.key_length") ?? hidden / heads
        guard let embedding = gguf.tensor("token_embd.weight"), embedding.dimensions.count == 2 else {
            throw TextModelError.missingTensor("token_embd.weight")
        }
        var globalLayers = Self.defaultGlobalLayers(count: layers)
        if let pattern = gguf.int("gemma3.attention.sliding_window_pattern") {
            globalLayers = Self.defaultGlobalLayers(count: layers, pattern: pattern)
        }
        var globalScaling: Float = 1
        if gguf.string("gemma3.rope.scaling.type") == "linear", let factor = gguf.float("gemma3.rope.scaling.factor"), factor > 0 {
            globalScaling = factor
        }
        self.init(
            vocabSize: embedding.dimensions[1],
            hiddenSize: hidden,
            intermediateSize: try required("feed_forward_length"),
            layerCount: layers,
            headCount: heads,
            kvHeadCount: gguf.int("gemma3.attention.head_count_kv") ?? heads,
            headDim: headDim,
            queryPreAttnScalar: Float(headDim),
            rmsNormEps: gguf.float("gemma3.attention.layer_norm_rms_epsilon") ?? 1e-6,
            slidingWindow: gguf.int("gemma3.attention.sliding_window") ?? 4096,
            localRopeBase: 10_000,
            localRopeScaling: 1,
            globalRopeBase: gguf.float("gemma3.rope.freq_base") ?? 1_000_000,
            globalRopeScaling: globalScaling,
            globalLayers: globalLayers,
            maxPositions: gguf.int("gemma3.context_length") ?? 131_072,
            halfPrecisionAttention: true,
            halfPrecisionGELU: true)
        try validate()
    }
}

// MARK: Hugging Face config.json

extension TextConfig {
    /// Reads a Hugging Face `config.json`: text-only (`Gemma3ForCausalLM`, keys at the top) or
    /// multimodal (`Gemma3ForConditionalGeneration`, keys under `text_config`). Understands both
    /// the released style (`rope_theta`, `rope_local_base_freq`, `rope_scaling`,
    /// `sliding_window_pattern`) and the current one (`rope_parameters` per layer kind,
    /// `layer_types`).
    public init(configJSON data: Data) throws {
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TextModelError.badConfig("config.json is not a JSON object")
        }
        let text = root["text_config"] as? [String: Any] ?? root
        func int(_ key: String, _ fallback: Int) -> Int { (text[key] as? NSNumber)?.intValue ?? fallback }
        func float(_ key: String, _ fallback: Float) -> Float { (text[key] as? NSNumber)?.floatValue ?? fallback }

        // Gemma3TextConfig reads `hidden_activation` only (a `hidden_act` key is kept but unused).
        if let activation = text["hidden_activation"] as? String, !tanhGELUNames.contains(activation) {
            throw TextModelError.badConfig("hidden_activation \(activation) is not supported (Gemma 3's is gelu_pytorch_tanh)")
        }
        if (text["use_bidirectional_attention"] as? Bool) == true {
            throw TextModelError.badConfig("use_bidirectional_attention (an EmbeddingGemma encoder) is not supported: this model decodes causally")
        }
        let layers = int("num_hidden_layers", 26)
        let heads = int("num_attention_heads", 8)
        var globalLayers: [Bool]
        if let kinds = text["layer_types"] as? [String] {
            globalLayers = kinds.map { $0 == "full_attention" }
        } else {
            let pattern = int("sliding_window_pattern", int("_sliding_window_pattern", 6))
            globalLayers = Self.defaultGlobalLayers(count: layers, pattern: pattern)
        }

        var globalBase = float("rope_theta", 1_000_000)
        var localBase = float("rope_local_base_freq", 10_000)
        var globalScaling: Float = 1
        var localScaling: Float = 1
        /// A linear factor from a rope-parameters object; other RoPE types are not Gemma 3's.
        func linearFactor(_ parameters: [String: Any]) throws -> Float {
            let kind = (parameters["rope_type"] ?? parameters["type"]) as? String ?? "default"
            switch kind {
            case "default": return 1
            case "linear": return (parameters["factor"] as? NSNumber)?.floatValue ?? 1
            default: throw TextModelError.badConfig("unsupported rope_type \(kind)")
            }
        }
        if let scaling = text["rope_scaling"] as? [String: Any] {
            globalScaling = try linearFactor(scaling)
        }
        if let parameters = text["rope_parameters"] as? [String: Any] {
            if let full = parameters["full_attention"] as? [String: Any] {
                globalScaling = try linearFactor(full)
                globalBase = (full["rope_theta"] as? NSNumber)?.floatValue ?? globalBase
            }
            if let sliding = parameters["sliding_attention"] as? [String: Any] {
                localScaling = try linearFactor(sliding)
                localBase = (sliding["rope_theta"] as? NSNumber)?.floatValue ?? localBase
            }
        }
        let headDim = int("head_dim", 256)
        self.init(
            vocabSize: int("vocab_size", 262_208),
            hiddenSize: int("hidden_size", 2304),
            intermediateSize: int("intermediate_size", 9216),
            layerCount: layers,
            headCount: heads,
            kvHeadCount: int("num_key_value_heads", 4),
            headDim: headDim,
            queryPreAttnScalar: float("query_pre_attn_scalar", 256),
            rmsNormEps: float("rms_norm_eps", 1e-6),
            slidingWindow: int("sliding_window", 4096),
            localRopeBase: localBase,
            localRopeScaling: localScaling,
            globalRopeBase: globalBase,
            globalRopeScaling: globalScaling,
            globalLayers: globalLayers,
            maxPositions: int("max_position_embeddings", 131_072),
            // Gemma3ForConditionalGeneration (a nested text_config) does not apply it.
            finalLogitSoftcap: root["text_config"] == nil ? (text["final_logit_softcapping"] as? NSNumber)?.floatValue : nil,
            tiedEmbeddings: (text["tie_word_embeddings"] as? Bool) ?? (root["tie_word_embeddings"] as? Bool) ?? true)
        try validate()
    }
}

/// Errors from loading or running the text model.
public enum TextModelError: Error, CustomStringConvertible, Sendable {
    case badConfig(String)
    case missingTensor(String)
    case badTensor(String)
    case badInput(String)
    case contextFull(needed: Int, capacity: Int)

    public var description: String {
        switch self {
        case .badConfig(let message): "bad model config: \(message)"
        case .missingTensor(let name): "checkpoint lacks tensor \(name)"
        case .badTensor(let message): "bad tensor: \(message)"
        case .badInput(let message): "bad input: \(message)"
        case .contextFull(let needed, let capacity): "context of \(needed) tokens exceeds the cache's \(capacity)"
        }
    }
}
