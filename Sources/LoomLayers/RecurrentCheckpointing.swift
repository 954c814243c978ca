extension RecurrentLayerMasks {
    /// The masks of time steps `range`: per-step masks are cut, per-sequence masks kept.
    func steps(_ range: Range<Int>) throws -> RecurrentLayerMasks {
        RecurrentLayerMasks(
            interLayer: try interLayer?.slice(axis: 0, range), input: input,
            directions: try directions.map { d in
                RecurrentDirectionMasks(inputWeight: d.inputWeight, recurrentWeight: d.recurrentWeight, state: d.state,
                                        update: try d.update?.slice(axis: 0, range))
            })
    }
}

extension Recurrent {
    /// The stack run in segments of `every` steps, recording one tape entry whose pullback
    /// recomputes each segment (from its saved initial state) and backpropagates through it,
    /// last segment first. Forward values equal `run`'s; gradients equal it up to rounding.
    func runCheckpointed(_ input: SequenceBatch<Scalar>, initialState: RecurrentState<Scalar>?,
                         masks: [RecurrentLayerMasks<Scalar>], every: Int) throws
        -> (output: SequenceBatch<Scalar>, state: RecurrentState<Scalar>)
    {
        guard every > 0 else {
            throw TensorError.invalidArgument(op: "\(cell) checkpointing", message: "checkpointEvery must be positive, got \(every)")
        }
        guard !bidirectional else {
            throw TensorError.invalidArgument(op: "\(cell) checkpointing", message: "needs a unidirectional stack (the reverse direction runs backward in time)")
        }
        let steps = input.steps, batch = input.batch
        let state0 = initialState ?? zeroState(batch: batch)
        let segments = stride(from: 0, to: Swift.max(steps, 1), by: every).map { $0..<Swift.min($0 + every, steps) }
        /// Segment `range` of the batch, from its values (already cut to the segment).
        func segmentInput(_ values: Tensor<Scalar>, _ range: Range<Int>) throws -> SequenceBatch<Scalar> {
            try SequenceBatch(values: values,
                              lengths: input.lengths.map { Swift.min(Swift.max($0 - range.lowerBound, 0), range.count) })
        }
        func segmentMasks(_ range: Range<Int>) throws -> [RecurrentLayerMasks<Scalar>] { try masks.map { try $0.steps(range) } }

        // Forward off the tape, keeping each segment's initial state; outputs and the final
        // state are written straight into one flat buffer (the single tape record below), so
        // the T-long output exists once.
        let hasCell = Kind.hasCellState
        let width = outputSize, rowsPerStep = batch * width
        let stateCount = numLayers * batch * hiddenSize, outputCount = steps * rowsPerStep
        var flatScalars: [Scalar] = Memory.zeros(outputCount + (hasCell ? 2 : 1) * stateCount)
        var starts: [RecurrentState<Scalar>] = []
        var state = RecurrentState(hidden: state0.hidden.detached(), cell: state0.cell?.detached())
        try withoutGradients {
            for range in segments {
                starts.append(state)
                let (out, next) = try run(segmentInput(input.values.detached().slice(axis: 0, range), range), initialState: state,
                                          masks: segmentMasks(range))
                flatScalars.replaceSubrange((range.lowerBound * rowsPerStep)..<(range.upperBound * rowsPerStep), with: out.values.scalars)
                state = next
            }
        }
        flatScalars.replaceSubrange(outputCount..<(outputCount + stateCount), with: state.hidden.scalars)
        if let c = state.cell { flatScalars.replaceSubrange((outputCount + stateCount)..., with: c.scalars) }
        let flat = Tensor(unchecked: [flatScalars.count], scalars: flatScalars)
        flatScalars = []
        let outputShape = [steps, batch, width], stateShape = state.hidden.shape
        let parameters = self.parameters
        let recordedInputs = [input.values, state0.hidden] + (hasCell ? [state0.cell ?? state0.hidden] : []) + parameters.map { $0.value }
        let x = input.values.detached()
        let combined = flat.recorded(from: recordedInputs) { g in
            var dHidden = Tensor(unchecked: stateShape, scalars: Array(g.scalars[outputCount..<(outputCount + stateCount)]))
            var dCell = hasCell ? Tensor(unchecked: stateShape, scalars: Array(g.scalars[(outputCount + stateCount)...])) : nil
            var dParameters = parameters.map { Tensor<Scalar>.zeros(unchecked: $0.shape) }
            var dInputs: [Tensor<Scalar>] = []
            do {
                try GradientRecording.$isEnabled.withValue(true) {
                    for (s, range) in segments.enumerated().reversed() {
                        let xs = try x.slice(axis: 0, range).requiringGradient()
                        let h = starts[s].hidden.requiringGradient(), c = starts[s].cell?.requiringGradient()
                        let (out, final) = try run(segmentInput(xs, range), initialState: RecurrentState(hidden: h, cell: c),
                                                   masks: segmentMasks(range))
                        let dOutput = Tensor(unchecked: [range.count, batch, width],
                                             scalars: Array(g.scalars[(range.lowerBound * rowsPerStep)..<(range.upperBound * rowsPerStep)]))
                        var loss = try (out.values * dOutput).sum() + (final.hidden * dHidden).sum()
                        if let fc = final.cell, let dCell { loss = try loss + (fc * dCell).sum() }
                        let found = try loss.gradients(wrt: [xs, h] + (c.map { [$0] } ?? []) + parameters.map { $0.value })
                        dInputs.append(found[0])
                        dHidden = found[1]
                        if hasCell { dCell = found[2] }
                        for k in parameters.indices { dParameters[k].accumulateUnchecked(found[found.count - parameters.count + k]) }
                    }
                }
            } catch {
                // Every shape here was validated by the forward pass that recorded this entry.
                preconditionFailure("recomputing a checkpointed \(self.cell) segment failed: \(error)")
            }
            let dx = (try? Tensor.concatenate(dInputs.reversed(), axis: 0)) ?? Tensor.zeros(unchecked: x.shape)
            return [dx, dHidden] + (hasCell ? [dCell] : []) + dParameters
        }
        let recordedOutput = try combined.slice(axis: 0, 0..<outputCount).reshaped(outputShape)
        let hidden = try combined.slice(axis: 0, outputCount..<(outputCount + stateCount)).reshaped(stateShape)
        let cellState = hasCell ? try combined.slice(axis: 0, (outputCount + stateCount)..<(outputCount + 2 * stateCount)).reshaped(stateShape) : nil
        return (try SequenceBatch(values: recordedOutput, lengths: input.lengths), RecurrentState(hidden: hidden, cell: cellState))
    }
}
