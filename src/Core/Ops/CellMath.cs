using JacService.Core.Planning;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// The arithmetic recurrent cells are written in. Each operation computes its value and carries the derivatives its
/// operands carry through its own rule: tangents through its Jacobian; curvature through its Jacobian plus its own second
/// derivative of the operands' tangents (a product pairs its two operands' tangents, an activation adds f''·G⊗G); and,
/// when recording, it keeps its transpose on a tape that a reverse pass runs backwards. A cell written once, as the ONNX
/// spec gives its equations, so serves the forward pass, the JVP, the VJP and the second-order term alike.
/// </summary>
/// <param name="pairs">the second-order directions of a curvature pass, or null</param>
/// <param name="record">whether to keep each operation's transpose for <see cref="Backward"/></param>
internal sealed class CellMath(PairBasis? pairs, bool record) : ICellMath<CellValue, Tensor>
{
    private readonly List<Action> _tape = [];

    /// <summary>Runs the tape backwards: every recorded value's cotangent reaches the values it was computed from.</summary>
    public void Backward()
    {
        for (int i = _tape.Count - 1; i >= 0; i--)
        {
            if (i % 256 == 0) BatchCancellation.ThrowIfRequested();
            _tape[i]();
        }
        _tape.Clear();
    }

    public CellValue Linear(CellValue x, Tensor weight)
    {
        var t = weight.t();
        var y = new CellValue(x.V.matmul(t), x.G?.matmul(t), x.Q?.matmul(t));
        Record(() => x.AddCotangent(y.Cotangent?.matmul(weight)));
        return y;
    }

    public CellValue Add(CellValue a, CellValue b)
    {
        var y = new CellValue(a.V.Plus(b.V), Tangents.Sum(a.G, b.G), Tangents.Sum(a.Q, b.Q));
        Record(() =>
        {
            a.AddCotangent(y.Cotangent);
            b.AddCotangent(y.Cotangent);
        });
        return y;
    }

    public CellValue Shift(CellValue a, Tensor? c)
    {
        if (c is null) return a;
        var y = new CellValue(a.V.Plus(c), a.G, a.Q);
        Record(() => a.AddCotangent(y.Cotangent));
        return y;
    }

    public CellValue Scale(CellValue a, Tensor c)
    {
        var y = new CellValue(a.V * c, a.G is { } g ? g * c : null, a.Q is { } q ? q * c : null);
        Record(() => a.AddCotangent(y.Cotangent is { } ct ? ct * c : null));
        return y;
    }

    public CellValue OneMinus(CellValue a)
    {
        var y = new CellValue(a.V.From(1), a.G?.neg(), a.Q?.neg());
        Record(() => a.AddCotangent(y.Cotangent?.neg()));
        return y;
    }

    /// <summary>a ⊙ b: the product rule, and for curvature the symmetrised pairs of the two tangents.</summary>
    public CellValue Mul(CellValue a, CellValue b)
    {
        var g = Tangents.Sum(a.G is { } ga ? ga * b.V : null, b.G is { } gb ? a.V * gb : null);
        var q = Tangents.Sum(Tangents.Sum(a.Q is { } qa ? qa * b.V : null, b.Q is { } qb ? a.V * qb : null),
            pairs is not null && a.G is { } ga2 && b.G is { } gb2 ? pairs.SymmetricPairs(ga2, gb2) : null);
        var y = new CellValue(a.V * b.V, g, q);
        Record(() =>
        {
            if (y.Cotangent is not { } ct) return;
            a.AddCotangent(ct * b.V);
            b.AddCotangent(ct * a.V);
        });
        return y;
    }

    /// <summary>f(a), its slope and curvature from its value.</summary>
    public CellValue Apply(CellValue a, RecurrentActivation f)
    {
        var v = f.Apply(a.V);
        var slope = a.G is null && a.Q is null && !record ? null : f.Slope(v);
        var q = Tangents.Sum(a.Q is { } qa ? qa * slope! : null,
            pairs is not null && a.G is { } ga ? pairs.Pairs(ga, ga) * f.Curvature(v) : null);
        var y = new CellValue(v, a.G is { } g ? g * slope! : null, q);
        Record(() => a.AddCotangent(y.Cotangent is { } ct ? ct * slope! : null));
        return y;
    }

    public CellValue[] Split(CellValue a, int parts)
    {
        var v = a.V.chunk(parts, -1);
        var g = a.G?.chunk(parts, -1);
        var q = a.Q?.chunk(parts, -1);
        var y = Enumerable.Range(0, parts).Select(i => new CellValue(v[i], g?[i], q?[i])).ToArray();
        Record(() =>
        {
            var given = y.FirstOrDefault(p => p.Cotangent is not null)?.Cotangent;
            if (given is null) return;
            a.AddCotangent(cat(y.Select(p => p.Cotangent ?? Tangents.Zeros(given.size(0), p.V)).ToArray(), -1));
        });
        return y;
    }

    public Tensor Rows(Tensor weight, long start, long count) => weight.narrow(0, start, count);

    private void Record(Action transpose)
    {
        if (record) _tape.Add(transpose);
    }
}
