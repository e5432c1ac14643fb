using static JacService.Core.Compiled.OnnxEmitter;

namespace JacService.Core.Compiled;

/// <summary>
/// The compiled rules the op table's rows name: elementwise slopes, products, and the linear ops' maps and transposes,
/// each the ONNX form of the row's TorchSharp rule.
/// </summary>
internal static class CompiledRules
{
    /// <summary>dy/dx of an elementwise op, as a node of (x, y).</summary>
    public delegate string Slope(OnnxRuleContext c, string x, string y);

    /// <summary>dy/da or dy/db of an elementwise binary op, as a node of (a, b, y); <see cref="One"/> and <see cref="MinusOne"/> add none.</summary>
    public delegate string Partial(OnnxRuleContext c, string a, string b, string y);

    public static readonly Partial One = (_, _, _, _) => throw new InvalidOperationException();
    public static readonly Partial MinusOne = (_, _, _, _) => throw new InvalidOperationException();

    /// <summary>y = f(x) elementwise: tangent and cotangent alike are multiplied by the slope.</summary>
    public static CompiledRule Unary(Slope slope) => new(
        c => [c.Tangent(0) is { } t ? c.Emit.Mul(t, slope(c, c.In(0), c.Out(0))) : null],
        c => [c.Cotangent(0) is { } ct && c.Needs(0) ? c.Emit.Mul(ct, slope(c, c.In(0), c.Out(0))) : null]);

    /// <summary>An elementwise binary op with broadcasting: the tangent sums the operands' terms, each cotangent is summed back over broadcast axes.</summary>
    public static CompiledRule Binary(Partial da, Partial db) => new(
        c =>
        {
            string? sum = null;
            for (int i = 0; i < 2; i++)
            {
                if (c.Tangent(i) is null) continue;
                var term = c.Fit(Term(c, c.Aligned(i), i == 0 ? da : db), i);
                sum = sum is null ? term : c.Emit.Add(sum, term);
            }
            return [sum];
        },
        c => c.Cotangent(0) is not { } ct ? [null, null] :
            [c.Needs(0) ? c.Unbroadcast(Term(c, ct, da), 0) : null, c.Needs(1) ? c.Unbroadcast(Term(c, ct, db), 1) : null]);

    private static string Term(OnnxRuleContext c, string direction, Partial d) =>
        ReferenceEquals(d, One) ? direction
        : ReferenceEquals(d, MinusOne) ? c.Emit.Op("Neg", direction)
        : c.Emit.Mul(direction, d(c, c.In(0), c.In(1), c.Out(0)));

    /// <summary>Y = α·op(A)·op(B) + β·C, differentiated in A and C (B is a weight).</summary>
    public static readonly CompiledRule Gemm = new(
        c =>
        {
            RefuseWeight(c, 1);
            float alpha = c.Float("alpha", 1), beta = c.Float("beta", 1);
            string? t = null;
            if (c.Tangent(0) is { } ta)
            {
                var a = c.Int("transA", 0) != 0 ? c.Emit.Op("Transpose", [ta], IntList("perm", 0, 2, 1)) : ta;
                t = Scaled(c, c.Emit.Op("MatMul", a, c.Int("transB", 0) != 0 ? Transposed(c, c.In(1)) : c.In(1)), alpha);
            }
            if (c.InputCount > 2 && c.Tangent(2) is not null)
            {
                var term = c.Fit(Scaled(c, c.Aligned(2), beta), 2);
                t = t is null ? term : c.Emit.Add(t, term);
            }
            return [t];
        },
        c =>
        {
            RefuseWeight(c, 1);
            if (c.Cotangent(0) is not { } ct) return [null, null, null];
            string? ca = null, cc = null;
            if (c.Needs(0))
            {
                ca = Scaled(c, c.Emit.Op("MatMul", ct, c.Int("transB", 0) != 0 ? c.In(1) : Transposed(c, c.In(1))), c.Float("alpha", 1));
                if (c.Int("transA", 0) != 0) ca = c.Emit.Op("Transpose", [ca], IntList("perm", 0, 2, 1));
            }
            if (c.Needs(2)) cc = c.Unbroadcast(Scaled(c, ct, c.Float("beta", 1)), 2);
            return [ca, null, cc];
        });

    /// <summary>Y = A·W for a weight W of rank 2.</summary>
    public static readonly CompiledRule MatMul = new(
        c =>
        {
            RefuseWeight(c, 1);
            CheckRanks(c);
            return [c.Tangent(0) is { } t ? c.Emit.Op("MatMul", t, c.In(1)) : null];
        },
        c =>
        {
            RefuseWeight(c, 1);
            CheckRanks(c);
            return [c.Cotangent(0) is { } ct && c.Needs(0) ? c.Emit.Op("MatMul", ct, Transposed(c, c.In(1))) : null, null];
        });

    public static readonly CompiledRule Identity = new(c => [c.Tangent(0)], c => [c.Needs(0) ? c.Cotangent(0) : null]);

    /// <summary>Reshape, Flatten, Squeeze, Unsqueeze: the same elements in a new shape, so directions are reshaped to [K, ..y] and back to [K, ..x].</summary>
    public static readonly CompiledRule Reshaping = new(
        c => [c.Tangent(0) is { } t ? c.Emit.Op("Reshape", c.Emit.Full(t, c.Basis, c.In(0)), c.Emit.WithBasis(c.Basis, c.Out(0))) : null],
        c => [c.Cotangent(0) is { } ct && c.Needs(0) ? c.Emit.Op("Reshape", c.Emit.Full(ct, c.Basis, c.Out(0)), c.Emit.WithBasis(c.Basis, c.In(0))) : null]);

    public static readonly CompiledRule Transpose = new(
        c => [c.Tangent(0) is { } t ? c.Emit.Op("Transpose", [t], IntList("perm", [0, .. Permutation(c).Select(p => p + 1)])) : null],
        c =>
        {
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return [null];
            var perm = Permutation(c);
            var inverse = new long[perm.Length];
            for (int i = 0; i < perm.Length; i++) inverse[perm[i]] = i;
            return [c.Emit.Op("Transpose", [ct], IntList("perm", [0, .. inverse.Select(p => p + 1)]))];
        });

    /// <summary>Concatenation along a per-sample axis: tangents (zeros for inputs without one) concatenated, the cotangent sliced back.</summary>
    public static readonly CompiledRule Concat = new(
        c =>
        {
            long axis = c.DirectionAxis(0);
            var parts = Enumerable.Range(0, c.InputCount)
                .Select(i => c.Emit.Full(c.Tangent(i) ?? c.Emit.Scalar(0), c.Basis, c.In(i))).ToArray();
            return [c.Emit.Op("Concat", parts, Int("axis", axis))];
        },
        c =>
        {
            long axis = c.DirectionAxis(0);
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct) return result;
            var full = c.Emit.Full(ct, c.Basis, c.Out(0));
            long start = 0;
            for (int i = 0; i < c.InputCount; i++)
            {
                long size = c.Emit.Shape(c.In(i))[axis - 1];
                if (c.Needs(i)) result[i] = c.Emit.Op("Slice", full, c.Emit.Ints(start), c.Emit.Ints(start + size), c.Emit.Ints(axis));
                start += size;
            }
            return result;
        });

    /// <summary>y = x − log Σ eˣ along the axis: t − Σ softmax·t going forward, ct − softmax·Σ ct going back.</summary>
    public static readonly CompiledRule LogSoftmax = new(
        c =>
        {
            if (c.Tangent(0) is not { } t) return [null];
            var softmax = c.Emit.Op("Exp", c.Out(0));
            return [c.Emit.Sub(t, Sum(c, c.Emit.Mul(softmax, t)))];
        },
        c =>
        {
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return [null];
            var full = c.Emit.Full(ct, c.Basis, c.Out(0));
            return [c.Emit.Sub(full, c.Emit.Mul(c.Emit.Op("Exp", c.Out(0)), Sum(c, full)))];
        });

    /// <summary>y = softmax(x) along the axis: y·(t − Σ y·t) going forward, y·(ct − Σ y·ct) going back.</summary>
    public static readonly CompiledRule Softmax = new(
        c => [c.Tangent(0) is { } t ? c.Emit.Mul(c.Out(0), c.Emit.Sub(t, Sum(c, c.Emit.Mul(c.Out(0), t)))) : null],
        c => [c.Cotangent(0) is { } ct && c.Needs(0) ? c.Emit.Mul(c.Out(0), c.Emit.Sub(ct, Sum(c, c.Emit.Mul(c.Out(0), ct)))) : null]);

    /// <summary>A sum over the op's axis (default the last), kept as an axis of one.</summary>
    private static string Sum(OnnxRuleContext c, string direction) =>
        c.Emit.Op("ReduceSum", [direction, c.Emit.Ints(c.DirectionAxis(-1))], Int("keepdims", 1));

    private static string Scaled(OnnxRuleContext c, string direction, float factor) =>
        factor == 1 ? direction : c.Emit.Mul(direction, c.Emit.Scalar(factor));

    private static string Transposed(OnnxRuleContext c, string matrix) => c.Emit.Op("Transpose", [matrix], IntList("perm", 1, 0));

    private static void RefuseWeight(OnnxRuleContext c, int input)
    {
        if (c.Tangent(input) is not null || c.Needs(input))
            throw new NotCompilableException($"{c.OpType} '{c.Out(0)}' takes its input {input} from wrt; only its data input is compiled");
    }

    private static void CheckRanks(OnnxRuleContext c)
    {
        if (c.Emit.Rank(c.In(0)) < 2 || c.Emit.Rank(c.In(1)) != 2)
            throw new NotCompilableException($"MatMul '{c.Out(0)}' multiplies ranks {c.Emit.Rank(c.In(0))} and {c.Emit.Rank(c.In(1))}; compiled for rank ≥ 2 by a matrix");
    }

    private static long[] Permutation(OnnxRuleContext c) =>
        c.Ints("perm") ?? Enumerable.Range(0, c.Emit.Rank(c.In(0))).Reverse().Select(p => (long)p).ToArray();
}
