namespace JacService.Core.Ops;

/// <summary>What kind of map an op is; the engine reads it, so it is typed, not a label.</summary>
public enum OpKind
{
    ElementwiseUnary,
    ElementwiseBinary,
    LinearAlgebra,
    /// <summary>Moves, copies or reinterprets data; linear in its data input.</summary>
    Shape,
    /// <summary>Produces a value that never carries a derivative: constants, shapes, and maps constant between jumps (Floor, comparisons).</summary>
    Constant,
    /// <summary>Picks each element from one of its inputs (Where, Max, Min).</summary>
    Selection,
    Reduction,
    Normalization,
    Convolution,
    Pooling,
    /// <summary>Runs a cell over a sequence (LSTM, GRU, RNN): the cell's derivatives stepped through time.</summary>
    Recurrent,
}
