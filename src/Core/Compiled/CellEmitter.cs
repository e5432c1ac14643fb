using JacService.Core.Ops;

namespace JacService.Core.Compiled;

/// <summary>
/// The recurrent cells' arithmetic (<see cref="ICellMath{TValue, TWeight}"/>) written as ONNX nodes: each operation
/// appends its value's node and, where its operands carry tangents, its tangent's (the same rules as
/// <see cref="CellMath"/>'s); when recording, it keeps the nodes of its transpose on a tape that <see cref="Backward"/>
/// writes last first. Directions are full-size [K, ..value], and every gate is <paramref name="hidden"/> wide. Written
/// into a Scan's body, the cell reads its weights from the outer graph, and <paramref name="outer"/> writes the rows it
/// takes of them there, once.
/// </summary>
internal sealed class CellEmitter(OnnxEmitter e, OnnxEmitter outer, long basis, long hidden, bool record) : ICellMath<EmittedCellValue, string>
{
    private readonly List<Action> _tape = [];

    /// <summary>Writes the tape's transposes last first: every recorded value's cotangent reaches the values it was computed from.</summary>
    public void Backward()
    {
        for (int i = _tape.Count - 1; i >= 0; i--) _tape[i]();
        _tape.Clear();
    }

    /// <summary>Zeros in the shape of a direction of <paramref name="value"/>.</summary>
    public string Zeros(EmittedCellValue value) => e.Full(e.Scalar(0), basis, value.V);

    /// <summary>The value's tangent, zeros where it carries none.</summary>
    public string Direction(EmittedCellValue value) => value.G ?? Zeros(value);

    public EmittedCellValue Linear(EmittedCellValue x, string weight)
    {
        var y = new EmittedCellValue(TimesTransposed(x.V, weight), x.G is { } g ? TimesTransposed(g, weight) : null);
        Record(() => x.AddCotangent(e, y.Cotangent is { } ct ? e.Op("MatMul", ct, weight) : null));
        return y;
    }

    public EmittedCellValue Add(EmittedCellValue a, EmittedCellValue b)
    {
        var y = new EmittedCellValue(e.Add(a.V, b.V), Sum(a.G, b.G));
        Record(() =>
        {
            a.AddCotangent(e, y.Cotangent);
            b.AddCotangent(e, y.Cotangent);
        });
        return y;
    }

    public EmittedCellValue Shift(EmittedCellValue a, string? c)
    {
        if (c is null) return a;
        var y = new EmittedCellValue(e.Add(a.V, c), a.G);
        Record(() => a.AddCotangent(e, y.Cotangent));
        return y;
    }

    public EmittedCellValue Scale(EmittedCellValue a, string c)
    {
        var y = new EmittedCellValue(e.Mul(a.V, c), a.G is { } g ? e.Mul(g, c) : null);
        Record(() => a.AddCotangent(e, y.Cotangent is { } ct ? e.Mul(ct, c) : null));
        return y;
    }

    public EmittedCellValue OneMinus(EmittedCellValue a)
    {
        var y = new EmittedCellValue(e.Sub(e.Scalar(1), a.V), a.G is { } g ? e.Op("Neg", g) : null);
        Record(() => a.AddCotangent(e, y.Cotangent is { } ct ? e.Op("Neg", ct) : null));
        return y;
    }

    public EmittedCellValue Mul(EmittedCellValue a, EmittedCellValue b)
    {
        var y = new EmittedCellValue(e.Mul(a.V, b.V), Sum(a.G is { } ga ? e.Mul(ga, b.V) : null, b.G is { } gb ? e.Mul(a.V, gb) : null));
        Record(() =>
        {
            if (y.Cotangent is not { } ct) return;
            a.AddCotangent(e, e.Mul(ct, b.V));
            b.AddCotangent(e, e.Mul(ct, a.V));
        });
        return y;
    }

    public EmittedCellValue Apply(EmittedCellValue a, RecurrentActivation f)
    {
        var v = f.Emitted(e, a.V);
        var slope = a.G is null && !record ? null : f.EmittedSlope(e, v);
        var y = new EmittedCellValue(v, a.G is { } g ? e.Mul(g, slope!) : null);
        Record(() => a.AddCotangent(e, y.Cotangent is { } ct ? e.Mul(ct, slope!) : null));
        return y;
    }

    public EmittedCellValue[] Split(EmittedCellValue a, int parts)
    {
        var sizes = e.Ints([.. Enumerable.Repeat(hidden, parts)]);
        var axis = OnnxEmitter.Int("axis", -1);
        var v = e.Ops("Split", parts, [a.V, sizes], axis);
        var g = a.G is { } ga ? e.Ops("Split", parts, [ga, sizes], axis) : null;
        var y = Enumerable.Range(0, parts).Select(i => new EmittedCellValue(v[i], g?[i])).ToArray();
        Record(() =>
        {
            if (y.All(p => p.Cotangent is null)) return;
            a.AddCotangent(e, e.Op("Concat", [.. y.Select(p => p.Cotangent ?? Zeros(p))], axis));
        });
        return y;
    }

    public string Rows(string weight, long start, long count) => outer.Rows(weight, start, count);

    private string TimesTransposed(string a, string weight) => e.TimesTransposedWeight(a, weight);

    private string? Sum(string? a, string? b) => a is null ? b : b is null ? a : e.Add(a, b);

    private void Record(Action transpose)
    {
        if (record) _tape.Add(transpose);
    }
}
