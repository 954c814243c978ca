// swift-tools-version:6.1
import PackageDescription

/// Loom: sequence-to-sequence modeling of text and audio on OpenBLAS, FFTW and libsndfile.
/// Dependencies point one way: kernels <- tensor <- layers <- training <- recipes and the CLI.
let package = Package(
    name: "Loom",
    products: [
        .library(name: "Loom", targets: ["Loom"]),
        // Data-parallel training over Open MPI; apart from Loom, so that the library needs no MPI.
        .library(name: "LoomDistributed", targets: ["LoomDistributed"]),
        .executable(name: "loom", targets: ["loom"]),
        // The HTTP server: its own executable, so that `loom` builds without SwiftNIO.
        .executable(name: "loom-serve", targets: ["loom-serve"]),
        .executable(name: "Benchmarks", targets: ["Benchmarks"]),
        .executable(name: "addition", targets: ["addition"]),
        .executable(name: "compare-xy", targets: ["compare-xy"]),
        .executable(name: "addition-regression", targets: ["addition-regression"]),
        .executable(name: "timeseries", targets: ["timeseries"]),
        .executable(name: "spoken-digits", targets: ["spoken-digits"]),
        .executable(name: "g2p", targets: ["g2p"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // `swift package generate-documentation --target Loom` (the DocC catalog in Sources/Loom/Loom.docc).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        // `loom-serve`: HTTP/1.1 on SwiftNIO, metrics in Prometheus text format. Hummingbird's
        // default traits (swift-configuration, full Foundation) are not needed.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // System libraries, each a module map over a one-line shim header.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .systemLibrary(name: "CFFTW", path: "Sources/CFFTW"),
        .systemLibrary(name: "CSndFile", path: "Sources/CSndFile"),
        .systemLibrary(name: "CSampleRate", path: "Sources/CSampleRate"),
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),

        // The packed-weight micro-kernels (AVX-512, AVX2) and vectorized rows; C, so that each
        // function can carry its own target attribute and be dispatched at run time. Release
        // builds compile it at -O2: -O3 measured no gain (Benchmarks/RESULTS.md) and unsafe flags
        // would keep the package from being used by version.
        .target(name: "CLoomKernels"),
        .target(name: "LoomKernels", dependencies: ["CBLAS", "CLoomKernels"]),
        .target(name: "LoomTensor", dependencies: ["LoomKernels"]),
        .target(name: "LoomLayers", dependencies: ["LoomTensor"]),
        .target(name: "LoomTraining", dependencies: ["LoomTensor", "LoomLayers"]),
        // SentencePiece (Debian's libsentencepiece-dev) behind a small C interface.
        .target(name: "CSentencePiece", linkerSettings: [.linkedLibrary("sentencepiece"), .linkedLibrary("sentencepiece_train")]),
        .target(name: "LoomText", dependencies: ["LoomTensor", "CSentencePiece"]),
        .target(name: "LoomAudio", dependencies: ["LoomTensor", "CFFTW", "CSndFile", "CSampleRate"]),
        .target(name: "LoomSeq2Seq", dependencies: ["LoomLayers", "LoomTraining", "LoomText", "LoomAudio"]),
        // MPI's constants are macros over globals: a few C functions stand in for them.
        .target(name: "CLoomMPI", dependencies: ["CMPI"]),
        .target(name: "LoomDistributed", dependencies: ["LoomTraining", "CLoomMPI"]),
        .target(name: "Loom", dependencies: ["LoomKernels", "LoomTensor", "LoomLayers", "LoomTraining", "LoomText", "LoomAudio", "LoomSeq2Seq"]),

        .executableTarget(
            name: "loom",
            dependencies: ["Loom", "LoomDistributed", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // The decoding server: batching, limits, the HTTP API and its metrics (a library, so that
        // the tests run it in process), and the executable that starts it.
        .target(name: "LoomServe", dependencies: ["Loom", .product(name: "Hummingbird", package: "hummingbird"),
                                                  .product(name: "Prometheus", package: "swift-prometheus"),
                                                  .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                                                  .product(name: "NIOCore", package: "swift-nio"),
                                                  .product(name: "Logging", package: "swift-log")],
                resources: [.embedInCode("openapi.json")]),
        .executableTarget(name: "loom-serve", dependencies: ["LoomServe", "Loom", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "Benchmarks", dependencies: ["Loom"], path: "Benchmarks"),
        // Recipes: one executable per task over the library, sharing a small support module.
        .target(name: "RecipeSupport", dependencies: ["Loom", "LoomDistributed", .product(name: "ArgumentParser", package: "swift-argument-parser")], path: "recipes/Support"),
        .executableTarget(name: "addition", dependencies: ["RecipeSupport", "Loom", .product(name: "ArgumentParser", package: "swift-argument-parser")], path: "recipes/addition"),
        .executableTarget(name: "compare-xy", dependencies: ["RecipeSupport", "Loom", .product(name: "ArgumentParser", package: "swift-argument-parser")], path: "recipes/compare-xy"),
        .executableTarget(name: "addition-regression", dependencies: ["RecipeSupport", "Loom", .product(name: "ArgumentParser", package: "swift-argument-parser")], path: "recipes/addition-regression"),
        .executableTarget(name: "timeseries", dependencies: ["RecipeSupport", "Loom", .product(name: "ArgumentParser", package: "swift-argument-parser")], path: "recipes/timeseries"),
        .executableTarget(name: "spoken-digits", dependencies: ["RecipeSupport", "Loom", .product(name: "ArgumentParser", package: "swift-argument-parser")], path: "recipes/spoken-digits"),
        // Its run configuration is a committed file, compiled in (PackageResources.run_json).
        .executableTarget(name: "g2p", dependencies: ["RecipeSupport", "Loom", "LoomDistributed", .product(name: "ArgumentParser", package: "swift-argument-parser")], path: "recipes/g2p",
                          resources: [.embedInCode("run.json")]),
        // Fuzz targets (libFuzzer through scripts/fuzz.sh); a replayer of saved inputs otherwise.
        .executableTarget(name: "LoomFuzz", dependencies: ["LoomAudio", "LoomSeq2Seq"]),

        .testTarget(name: "LoomKernelsTests", dependencies: ["LoomKernels", "CLoomKernels", "CFFTW", "CSndFile", "CSampleRate"]),
        .testTarget(name: "LoomTensorTests", dependencies: ["LoomTensor"]),
        .testTarget(name: "LoomLayersTests", dependencies: ["LoomLayers"]),
        .testTarget(name: "LoomTrainingTests", dependencies: ["LoomTraining", "LoomLayers"]),
        .testTarget(name: "LoomTextTests", dependencies: ["LoomText"]),
        .testTarget(name: "LoomSeq2SeqTests", dependencies: ["LoomSeq2Seq"]),
        .testTarget(name: "LoomAudioTests", dependencies: ["LoomAudio", "CSndFile"]),
        .testTarget(name: "LoomCLITests", dependencies: ["loom", "Loom", "RecipeSupport"]),
        .testTarget(name: "LoomServeTests", dependencies: ["LoomServe", "Loom", "loom", "loom-serve"]),
    ],
    swiftLanguageModes: [.v5],
    cxxLanguageStandard: .cxx17
)
