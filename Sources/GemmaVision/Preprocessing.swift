/// Pan & Scan settings (transformers' `pan_and_scan_*` processor arguments).
/// The defaults are Gemma 3's `preprocessor_config.json` values.
public struct PanAndScanOptions: Sendable, Equatable {
    /// Crops narrower (on either side) than this many source pixels are not made.
    public var minCropSize: Int
    /// At most this many crops per image (at least 2 are made when Pan & Scan applies).
    public var maxCrops: Int
    /// Pan & Scan applies only when long side / short side is at least this.
    public var minRatioToActivate: Double

    public init(minCropSize: Int = 256, maxCrops: Int = 4, minRatioToActivate: Double = 1.2) {
        self.minCropSize = minCropSize
        self.maxCrops = maxCrops
        self.minRatioToActivate = minRatioToActivate
    }

    /// Options from a request, where 0 keeps a default (as in `gemma.v1.PanAndScan`).
    /// - Throws: `VisionError.invalidImage` for more than 16 crops or a ratio that is not a
    ///   finite non-negative number.
    public init(requestedMinCropSize: Int, maxCrops: Int, minRatio: Double) throws {
        self.init()
        guard maxCrops >= 0, maxCrops <= 16, requestedMinCropSize >= 0, minRatio.isFinite, minRatio >= 0 else {
            throw VisionError.invalidImage("Pan & Scan allows at most 16 crops, a non-negative crop size and a finite ratio")
        }
        if requestedMinCropSize > 0 { minCropSize = requestedMinCropSize }
        if maxCrops > 0 { self.maxCrops = maxCrops }
        if minRatio > 0 { minRatioToActivate = minRatio }
    }

    /// The crop boxes for an image of this size, in transformers' order (row-major; crops run
    /// along the long side). Empty when Pan & Scan does not apply. The last crop is cut short
    /// at the image edge when the side does not divide evenly, like numpy slicing.
    public func cropBoxes(width: Int, height: Int) -> [CropBox] {
        guard width > 0, height > 0, minCropSize > 0 else { return [] }
        var cropsAcross = 1
        var cropsDown = 1
        if width >= height {
            let ratio = Double(width) / Double(height)
            if ratio < minRatioToActivate { return [] }
            cropsAcross = Int((ratio + 0.5).rounded(.down))
            cropsAcross = min(Int((Double(width) / Double(minCropSize)).rounded(.down)), cropsAcross)
            cropsAcross = min(maxCrops, max(2, cropsAcross))
        } else {
            let ratio = Double(height) / Double(width)
            if ratio < minRatioToActivate { return [] }
            cropsDown = Int((ratio + 0.5).rounded(.down))
            cropsDown = min(Int((Double(height) / Double(minCropSize)).rounded(.down)), cropsDown)
            cropsDown = min(maxCrops, max(2, cropsDown))
        }
        let cropWidth = Int((Double(width) / Double(cropsAcross)).rounded(.up))
        let cropHeight = Int((Double(height) / Double(cropsDown)).rounded(.up))
        if min(cropWidth, cropHeight) < minCropSize { return [] }
        var boxes: [CropBox] = []
        for row in 0..<cropsDown {
            for column in 0..<cropsAcross {
                let x = column * cropWidth
                let y = row * cropHeight
                // A crop that starts past the edge would be empty in numpy; transformers keeps it
                // (and then fails to resize it). It cannot happen for maxCrops ≥ 1 with ceil
                // division, but stay safe.
                guard x < width, y < height else { continue }
                boxes.append(CropBox(x: x, y: y, width: min(cropWidth, width - x),
                                     height: min(cropHeight, height - y)))
            }
        }
        return boxes
    }
}

/// Turns images into model input the way transformers' `Gemma3ImageProcessor` (PIL backend)
/// does: optional Pan & Scan crops, PIL BILINEAR resize to the square model size, ×rescale
/// factor, (x − mean) / std, channel-first f32.
public struct ImagePreprocessor: Sendable, Equatable {
    /// Side of the square the model takes (`vision_config.image_size`).
    public var imageSize: Int
    public var rescaleFactor: Double
    public var mean: [Float]
    public var std: [Float]

    public init(imageSize: Int, rescaleFactor: Double = 1.0 / 255.0,
                mean: [Float] = [0.5, 0.5, 0.5], std: [Float] = [0.5, 0.5, 0.5]) {
        self.imageSize = imageSize
        self.rescaleFactor = rescaleFactor
        self.mean = mean
        self.std = std
    }

    /// One model input: the region of the source image it shows, and its pixels.
    public struct Crop: Sendable {
        /// Region of the source image (the whole image for the first entry).
        public var box: CropBox
        /// `3 × imageSize × imageSize`, channel-first, normalised.
        public var pixelValues: [Float]
    }

    /// The whole image first, then its Pan & Scan crops (none when `panAndScan` is nil or does
    /// not apply), each resized and normalised.
    public func crops(of image: RGBImage, panAndScan: PanAndScanOptions?) -> [Crop] {
        var boxes = [CropBox(x: 0, y: 0, width: image.width, height: image.height)]
        if let options = panAndScan {
            boxes += options.cropBoxes(width: image.width, height: image.height)
        }
        return boxes.map { box in
            let region = box == boxes[0] ? image : image.cropped(to: box)
            return Crop(box: box, pixelValues: pixelValues(region))
        }
    }

    /// The resized image as 8-bit RGB (what PIL hands back before rescaling).
    public func resized(_ image: RGBImage) -> RGBImage {
        PILBilinear.resize(image, width: imageSize, height: imageSize)
    }

    /// One 8-bit level of `channel` as the model sees it. numpy's order of operations:
    /// uint8 → float64 × factor → float32, then float32 (x − mean) / std.
    public func normalized(level: UInt8, channel: Int) -> Float {
        let scaled = Float(Double(level) * rescaleFactor)
        return (scaled - mean[channel]) / std[channel]
    }

    /// Resize, rescale, normalise; channel-first `3 × imageSize × imageSize`.
    public func pixelValues(_ image: RGBImage) -> [Float] {
        let square = resized(image)
        let plane = imageSize * imageSize
        var out = [Float](repeating: 0, count: 3 * plane)
        let lookup = (0..<3).map { c in (0..<256).map { normalized(level: UInt8($0), channel: c) } }
        square.rgb.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for p in 0..<plane {
                    for c in 0..<3 {
                        dst[c * plane + p] = lookup[c][Int(src[p * 3 + c])]
                    }
                }
            }
        }
        return out
    }
}
