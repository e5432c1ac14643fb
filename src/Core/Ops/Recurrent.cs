using JacService.Core.Onnx;
using JacService.Core.Planning;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// LSTM, GRU and RNN: a cell stepped through a sequence in one or both directions. Each cell is written once in
/// <see cref="CellMath"/>, as the ONNX spec gives its equations, and serves every derivative: the forward pass carries
/// tangents, a second-order pass carries curvature, and the reverse pass records the steps and runs them backwards
/// (backpropagation through time). The input's product with W is one matrix product over every step, and so is its
/// cotangent's; the weights, biases and peepholes carry no derivative.
/// </summary>
internal static class Recurrent
{
    /// <summary>
    /// What differs between the three ops besides their step (<see cref="Cell{TValue, TWeight}"/>): gates per step, states, default
    /// activations per direction, inputs, the peephole input (-1: none), and the inputs that carry no derivative (the
    /// weights, biases, sequence lengths and peepholes).
    /// </summary>
    public sealed record CellKind(int Gates, int States, string[] Activations, int MaxInputs, int PeepholeInput, int[] NonDifferentiable);

    public static readonly IReadOnlyDictionary<string, CellKind> Kinds = new Dictionary<string, CellKind>
    {
        ["LSTM"] = new(4, 2, ["Sigmoid", "Tanh", "Tanh"], 8, 7, [1, 2, 3, 4, 7]),
        ["GRU"] = new(3, 1, ["Sigmoid", "Tanh"], 6, -1, [1, 2, 3, 4]),
        ["RNN"] = new(1, 1, ["Tanh"], 6, -1, [1, 2, 3, 4]),
    };

    public static int[] NonDifferentiable(string op) => Kinds[op].NonDifferentiable;

    public static string? Validate(GraphNode node, int opset)
    {
        var a = node.Attributes;
        var kind = Kinds[node.OpType];
        var direction = a.String("direction", "forward");
        if (direction is not ("forward" or "reverse" or "bidirectional")) return $"direction '{direction}' is not forward, reverse or bidirectional";
        if (opset < 14 && a.Has("layout")) return $"the attribute layout arrived in opset 14 (the model's is {opset})";
        if (a.Int("layout", 0) is not (0 or 1)) return $"layout {a.Int("layout", 0)} is not 0 or 1";
        if (a.Has("clip")) return "clip is not supported: a clipped cell has no derivative where it clips; export without cell clipping";
        if (a.Int("input_forget", 0) != 0) return "input_forget is not supported; export with separate input and forget gates";
        if (a.Int("linear_before_reset", 0) is not (0 or 1)) return $"linear_before_reset {a.Int("linear_before_reset", 0)} is not 0 or 1";
        if (node.Inputs.Length < 3 || node.Inputs.Length > kind.MaxInputs)
            return $"{node.OpType} takes 3 to {kind.MaxInputs} inputs, not {node.Inputs.Length}";
        if (node.Outputs.Length > kind.States + 1) return $"{node.OpType} has at most {kind.States + 1} outputs, not {node.Outputs.Length}";
        if (a.Strings("activations") is { } names)
        {
            int directions = direction == "bidirectional" ? 2 : 1;
            if (names.Length != kind.Activations.Length && names.Length != kind.Activations.Length * directions)
                return $"activations lists {names.Length} functions where {node.OpType} takes {kind.Activations.Length} per direction";
            if (names.FirstOrDefault(n => !RecurrentActivation.Names.Contains(n, StringComparer.OrdinalIgnoreCase)) is { } unknown)
                return $"activation '{unknown}' is not supported ({string.Join(", ", RecurrentActivation.Names)})";
        }
        return null;
    }

    public static Dual[] Forward(OpContext c)
    {
        var pass = Run(c, new CellMath(null, record: false));
        return Outputs(c, pass, v => v.V, leading: false).Zip(Outputs(c, pass, v => v.G, leading: true), (v, t) => new Dual(v!, t)).ToArray();
    }

    public static Tensor?[] Curvature(CurvatureContext c)
    {
        var pass = Run(c.Primal, new CellMath(c.Basis, record: false));
        return Outputs(c.Primal, pass, v => v.Q, leading: true);
    }

    public static Tensor?[] Vjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        // Inputs 5 and 6 are the initial hidden and cell states (GRU and RNN have no cell state).
        int[] initialStates = c.Node.OpType == "LSTM" ? [5, 6] : [5];
        if (!c.Needs(0) && !initialStates.Any(c.Needs)) return result;
        var primal = c.Primal();
        var m = new CellMath(null, record: true);
        var pass = Run(primal, m);
        bool byBatch = primal.Attr.Int("layout", 0) == 1;
        long k = c.K;
        // Cotangents arrive as the outputs are laid out; the steps want [K, seq, directions, batch, hidden].
        if (c.Cotangent(0) is { } ctY)
        {
            if (byBatch) ctY = ctY.permute(0, 2, 3, 1, 4);
            for (int d = 0; d < pass.Hidden.Length; d++)
                for (int t = 0; t < pass.Hidden[d].Length; t++)
                    pass.Hidden[d][t].AddCotangent(ctY.select(1, t).select(1, d));
        }
        for (int s = 0; s < pass.Final[0].Length; s++)
        {
            if (c.Cotangent(s + 1) is not { } ct) continue;
            if (byBatch) ct = ct.transpose(1, 2);
            for (int d = 0; d < pass.Final.Length; d++) pass.Final[d][s].AddCotangent(ct.select(1, d));
        }
        m.Backward();
        if (c.Needs(0))
        {
            Tensor? ctX = null;
            for (int d = 0; d < pass.Steps.Length; d++)
            {
                var ctXw = stack(pass.Steps[d].Select(x => x.Cotangent ?? Tangents.Zeros(k, x.V)).ToArray(), 1);
                ctX = Tangents.Sum(ctX, ctXw.matmul(pass.Weights[d]));
            }
            result[0] = byBatch ? ctX!.transpose(1, 2) : ctX;
        }
        for (int s = 0; s < initialStates.Length; s++)
        {
            int input = initialStates[s];
            if (!c.Needs(input)) continue;
            var ct = stack(pass.Initial.Select(states => states[s].Cotangent ?? Tangents.Zeros(k, states[s].V)).ToArray(), 1);
            result[input] = byBatch ? ct.transpose(1, 2) : ct;
        }
        return result;
    }

    /// <summary>The products x·Wᵀ over every step and direction, and the outputs: no more than a few times the input's product.</summary>
    public static long Allocates(OpContext c)
    {
        var x = c.In(0).Shape;
        var r = c.In(2).Shape;
        if (x.Length != 3 || r.Length != 3) return 0;
        return Sizes.Times(Sizes.Times(x[0], x[1]), Sizes.Times(r[0], r[1]));
    }

    /// <summary>
    /// One pass: per direction, each step's input product (the leaves a reverse pass reads the cotangent of), the hidden
    /// state after each step in sequence order, the initial and final states, and W for the cotangent's product.
    /// </summary>
    private sealed record Pass(CellValue[][] Steps, CellValue[][] Hidden, CellValue[][] Initial, CellValue[][] Final, Tensor[] Weights);

    private static Pass Run(OpContext c, CellMath m)
    {
        var kind = Kinds[c.Node.OpType];
        var a = c.Attr;
        bool byBatch = a.Int("layout", 0) == 1;
        var x = c.In(0);
        // [seq, batch, input], its tangent [K, seq, batch, input].
        var xs = byBatch ? x.Value.transpose(0, 1) : x.Value;
        var dxs = x.Tangent is { } tx ? byBatch ? tx.transpose(1, 2) : tx : null;
        Tensor w = c.In(1).Value, r = c.In(2).Value;
        var b = c.Optional(3)?.Value;
        long steps = xs.size(0), batch = xs.size(1), directions = w.size(0), hidden = r.size(2);
        var direction = a.String("direction", "forward");
        Shapes.Require(xs.dim() == 3 && w.dim() == 3 && r.dim() == 3 && w.size(1) == kind.Gates * hidden && r.size(1) == kind.Gates * hidden
                && w.size(2) == xs.size(2) && r.size(0) == directions && directions == (direction == "bidirectional" ? 2 : 1),
            () => $"{c.Node.OpType} X {Shapes.Text(x.Shape)}, W {Shapes.Text(w.Dims())} and R {Shapes.Text(r.Dims())} do not describe " +
                  $"{(direction == "bidirectional" ? 2 : 1)} direction(s) of {kind.Gates} gates over one input size");
        Shapes.Require(a.Int("hidden_size", hidden) == hidden, () => $"{c.Node.OpType} hidden_size {a.Int("hidden_size", 0)} is not R's {hidden}");
        Shapes.Require(b is null || b.Dims().SequenceEqual([directions, 2 * kind.Gates * hidden]),
            () => $"{c.Node.OpType} B {Shapes.Text(b!.Dims())} is not [{directions}, {2 * kind.Gates * hidden}]");
        if (c.Optional(4) is { } lengths)
            Shapes.Require(HostValues.Ints(lengths.Value).All(l => l == steps),
                () => $"{c.Node.OpType} sequence_lens {Shapes.Text(HostValues.Ints(lengths.Value))} are not all the sequence's {steps} steps; " +
                      "sequences of different lengths are not supported (pad them and mask the result)");
        var activations = Activations(a.Strings("activations"), a.Floats("activation_alpha"), a.Floats("activation_beta"), kind, (int)directions);
        var initial = Enumerable.Range(0, kind.States).Select(s => Initial(c, s == 0 ? 5 : 6, byBatch, directions, batch, hidden, xs)).ToArray();
        var peepholes = kind.PeepholeInput >= 0 ? c.Optional(kind.PeepholeInput)?.Value : null;

        var pass = new Pass(new CellValue[directions][], new CellValue[directions][], new CellValue[directions][], new CellValue[directions][], new Tensor[directions]);
        for (int d = 0; d < directions; d++)
        {
            var wd = w[d];
            var (wb, rb) = b is null ? (null, null) : (b[d].narrow(0, 0, kind.Gates * hidden), b[d].narrow(0, kind.Gates * hidden, kind.Gates * hidden));
            var products = xs.matmul(wd.t());
            if (wb is not null) products = products.Plus(wb);
            var dproducts = dxs?.matmul(wd.t());
            var cell = Cell(c.Node.OpType, m, r[d], rb, peepholes?[d], activations[d], a.Int("linear_before_reset", 0) != 0, hidden);
            pass.Weights[d] = wd;
            pass.Steps[d] = Enumerable.Range(0, (int)steps).Select(t => new CellValue(products.select(0, t), dproducts?.select(1, t))).ToArray();
            pass.Initial[d] = initial.Select(s => new CellValue(s.Value.select(0, d), s.Tangent?.select(1, d))).ToArray();
            pass.Hidden[d] = new CellValue[steps];
            var states = pass.Initial[d];
            bool reverse = direction == "reverse" || d == 1;
            for (long s = 0; s < steps; s++)
            {
                // A long sequence is many ops inside one node: an abandoned batch stops between steps.
                BatchCancellation.ThrowIfRequested();
                long t = reverse ? steps - 1 - s : s;
                states = cell(pass.Steps[d][t], states);
                pass.Hidden[d][t] = states[0];
            }
            pass.Final[d] = states;
        }
        return pass;
    }

    /// <summary>An initial state [directions, batch, hidden] and its tangent, zeros where the input is absent.</summary>
    private static Dual Initial(OpContext c, int input, bool byBatch, long directions, long batch, long hidden, Tensor like)
    {
        if (c.Optional(input) is not { } given) return new Dual(zeros([directions, batch, hidden], like.dtype, like.device), null);
        var value = byBatch ? given.Value.transpose(0, 1) : given.Value;
        Shapes.Require(value.Dims().SequenceEqual([directions, batch, hidden]),
            () => $"{c.Node.OpType} initial state {Shapes.Text(given.Shape)} does not hold {directions} direction(s) of {batch} rows of {hidden}");
        return new Dual(value, given.Tangent is { } t ? byBatch ? t.transpose(1, 2) : t : null);
    }

    /// <summary>Each direction's activations: the attribute's (HardSigmoid taking the next alpha and beta), or the op's defaults.</summary>
    public static RecurrentActivation[][] Activations(string[]? named, float[]? activationAlpha, float[]? activationBeta, CellKind kind, int directions)
    {
        var names = named ?? kind.Activations;
        if (names.Length == kind.Activations.Length && directions == 2) names = [.. names, .. names];
        float[] alphas = activationAlpha ?? [], betas = activationBeta ?? [];
        int next = 0;
        var all = names.Select(n =>
        {
            if (!RecurrentActivation.Takes(n)) return RecurrentActivation.Of(n, 0, 0);
            double alpha = next < alphas.Length ? alphas[next] : 0.2, beta = next < betas.Length ? betas[next] : 0.5;
            next++;
            return RecurrentActivation.Of(n, alpha, beta);
        }).ToArray();
        return Enumerable.Range(0, directions).Select(d => all.Skip(d * kind.Activations.Length).Take(kind.Activations.Length).ToArray()).ToArray();
    }

    /// <summary>One step of the op's cell: the states after it from the step's input product x·Wᵀ (+ Wb) and the states before it.</summary>
    public delegate TValue[] Step<TValue>(TValue product, TValue[] states);

    /// <summary>
    /// One direction's step of the op's cell in the arithmetic <paramref name="m"/>, with what it reads of the weights
    /// taken once per direction rather than on every step: R and its bias, the peepholes p_i, p_o, p_f.
    /// </summary>
    public static Step<TValue> Cell<TValue, TWeight>(string op, ICellMath<TValue, TWeight> m, TWeight r, TWeight? rb, TWeight? peepholes,
        RecurrentActivation[] f, bool linearBeforeReset, long hidden) where TWeight : class => op switch
    {
        "LSTM" => Lstm(m, r, rb, peepholes is null ? null : [.. Enumerable.Range(0, 3).Select(i => m.Rows(peepholes, i * hidden, hidden))], f),
        "GRU" => Gru(m, m.Rows(r, 0, 2 * hidden), m.Rows(r, 2 * hidden, hidden), rb is null ? null : m.Rows(rb, 0, 2 * hidden),
            rb is null ? null : m.Rows(rb, 2 * hidden, hidden), f, linearBeforeReset),
        _ => (product, states) => [m.Apply(m.Add(product, m.Shift(m.Linear(states[0], r), rb)), f[0])],
    };

    /// <summary>i, o, f, c gates; peepholes p_i, p_o, p_f. C' = f ⊙ C + i ⊙ g(c), H' = o ⊙ h(C').</summary>
    private static Step<TValue> Lstm<TValue, TWeight>(ICellMath<TValue, TWeight> m, TWeight r, TWeight? rb, TWeight[]? p, RecurrentActivation[] f)
        where TWeight : class => (product, states) =>
    {
        var (h, cPrev) = (states[0], states[1]);
        var gates = m.Split(m.Add(product, m.Shift(m.Linear(h, r), rb)), 4);
        TValue Peep(TValue gate, TValue cell, int i) => p is null ? gate : m.Add(gate, m.Scale(cell, p[i]));
        var input = m.Apply(Peep(gates[0], cPrev, 0), f[0]);
        var forget = m.Apply(Peep(gates[2], cPrev, 2), f[0]);
        var cNext = m.Add(m.Mul(forget, cPrev), m.Mul(input, m.Apply(gates[3], f[1])));
        var output = m.Apply(Peep(gates[1], cNext, 1), f[0]);
        return [m.Mul(output, m.Apply(cNext, f[2])), cNext];
    };

    /// <summary>
    /// z, r, h gates. With linear_before_reset the reset gate scales H·Rhᵀ + Rbh, else H before the product.
    /// H' = (1 − z) ⊙ h̃ + z ⊙ H.
    /// </summary>
    private static Step<TValue> Gru<TValue, TWeight>(ICellMath<TValue, TWeight> m, TWeight rzr, TWeight rh, TWeight? rbzr, TWeight? rbh,
        RecurrentActivation[] f, bool linearBeforeReset) where TWeight : class => (product, states) =>
    {
        var h = states[0];
        var x = m.Split(product, 3);
        var recurrent = m.Split(m.Shift(m.Linear(h, rzr), rbzr), 2);
        var z = m.Apply(m.Add(x[0], recurrent[0]), f[0]);
        var reset = m.Apply(m.Add(x[1], recurrent[1]), f[0]);
        var candidate = m.Apply(m.Add(x[2], linearBeforeReset
            ? m.Mul(reset, m.Shift(m.Linear(h, rh), rbh))
            : m.Shift(m.Linear(m.Mul(reset, h), rh), rbh)), f[1]);
        return [m.Add(m.Mul(m.OneMinus(z), candidate), m.Mul(z, h))];
    };

    /// <summary>
    /// Y [seq, directions, batch, hidden] and the final states [directions, batch, hidden] (batch first with layout 1) of one
    /// part of the pass (values, tangents or curvature), as many as the node has outputs; null where no step carries the part.
    /// </summary>
    private static Tensor?[] Outputs(OpContext c, Pass pass, Func<CellValue, Tensor?> part, bool leading)
    {
        bool byBatch = c.Attr.Int("layout", 0) == 1;
        int lead = leading ? 1 : 0;
        var outputs = new Tensor?[c.OutputCount];
        var y = Stacked(pass.Hidden.Select(steps => Stacked(steps, part, lead)).ToArray(), lead + 1);
        outputs[0] = y is null ? null : byBatch ? y.permute(leading ? [0, 3, 1, 2, 4] : [2, 0, 1, 3]) : y;
        for (int s = 1; s < outputs.Length; s++)
        {
            var final = Stacked(pass.Final.Select(states => part(states[s - 1])).ToArray(), lead);
            outputs[s] = final is null ? null : byBatch ? final.transpose(lead, lead + 1) : final;
        }
        return outputs;
    }

    private static Tensor? Stacked(CellValue[] values, Func<CellValue, Tensor?> part, int axis) => Stacked(values.Select(part).ToArray(), axis);

    /// <summary>The parts stacked along <paramref name="axis"/>, zeros for the absent ones; null where all are absent.</summary>
    private static Tensor? Stacked(Tensor?[] parts, int axis)
    {
        var like = parts.FirstOrDefault(p => p is not null);
        return like is null ? null : stack(parts.Select(p => p ?? zeros_like(like)).ToArray(), axis);
    }
}
