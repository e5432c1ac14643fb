using JacService.Core.Ops;
using static JacService.Core.Compiled.OnnxEmitter;

namespace JacService.Core.Compiled;

/// <summary>
/// What a compiled rule reads of an LSTM, GRU or RNN node (<see cref="CompiledRules.Recurrent"/>): its sizes, activations
/// and per direction its weights, input products, initial states and step, written as nodes on demand.
/// </summary>
internal sealed class RecurrentNode
{
    private readonly Recurrent.CellKind _kind;
    private readonly RecurrentActivation[][] _activations;
    private readonly string _direction;

    private RecurrentNode(OnnxRuleContext c)
    {
        _kind = Recurrent.Kinds[c.OpType];
        Directions = (int)c.Emit.Shape(c.In(1))[0];
        Hidden = c.Emit.Shape(c.In(2))[2];
        _activations = Recurrent.Activations(c.Strings("activations"), c.Floats("activation_alpha"), c.Floats("activation_beta"), _kind, Directions);
        _direction = c.String("direction", "forward");
    }

    /// <summary>The node read, or why it does not compile.</summary>
    public static RecurrentNode Of(OnnxRuleContext c)
    {
        // The graph holds the node itself, which ONNX Runtime 1.31 does not run batch first.
        if (c.Int("layout", 0) != 0)
            throw new NotCompilableException($"{c.OpType} '{c.Out(0)}' is batch first (layout 1), which ONNX Runtime's recurrent kernels do not run");
        if (Given(c, 4))
            throw new NotCompilableException($"{c.OpType} '{c.Out(0)}' takes sequence_lens; compiled for full sequences without it");
        return new RecurrentNode(c);
    }

    public int Directions { get; }
    public long Hidden { get; }
    public int States => _kind.States;
    private long Gates => _kind.Gates * Hidden;

    /// <summary>The sequence's length: X is [seq, batch, input] (layout 0).</summary>
    public long Steps(OnnxRuleContext c) => c.Emit.Shape(c.In(0))[0];

    /// <summary>A state's shape in a step, [batch, hidden] (-1 for the batch), with a basis axis of <paramref name="basis"/> ahead where given.</summary>
    public long[] State(long? basis = null) => basis is { } k ? [k, -1, Hidden] : [-1, Hidden];

    /// <summary>A step's input product's shape, [batch, gates · hidden], with a basis axis ahead where given.</summary>
    public long[] Product(long? basis = null) => basis is { } k ? [k, -1, Gates] : [-1, Gates];

    /// <summary>Whether direction <paramref name="d"/> runs from the last step to the first.</summary>
    public bool Reverse(int d) => _direction == "reverse" || d == 1;

    /// <summary>Direction <paramref name="d"/>'s W [gates · hidden, input].</summary>
    public string W(OnnxRuleContext c, int d) => c.Emit.Select(c.In(1), 0, d);

    /// <summary>x·Wᵀ + Wb for every step of direction <paramref name="d"/>: [seq, batch, gates · hidden].</summary>
    public string Products(OnnxRuleContext c, int d)
    {
        var products = c.Emit.TimesTransposedWeight(c.In(0), W(c, d));
        return Bias(c, d) is { } bias ? c.Emit.Add(products, c.Emit.Rows(bias, 0, Gates)) : products;
    }

    /// <summary>Direction <paramref name="d"/>'s initial states [batch, hidden] (zeros where absent) and, going forward, their full tangents.</summary>
    public EmittedCellValue[] Initial(OnnxRuleContext c, int d, bool tangents) => [.. Enumerable.Range(0, States).Select(s =>
    {
        int input = s == 0 ? 5 : 6;
        if (!Given(c, input)) return new EmittedCellValue(InitialZeros(c));
        var tangent = tangents && c.Tangent(input) is { } t ? c.Emit.Select(c.Emit.Full(t, c.Basis, c.In(input)), 1, d) : null;
        return new EmittedCellValue(c.Emit.Select(c.In(input), 0, d), tangent);
    })];

    /// <summary>Zeros in the shape of a direction [K, ..] of <paramref name="value"/>.</summary>
    public string Zeros(OnnxRuleContext c, string value) => c.Emit.Full(c.Emit.Scalar(0), c.Basis, value);

    /// <summary>Direction <paramref name="d"/>'s step in the arithmetic <paramref name="math"/>, reading the weights from the outer graph.</summary>
    public Recurrent.Step<EmittedCellValue> Cell(OnnxRuleContext c, CellEmitter math, int d) =>
        Recurrent.Cell(c.OpType, math, c.Emit.Select(c.In(2), 0, d), Bias(c, d) is { } bias ? c.Emit.Rows(bias, Gates, Gates) : null,
            _kind.PeepholeInput >= 0 && Given(c, _kind.PeepholeInput) ? c.Emit.Select(c.In(_kind.PeepholeInput), 0, d) : null,
            _activations[d], c.Int("linear_before_reset", 0) != 0, Hidden);

    private string? Bias(OnnxRuleContext c, int d) => Given(c, 3) ? c.Emit.Select(c.In(3), 0, d) : null;


    /// <summary>[batch, hidden] zeros, the batch read from x at run time.</summary>
    private string InitialZeros(OnnxRuleContext c) =>
        c.Emit.Op("Expand", c.Emit.Scalar(0), c.Emit.Op("Concat", [c.Emit.Op("Slice", c.Emit.Op("Shape", c.In(0)), c.Emit.Ints(1), c.Emit.Ints(2)), c.Emit.Ints(Hidden)], Int("axis", 0)));

    private static bool Given(OnnxRuleContext c, int i) => i < c.InputCount && c.In(i).Length > 0;
}
