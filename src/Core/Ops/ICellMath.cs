namespace JacService.Core.Ops;

/// <summary>
/// The arithmetic a recurrent cell's equations are written in (<see cref="Recurrent"/>), over values that carry their
/// derivatives and weights that carry none: computed in TorchSharp by <see cref="CellMath"/>, or written as ONNX nodes for
/// a derivative graph by <see cref="Compiled.CellEmitter"/>. The cells are written once against it.
/// </summary>
internal interface ICellMath<TValue, TWeight> where TWeight : class
{
    /// <summary>x·Wᵀ for a weight W [out, in].</summary>
    TValue Linear(TValue x, TWeight weight);

    TValue Add(TValue a, TValue b);

    /// <summary>a + c for a constant c (a bias), or a itself where there is none.</summary>
    TValue Shift(TValue a, TWeight? c);

    /// <summary>a ⊙ c for a constant c (a peephole weight).</summary>
    TValue Scale(TValue a, TWeight c);

    /// <summary>1 − a.</summary>
    TValue OneMinus(TValue a);

    /// <summary>a ⊙ b.</summary>
    TValue Mul(TValue a, TValue b);

    /// <summary>f(a).</summary>
    TValue Apply(TValue a, RecurrentActivation f);

    /// <summary>a split into equal parts along its last axis (a cell's gates).</summary>
    TValue[] Split(TValue a, int parts);

    /// <summary>Rows [start, start + count) of a weight along its first axis.</summary>
    TWeight Rows(TWeight weight, long start, long count);
}
