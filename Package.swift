// swift-tools-version:6.0
//
// Gemma 3 inference as three socket-activated services.
// Layers, top to bottom: executables (service handlers, CLI) → models (text, vision,
// tokenizer) → kernels and weight formats → C shims. The RPC runtime stands beside the models;
// no model target imports it.
import PackageDescription

let package = Package(
    name: "gemma-serve",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "gemma", targets: ["gemma"]),
        .executable(name: "gemma-tokenizer", targets: ["gemma-tokenizer"]),
        .executable(name: "gemma-vision", targets: ["gemma-vision"]),
        .executable(name: "gemma-decoder", targets: ["gemma-decoder"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // MARK: C shims over Debian's libraries
        .systemLibrary(name: "CProtobufC", pkgConfig: "libprotobuf-c"),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas"),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng"),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd"),
        .target(
            name: "CSentencePiece",
            linkerSettings: [.linkedLibrary("sentencepiece"), .linkedLibrary("stdc++")]),
        .target(
            name: "CKernels",
            cSettings: [.unsafeFlags(["-O3"])]),

        // MARK: Wire protocol and RPC runtime
        .target(name: "GemmaProto", dependencies: ["CProtobufC"]),
        .target(name: "GemmaAPI", dependencies: ["GemmaProto"]),
        .target(
            name: "GemmaRPC",
            dependencies: [
                "GemmaAPI", "CSystemd",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // MARK: Weight formats and kernels
        .target(name: "GemmaWeights"),
        .target(name: "GemmaKernels", dependencies: ["CKernels", "COpenBLAS", "GemmaWeights"]),

        // MARK: Models
        .target(name: "GemmaTokenizer", dependencies: ["CSentencePiece", "GemmaWeights"]),
        .target(name: "GemmaText", dependencies: ["GemmaWeights", "GemmaKernels"]),
        .target(name: "GemmaVision", dependencies: ["CPNG", "GemmaWeights", "GemmaKernels"]),

        // MARK: What the service executables share
        .target(name: "GemmaServing", dependencies: ["GemmaAPI", "GemmaRPC", "GemmaVision"]),

        // MARK: Executables
        .executableTarget(
            name: "gemma-tokenizer",
            dependencies: ["GemmaRPC", "GemmaAPI", "GemmaTokenizer"]),
        .executableTarget(
            name: "gemma-vision",
            dependencies: ["GemmaRPC", "GemmaAPI", "GemmaServing", "GemmaVision"]),
        .executableTarget(
            name: "gemma-decoder",
            dependencies: ["GemmaRPC", "GemmaAPI", "GemmaServing", "GemmaText", "GemmaTokenizer", "GemmaVision", "GemmaWeights"]),
        .executableTarget(
            name: "gemma",
            dependencies: [
                "GemmaRPC", "GemmaAPI", "GemmaText", "GemmaVision", "GemmaTokenizer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // MARK: Tests
        .testTarget(name: "GemmaRPCTests", dependencies: ["GemmaRPC", "GemmaAPI"]),
        .testTarget(name: "GemmaWeightsTests", dependencies: ["GemmaWeights", "GemmaKernels"]),
        .testTarget(name: "GemmaKernelsTests", dependencies: ["GemmaKernels"]),
        .testTarget(name: "GemmaTokenizerTests", dependencies: ["GemmaTokenizer", "GemmaKernels"], exclude: ["Fixtures"]),
        .testTarget(name: "GemmaTextTests", dependencies: ["GemmaText"]),
        .testTarget(name: "GemmaVisionTests", dependencies: ["GemmaVision"]),
        .testTarget(name: "ServiceTests", dependencies: ["GemmaRPC", "GemmaAPI"]),
    ],
    swiftLanguageModes: [.v6]
)
