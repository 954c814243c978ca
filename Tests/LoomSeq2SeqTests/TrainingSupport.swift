import LoomSeq2Seq

/// Trains `model` on text pairs (source, target) with Adam, in seeded batches, quietly: the
/// loop the learning tests of this target share.
func fit(_ model: SequenceTransformer, on pairs: [(String, String)], epochs: Int, batchSize: Int, learningRate: Double, seed: UInt64) throws {
    var options = TrainerOptions()
    options.batchSize = batchSize
    options.showProgress = false
    let trainer = Trainer<Float, (String, String), [(String, String)]>(
        parameters: model.parameters, optimizer: Adam<Float>(learningRate: learningRate), options: options, randomSource: RandomSource(seed: seed),
        length: { $0.0.count }, collate: { $0 },
        loss: { batch in try model.loss(sources: model.sourceBatch(texts: batch.map(\.0)), targets: batch.map(\.1)) })
    try trainer.fit(train: pairs, epochs: epochs)
}
