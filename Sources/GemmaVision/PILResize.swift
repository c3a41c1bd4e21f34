/// Resampling that reproduces Pillow's `Image.resize(size, Image.BILINEAR)` on RGB8 images
/// bit for bit (Pillow's `Resample.c` algorithm, re-implemented):
/// - a triangle filter whose support grows with the shrink factor (so downscaling averages
///   every source pixel, i.e. antialiases; upscaling is plain bilinear interpolation);
/// - separable: a horizontal pass over only the rows the vertical pass will read, then a
///   vertical pass, each skipped when that dimension does not change;
/// - weights normalised in double precision, then rounded to 22-bit fixed point; each pass
///   rounds and clamps to 8 bits.
enum PILBilinear {
    private static let precisionBits = 32 - 8 - 2

    /// Per output sample: first source index, number of taps, fixed-point weights.
    struct Taps {
        var first: [Int]
        var count: [Int]
        var weights: [Int32]  // `outSize × stride`
        var stride: Int
    }

    static func taps(inSize: Int, outSize: Int) -> Taps {
        // Pillow's box is passed as C floats; for whole-image resizes these hold exact integers.
        let scale = Double(Float(inSize)) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = 1.0 * filterScale
        let stride = Int(support.rounded(.up)) * 2 + 1
        var first = [Int](repeating: 0, count: outSize)
        var count = [Int](repeating: 0, count: outSize)
        var weights = [Int32](repeating: 0, count: outSize * stride)
        var raw = [Double](repeating: 0, count: stride)
        let inverseScale = 1.0 / filterScale
        for out in 0..<outSize {
            let center = (Double(out) + 0.5) * scale
            // C's (int) cast truncates toward zero; the clamp to 0 follows it as in Pillow.
            let lo = max(0, Int((center - support + 0.5).rounded(.towardZero)))
            let hi = min(inSize, Int((center + support + 0.5).rounded(.towardZero)))
            let n = hi - lo
            var total = 0.0
            for i in 0..<n {
                let x = abs((Double(i + lo) - center + 0.5) * inverseScale)
                let w = x < 1.0 ? 1.0 - x : 0.0
                raw[i] = w
                total += w
            }
            for i in 0..<n {
                let k = total != 0 ? raw[i] / total : raw[i]
                let fixed = k * Double(1 << precisionBits)
                weights[out * stride + i] = Int32((k < 0 ? fixed - 0.5 : fixed + 0.5).rounded(.towardZero))
            }
            first[out] = lo
            count[out] = n
        }
        return Taps(first: first, count: count, weights: weights, stride: stride)
    }

    @inline(__always)
    private static func clip8(_ sum: Int) -> UInt8 {
        let v = sum >> precisionBits
        return UInt8(clamping: v)
    }

    /// `image` resized to `width × height` exactly as Pillow's BILINEAR filter does.
    static func resize(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        precondition(width > 0 && height > 0)
        if width == image.width && height == image.height { return image }
        let vertical = taps(inSize: image.height, outSize: height)
        let rowFirst = vertical.first[0]
        let rowEnd = vertical.first[height - 1] + vertical.count[height - 1]
        let half = 1 << (precisionBits - 1)

        // Horizontal pass (only over rows rowFirst..<rowEnd when a vertical pass follows).
        var current = image.rgb
        var currentWidth = image.width
        var rowOffset = 0
        if width != image.width {
            let horizontal = taps(inSize: image.width, outSize: width)
            let rows = height != image.height ? rowEnd - rowFirst : image.height
            let startRow = height != image.height ? rowFirst : 0
            var out = [UInt8](repeating: 0, count: rows * width * 3)
            image.rgb.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    horizontal.weights.withUnsafeBufferPointer { k in
                        for row in 0..<rows {
                            let srcRow = (row + startRow) * image.width * 3
                            for x in 0..<width {
                                let lo = horizontal.first[x]
                                let base = x * horizontal.stride
                                var r = half, g = half, b = half
                                for i in 0..<horizontal.count[x] {
                                    let w = Int(k[base + i])
                                    let p = srcRow + (lo + i) * 3
                                    r += Int(src[p]) * w
                                    g += Int(src[p + 1]) * w
                                    b += Int(src[p + 2]) * w
                                }
                                let o = (row * width + x) * 3
                                dst[o] = clip8(r)
                                dst[o + 1] = clip8(g)
                                dst[o + 2] = clip8(b)
                            }
                        }
                    }
                }
            }
            current = out
            currentWidth = width
            rowOffset = startRow
        }
        guard height != image.height else {
            return RGBImage(unchecked: width, height, current)
        }
        // Vertical pass; row indices are relative to the rows the horizontal pass kept.
        var out = [UInt8](repeating: 0, count: width * height * 3)
        current.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                vertical.weights.withUnsafeBufferPointer { k in
                    let rowBytes = currentWidth * 3
                    for y in 0..<height {
                        let lo = vertical.first[y] - rowOffset
                        let base = y * vertical.stride
                        let n = vertical.count[y]
                        for c in 0..<rowBytes {
                            var sum = half
                            for i in 0..<n {
                                sum += Int(src[(lo + i) * rowBytes + c]) * Int(k[base + i])
                            }
                            dst[y * rowBytes + c] = clip8(sum)
                        }
                    }
                }
            }
        }
        return RGBImage(unchecked: width, height, out)
    }
}
