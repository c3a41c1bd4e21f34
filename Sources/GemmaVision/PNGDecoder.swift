import CPNG

/// Decodes PNG files into `RGBImage` with libpng's simplified `png_image` API (no setjmp crosses
/// Swift frames: libpng handles its own longjmp inside `png_safe_execute`).
///
/// Colour handling follows what transformers' PIL image processors feed the model:
/// - every colour type and bit depth (grey, grey+alpha, palette, RGB, RGBA; 1–16 bits) becomes
///   8-bit RGB. 16-bit samples are treated as sRGB-encoded and scaled to 8 bits with rounding
///   (PIL keeps the high byte: at most one level apart, two for 16-bit colour with alpha).
/// - transparency (an alpha channel or a `tRNS` chunk) is composited onto opaque white with
///   Pillow's integer `alpha_composite` arithmetic, as transformers' `convert_to_rgb` does.
///   Images without transparency keep their colours (alpha is 255 everywhere, a no-op).
///
/// Known difference: PIL opens 16-bit greyscale as mode `I;16` and its `convert("RGB")`
/// clips every value above 255 to white, so transformers turns 16-bit grey PNGs almost white.
/// This decoder scales them like every other 16-bit image instead.
/// libpng also converts files whose `gAMA` chunk is not sRGB's to sRGB, which PIL does not;
/// ICC profiles are ignored by both.
public enum PNGDecoder {
    /// Default pixel limit: 64 Mpx (an 8192×8192 image), i.e. 256 MB of RGBA while decoding.
    public static let defaultMaxPixels = 64 * 1024 * 1024

    /// Decodes a PNG file held in memory.
    ///
    /// - Parameter maxPixels: the largest `width × height` accepted; checked against the
    ///   header before any pixel memory is allocated.
    /// - Throws: `VisionError.invalidPNG` for corrupt, truncated, non-PNG or zero-size input,
    ///   `VisionError.imageTooLarge` when the header declares more than `maxPixels` pixels.
    public static func decode(bytes: [UInt8], maxPixels: Int = defaultMaxPixels) throws -> RGBImage {
        try bytes.withUnsafeBytes { try decode(buffer: $0, maxPixels: maxPixels) }
    }

    /// `decode(bytes:maxPixels:)` over borrowed memory (e.g. a request buffer), without a copy.
    /// `buffer` is only read during the call.
    public static func decode(buffer: UnsafeRawBufferPointer, maxPixels: Int = defaultMaxPixels) throws -> RGBImage {
        guard buffer.count >= 8, let base = buffer.baseAddress else {
            throw VisionError.invalidPNG("\(buffer.count) bytes is too short for a PNG file")
        }
        let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        guard signature.indices.allSatisfy({ buffer[$0] == signature[$0] }) else {
            throw VisionError.invalidPNG("missing PNG signature")
        }
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        defer { png_image_free(&image) }

        // libpng keeps reading from `buffer` until png_image_finish_read returns.
        guard png_image_begin_read_from_memory(&image, base, buffer.count) != 0 else {
            throw VisionError.invalidPNG(libpngMessage(&image))
        }
        let width = Int(image.width)
        let height = Int(image.height)
        guard width > 0, height > 0 else {
            throw VisionError.invalidPNG("image size \(width)×\(height) is empty")
        }
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        guard !overflow, pixels <= maxPixels, width <= Int(Int32.max) / 4, pixels <= Int.max / 4 else {
            throw VisionError.imageTooLarge(width: width, height: height, maxPixels: maxPixels)
        }
        // Keep transparency ourselves so the composite uses PIL's arithmetic; libpng would
        // composite in linear light.
        image.format = CPNG_FORMAT_RGBA
        image.flags |= UInt32(PNG_IMAGE_FLAG_16BIT_sRGB)
        var rgba = [UInt8](repeating: 0, count: pixels * 4)
        let finished = rgba.withUnsafeMutableBytes { out in
            png_image_finish_read(&image, nil, out.baseAddress, Int32(width * 4), nil)
        }
        guard finished != 0 else {
            throw VisionError.invalidPNG(libpngMessage(&image))
        }
        return RGBImage(unchecked: width, height, compositeOntoWhite(rgba: rgba))
    }

    /// RGBA8 → RGB8 over opaque white, bit-exact with Pillow's `Image.alpha_composite(white, im)`
    /// followed by `convert("RGB")`.
    static func compositeOntoWhite(rgba: [UInt8]) -> [UInt8] {
        let pixels = rgba.count / 4
        var rgb = [UInt8](repeating: 0, count: pixels * 3)
        rgba.withUnsafeBufferPointer { src in
            rgb.withUnsafeMutableBufferPointer { dst in
                for p in 0..<pixels {
                    let alpha = UInt32(src[p * 4 + 3])
                    for c in 0..<3 {
                        let value = UInt32(src[p * 4 + c])
                        let out: UInt32
                        if alpha == 0 {
                            out = 255
                        } else if alpha == 255 {
                            out = value
                        } else {
                            // Pillow, background alpha 255: coef1 = a·128, coef2 = (255 − a)·128,
                            // then a rounded division by 255 and the 7 precision bits dropped.
                            let mixed = value * alpha * 128 + 255 * (255 - alpha) * 128 + (0x80 << 7)
                            out = (((mixed >> 8) + mixed) >> 8) >> 7
                        }
                        dst[p * 3 + c] = UInt8(truncatingIfNeeded: out)
                    }
                }
            }
        }
        return rgb
    }

    private static func libpngMessage(_ image: inout png_image) -> String {
        let text = withUnsafeBytes(of: &image.message) { raw -> String in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
        return text.isEmpty ? "libpng reported an error" : text
    }
}
