/// An 8-bit sRGB image, rows top to bottom, pixels interleaved R, G, B.
///
/// This is the input of `VisionEncoder.encode`: PNG files go through `PNGDecoder`, raw frames
/// through `init(width:height:rgb:)`.
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// `width * height * 3` bytes.
    public let rgb: [UInt8]

    /// Wraps raw RGB8 pixels. Throws when a side is not positive or `rgb.count` is not
    /// `width * height * 3`.
    public init(width: Int, height: Int, rgb: [UInt8]) throws {
        guard width > 0, height > 0 else {
            throw VisionError.invalidImage("image size \(width)×\(height) is empty")
        }
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        guard !overflow, pixels <= Int.max / 3, rgb.count == pixels * 3 else {
            throw VisionError.invalidImage(
                "raw RGB8 image \(width)×\(height) needs \(width)×\(height)×3 bytes, got \(rgb.count)")
        }
        self.width = width
        self.height = height
        self.rgb = rgb
    }

    /// Internal: callers guarantee the size invariant.
    init(unchecked width: Int, _ height: Int, _ rgb: [UInt8]) {
        precondition(rgb.count == width * height * 3)
        self.width = width
        self.height = height
        self.rgb = rgb
    }

    /// The pixels inside `box` (which must lie within the image), as a new image.
    public func cropped(to box: CropBox) -> RGBImage {
        precondition(box.x >= 0 && box.y >= 0 && box.width > 0 && box.height > 0
            && box.x + box.width <= width && box.y + box.height <= height, "crop box outside image")
        var out = [UInt8](repeating: 0, count: box.width * box.height * 3)
        rgb.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for row in 0..<box.height {
                    let from = ((box.y + row) * width + box.x) * 3
                    let to = row * box.width * 3
                    for i in 0..<(box.width * 3) { dst[to + i] = src[from + i] }
                }
            }
        }
        return RGBImage(unchecked: box.width, box.height, out)
    }
}

/// A rectangle in image pixels: `x`, `y` of the top-left corner, then the size.
public struct CropBox: Sendable, Equatable, Hashable, CustomStringConvertible {
    public let x: Int
    public let y: Int
    public let width: Int
    public let height: Int

    public init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }

    public var description: String { "(\(x),\(y) \(width)×\(height))" }
}

/// Errors of the vision model: bad input images, bad checkpoints, bad configuration.
public enum VisionError: Error, Equatable, CustomStringConvertible {
    /// The bytes are not a PNG image this decoder accepts (corrupt, truncated, not PNG).
    case invalidPNG(String)
    /// The image declares more pixels than the caller allows (decompression bomb guard).
    case imageTooLarge(width: Int, height: Int, maxPixels: Int)
    /// A raw image whose size and byte count disagree, or an empty image.
    case invalidImage(String)
    /// A checkpoint that lacks a tensor or holds one of the wrong shape or type.
    case invalidWeights(String)
    /// A configuration value that is missing or out of range.
    case invalidConfig(String)

    public var description: String {
        switch self {
        case .invalidPNG(let message): return "invalid PNG: \(message)"
        case .imageTooLarge(let w, let h, let limit):
            return "image \(w)×\(h) has more than the allowed \(limit) pixels"
        case .invalidImage(let message): return "invalid image: \(message)"
        case .invalidWeights(let message): return "invalid vision weights: \(message)"
        case .invalidConfig(let message): return "invalid vision config: \(message)"
        }
    }
}
