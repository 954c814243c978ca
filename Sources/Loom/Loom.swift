// The umbrella module: `import Loom` brings in tensors, kernels, layers and training.
@_exported import LoomKernels
@_exported import LoomLayers
@_exported import LoomTensor
@_exported import LoomTraining
@_exported import LoomText
@_exported import LoomAudio
@_exported import LoomSeq2Seq

