using JacService.Core.Ops;
using static JacService.Core.Compiled.OnnxEmitter;

namespace JacService.Core.Compiled;

internal static partial class CompiledRules
{
    /// <summary>
    /// LSTM, GRU and RNN unrolled over the sequence's steps, which every plan fixes: the same cells as the interpreter's
    /// (<see cref="Recurrent.Cell{TValue, TWeight}"/>) written as nodes by <see cref="CellEmitter"/>, which recompute the
    /// states the node keeps inside. Going forward each step carries its tangents; going back the steps are written
    /// forwards and their transposes last first (backpropagation through time). x·Wᵀ for every step is one product, and
    /// so is its cotangent's.
    /// </summary>
    public static readonly CompiledRule Recurrent = new(
        c =>
        {
            var unrolled = Unroll(c, tangents: true);
            var outputs = new string?[c.OutputCount];
            if (c.Out(0).Length > 0)
                outputs[0] = unrolled.Outputs(c, unrolled.Hidden.Select(steps => steps.Select(v => unrolled.Math.Direction(v)).ToArray()).ToArray());
            for (int s = 1; s < c.OutputCount; s++)
                if (c.Out(s).Length > 0) outputs[s] = unrolled.Final(c, unrolled.States.Select(states => unrolled.Math.Direction(states[s - 1])).ToArray());
            return outputs;
        },
        c =>
        {
            var result = new string?[c.InputCount];
            int[] initialStates = c.OpType == "LSTM" ? [5, 6] : [5];
            if (!c.Needs(0) && !initialStates.Any(c.Needs)) return result;
            var unrolled = Unroll(c, tangents: false);
            var e = c.Emit;
            if (c.Cotangent(0) is { } ctY)
            {
                var full = e.Full(ctY, c.Basis, c.Out(0));
                for (int d = 0; d < unrolled.Hidden.Length; d++)
                    for (int t = 0; t < unrolled.Hidden[d].Length; t++)
                        unrolled.Hidden[d][t].AddCotangent(e, e.Select(e.Select(full, 1, t), 1, d));
            }
            for (int s = 1; s < c.OutputCount; s++)
            {
                if (c.Cotangent(s) is not { } ct) continue;
                var full = e.Full(ct, c.Basis, c.Out(s));
                for (int d = 0; d < unrolled.States.Length; d++) unrolled.States[d][s - 1].AddCotangent(e, e.Select(full, 1, d));
            }
            unrolled.Math.Backward();
            if (c.Needs(0))
            {
                string? ctX = null;
                for (int d = 0; d < unrolled.Steps.Length; d++)
                {
                    var products = e.Stack(unrolled.Steps[d].Select(p => p.Cotangent ?? unrolled.Math.Zeros(p)), 1);
                    var term = e.Op("MatMul", products, unrolled.Weights[d]);
                    ctX = ctX is null ? term : e.Add(ctX, term);
                }
                result[0] = ctX;
            }
            for (int s = 0; s < initialStates.Length; s++)
            {
                if (!c.Needs(initialStates[s])) continue;
                result[initialStates[s]] = unrolled.Final(c, unrolled.Initial.Select(states => states[s].Cotangent ?? unrolled.Math.Zeros(states[s])).ToArray());
            }
            return result;
        });

    /// <summary>
    /// A recurrent node's cells written out: per direction, each step's input product (x·Wᵀ + Wb), the hidden state after
    /// each step in sequence order, the initial and final states, and W for the cotangent's product.
    /// </summary>
    private sealed record UnrolledCells(CellEmitter Math, EmittedCellValue[][] Steps, EmittedCellValue[][] Hidden, EmittedCellValue[][] Initial,
        EmittedCellValue[][] States, string[] Weights)
    {
        /// <summary>Y's direction [K, seq, directions, batch, hidden] from each direction's steps'.</summary>
        public string Outputs(OnnxRuleContext c, string[][] steps) =>
            c.Emit.Stack(Enumerable.Range(0, steps[0].Length).Select(t => c.Emit.Stack(steps.Select(d => d[t]), 1)), 1);

        /// <summary>A state's direction [K, directions, batch, hidden] from each direction's.</summary>
        public string Final(OnnxRuleContext c, string[] directions) => c.Emit.Stack(directions, 1);
    }

    private static UnrolledCells Unroll(OnnxRuleContext c, bool tangents)
    {
        var e = c.Emit;
        var kind = Ops.Recurrent.Kinds[c.OpType];
        // The graph holds the node itself, which ONNX Runtime 1.31 does not run batch first.
        if (c.Int("layout", 0) != 0)
            throw new NotCompilableException($"{c.OpType} '{c.Out(0)}' is batch first (layout 1), which ONNX Runtime's recurrent kernels do not run");
        bool Given(int i) => i < c.InputCount && c.In(i).Length > 0;
        if (Given(4))
            throw new NotCompilableException($"{c.OpType} '{c.Out(0)}' takes sequence_lens; compiled for full sequences without it");
        var x = c.In(0);
        long steps = e.Shape(x)[0];
        long directions = e.Shape(c.In(1))[0], hidden = e.Shape(c.In(2))[2], gates = kind.Gates * hidden;
        var math = new CellEmitter(e, c.Basis, hidden, record: !tangents);

        // x [seq, batch, input], its tangent [K, seq, batch, input].
        var dxs = tangents && c.Tangent(0) is { } tx ? e.Full(tx, c.Basis, x) : null;
        var activations = Ops.Recurrent.Activations(c.Strings("activations"), c.Floats("activation_alpha"), c.Floats("activation_beta"), kind, (int)directions);
        // An absent initial state is zeros [batch, hidden], the batch read at run time.
        var zeros = e.Op("Expand", e.Scalar(0), e.Op("Concat", [e.Op("Slice", e.Op("Shape", x), e.Ints(1), e.Ints(2)), e.Ints(hidden)], Int("axis", 0)));
        var initial = Enumerable.Range(0, kind.States).Select(s => InitialState(c, s == 0 ? 5 : 6, tangents)).ToArray();

        var unrolled = new UnrolledCells(math, new EmittedCellValue[directions][], new EmittedCellValue[directions][], new EmittedCellValue[directions][],
            new EmittedCellValue[directions][], new string[directions]);
        var direction = c.String("direction", "forward");
        for (int d = 0; d < directions; d++)
        {
            var wd = e.Select(c.In(1), 0, d);
            var bias = Given(3) ? e.Select(c.In(3), 0, d) : null;
            var products = e.RuntimeOp("FusedMatMul", [x, wd], Int("transB", 1));
            if (bias is not null) products = e.Add(products, math.Rows(bias, 0, gates));
            var dproducts = dxs is null ? null : e.RuntimeOp("FusedMatMul", [dxs, wd], Int("transB", 1));
            var cell = Ops.Recurrent.Cell(c.OpType, math, e.Select(c.In(2), 0, d), bias is null ? null : math.Rows(bias, gates, gates),
                kind.PeepholeInput >= 0 && Given(kind.PeepholeInput) ? e.Select(c.In(kind.PeepholeInput), 0, d) : null,
                activations[d], c.Int("linear_before_reset", 0) != 0, hidden);
            unrolled.Weights[d] = wd;
            unrolled.Steps[d] = Enumerable.Range(0, (int)steps)
                .Select(t => new EmittedCellValue(e.Select(products, 0, t), dproducts is null ? null : e.Select(dproducts, 1, t))).ToArray();
            unrolled.Initial[d] = initial.Select(s => s is null ? new EmittedCellValue(zeros)
                : new EmittedCellValue(e.Select(s.V, 0, d), s.G is { } g ? e.Select(g, 1, d) : null)).ToArray();
            unrolled.Hidden[d] = new EmittedCellValue[steps];
            var states = unrolled.Initial[d];
            bool reverse = direction == "reverse" || d == 1;
            for (long s = 0; s < steps; s++)
            {
                long t = reverse ? steps - 1 - s : s;
                states = cell(unrolled.Steps[d][t], states);
                unrolled.Hidden[d][t] = states[0];
            }
            unrolled.States[d] = states;
        }
        return unrolled;
    }

    /// <summary>An initial state given as input <paramref name="i"/>, as [directions, batch, hidden], and its full tangent; null where absent.</summary>
    private static EmittedCellValue? InitialState(OnnxRuleContext c, int i, bool tangents)
    {
        if (i >= c.InputCount || c.In(i).Length == 0) return null;
        return new EmittedCellValue(c.In(i), tangents && c.Tangent(i) is { } t ? c.Emit.Full(t, c.Basis, c.In(i)) : null);
    }
}
