import GemmaAPI
import GemmaRPC
import GemmaVision

/// Reading the image parts of requests, the same way in every service that takes images.
public enum VisionRequests {
    /// The image's Pan & Scan options (zero values take transformers' defaults), or nil when
    /// off. Out-of-range values are `INVALID_ARGUMENT`, naming the image.
    public static func panAndScan(_ message: V1.PanAndScan?, index: Int) throws -> PanAndScanOptions? {
        guard let message, message.enabled else { return nil }
        do {
            return try PanAndScanOptions(requestedMinCropSize: Int(message.minCropSize), maxCrops: Int(message.maxCrops),
                                         minRatio: Double(message.minRatio))
        } catch {
            throw RPCError.invalidArgument("image \(index): \(error)")
        }
    }
}
