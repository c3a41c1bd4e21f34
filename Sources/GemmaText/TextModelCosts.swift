import GemmaKernels

extension TextModel {
    /// Bytes of stored weights one decode step reads: every layer's projection matrices and
    /// the output head (the embedding lookup reads one row).
    public var weightBytesPerToken: Int {
        func size(_ m: WeightMatrix) -> Int { m.rows * m.rowStride }
        var total = size(weights.outputHead) + weights.embedding.rowStride
        for layer in weights.layers {
            total += [layer.query, layer.key, layer.value, layer.output, layer.gate, layer.up, layer.down]
                .reduce(0) { $0 + size($1) }
        }
        return total
    }

    /// Bytes one decode step reads at `context` positions already cached: the weights plus the
    /// K and V rows each layer attends to (a local layer at most its window).
    public func decodeBytesPerToken(context: Int) -> Int {
        let elementBytes = config.halfPrecisionAttention ? 2 : 4
        var kv = 0
        for layer in 0..<config.layerCount {
            let visible = config.globalLayers[layer] ? context + 1 : min(context + 1, config.slidingWindow)
            kv += visible * config.kvDim * 2 * elementBytes
        }
        return weightBytesPerToken + kv
    }
}
