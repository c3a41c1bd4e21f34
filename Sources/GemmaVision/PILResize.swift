/// Resampling that reproduces Pillow's `Image.resize(size, Image.BILINEAR)` on RGB8 images
/// bit for bit (Pillow's `Resample.c` algorithm, re-implemented):
/// - a triangle filter whose support grows with the shrink factor (so downscaling averages
///   every source pixel, i.e. antialiases; upscaling is plain bilinear interpolation);
/// - separable: two passes (order as Pillow 13 picks it, see `resize`), each skipped when its
///   dimension does not change;
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
    ///
    /// Pass order matters for the 8-bit rounding between the passes. Pillow runs the horizontal
    /// pass first, except (since Pillow 13, python-pillow/Pillow#9549) when the height shrinks
    /// by more than twice as many pixels as the width: then the vertical pass runs first. The
    /// rule was checked against Pillow 13.0 on random sizes (tools/make_vision_fixtures.py
    /// records images of both kinds).
    static func resize(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        precondition(width > 0 && height > 0)
        let needHorizontal = width != image.width
        let needVertical = height != image.height
        if !needHorizontal && !needVertical { return image }
        let vertical = taps(inSize: image.height, outSize: height)
        let verticalFirst = needHorizontal && needVertical && height < image.height
            && (image.height - height) > 2 * (image.width - width)
        if verticalFirst {
            let shrunk = verticalPass(image.rgb, width: image.width, taps: vertical, rowOffset: 0, outRows: height)
            let horizontal = taps(inSize: image.width, outSize: width)
            let out = horizontalPass(shrunk, inWidth: image.width, rows: 0..<height, taps: horizontal, outWidth: width)
            return RGBImage(unchecked: width, height, out)
        }
        var current = image.rgb
        var currentWidth = image.width
        var rowOffset = 0
        if needHorizontal {
            // Only the rows the vertical pass will read (all of them when it does not run).
            let rows = needVertical
                ? vertical.first[0]..<(vertical.first[height - 1] + vertical.count[height - 1])
                : 0..<image.height
            current = horizontalPass(image.rgb, inWidth: image.width, rows: rows,
                                     taps: taps(inSize: image.width, outSize: width), outWidth: width)
            currentWidth = width
            rowOffset = rows.lowerBound
        }
        if needVertical {
            current = verticalPass(current, width: currentWidth, taps: vertical, rowOffset: rowOffset, outRows: height)
        }
        return RGBImage(unchecked: width, height, current)
    }

    /// Resamples each of `rows` of an RGB8 image `inWidth` wide to `outWidth` pixels.
    private static func horizontalPass(_ source: [UInt8], inWidth: Int, rows: Range<Int>, taps: Taps,
                                       outWidth: Int) -> [UInt8] {
        let half = 1 << (precisionBits - 1)
        var out = [UInt8](repeating: 0, count: rows.count * outWidth * 3)
        source.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                taps.weights.withUnsafeBufferPointer { k in
                    for (outRow, row) in rows.enumerated() {
                        let srcRow = row * inWidth * 3
                        for x in 0..<outWidth {
                            let lo = taps.first[x]
                            let base = x * taps.stride
                            var r = half, g = half, b = half
                            for i in 0..<taps.count[x] {
                                let w = Int(k[base + i])
                                let p = srcRow + (lo + i) * 3
                                r += Int(src[p]) * w
                                g += Int(src[p + 1]) * w
                                b += Int(src[p + 2]) * w
                            }
                            let o = (outRow * outWidth + x) * 3
                            dst[o] = clip8(r)
                            dst[o + 1] = clip8(g)
                            dst[o + 2] = clip8(b)
                        }
                    }
                }
            }
        }
        return out
    }

    /// Resamples the columns of an RGB8 image `width` wide to `outRows` rows; the taps' row
    /// indices are shifted down by `rowOffset` (the rows a horizontal pass skipped).
    private static func verticalPass(_ source: [UInt8], width: Int, taps: Taps, rowOffset: Int,
                                     outRows: Int) -> [UInt8] {
        let half = 1 << (precisionBits - 1)
        let rowBytes = width * 3
        var out = [UInt8](repeating: 0, count: outRows * rowBytes)
        source.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                taps.weights.withUnsafeBufferPointer { k in
                    for y in 0..<outRows {
                        let lo = taps.first[y] - rowOffset
                        let base = y * taps.stride
                        let n = taps.count[y]
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
        return out
    }
}
