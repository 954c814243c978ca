// The umbrella module: `import Loom` brings in tensors, kernels, layers and training.
@_exported import LoomKernels
@_exported import LoomLayers
@_exported import LoomTensor
@_exported import LoomTraining
@_exported import LoomText
@_exported import LoomAudio
@_exported import LoomSeq2Seq

/// Loom's version, as `loom --version` prints it.
public enum LoomVersion {
    public static let current = "0.2.0"
}
