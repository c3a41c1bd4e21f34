import GemmaAPI

extension RPCService {
    /// Registers `Health`, which answers SERVING: a service listens only once its model is
    /// loaded, so answering at all means it can serve.
    public mutating func addHealth() {
        quickUnary("Health") { (_: V1.HealthRequest, _) in
            var response = V1.HealthResponse()
            response.status = .serving
            return response
        }
    }
}

/// The part of every `Info` answer that is the same for all services.
public func serviceInfo(service: String, modelPath: String, format: String,
                        started: ContinuousClock.Instant) -> V1.ServiceInfo {
    var info = V1.ServiceInfo()
    info.service = service
    info.version = gemmaVersion
    info.modelPath = modelPath
    info.modelFormat = modelPath.hasSuffix(".gguf") ? "gguf" : format
    info.uptimeMs = UInt64(max(0, (ContinuousClock.now - started).components.seconds * 1000))
    return info
}
