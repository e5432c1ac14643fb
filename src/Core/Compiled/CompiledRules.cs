using static JacService.Core.Compiled.OnnxEmitter;

namespace JacService.Core.Compiled;

/// <summary>
/// The compiled rules the op table's rows name: elementwise slopes, products, and the linear ops' maps and transposes,
/// each the ONNX form of the row's TorchSharp rule.
/// </summary>
internal static partial class CompiledRules
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

    /// <summary>Sum or Mean of any number of inputs: the inputs' tangents added (÷ n), the cotangent summed back to each input.</summary>
    public static CompiledRule Combination(bool mean) => new(
        c =>
        {
            string? sum = null;
            for (int i = 0; i < c.InputCount; i++)
            {
                if (c.Tangent(i) is null) continue;
                var term = c.Fit(c.Aligned(i), i);
                sum = sum is null ? term : c.Emit.Add(sum, term);
            }
            return [sum is not null && mean ? c.Emit.Mul(sum, c.Emit.Scalar(1f / c.InputCount)) : sum];
        },
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct) return result;
            if (mean) ct = c.Emit.Mul(ct, c.Emit.Scalar(1f / c.InputCount));
            for (int i = 0; i < c.InputCount; i++)
                if (c.Needs(i)) result[i] = c.Unbroadcast(ct, i);
            return result;
        });

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
                t = Scaled(c, TimesWeight(c, a, c.In(1), transposed: c.Int("transB", 0) != 0), alpha);
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
                ca = Scaled(c, TimesWeight(c, ct, c.In(1), transposed: c.Int("transB", 0) == 0), c.Float("alpha", 1));
                if (c.Int("transA", 0) != 0) ca = c.Emit.Op("Transpose", [ca], IntList("perm", 0, 2, 1));
            }
            if (c.Needs(2)) cc = c.Unbroadcast(Scaled(c, ct, c.Float("beta", 1)), 2);
            return [ca, null, cc];
        });

    /// <summary>
    /// Y = A·B for operands of rank 2 or more (batches of matrices, broadcast): dY = dA·B + A·dB, and the cotangents
    /// Ȳ·Bᵀ and Aᵀ·Ȳ summed back over the batch axes an operand broadcast along. Attention multiplies two values that
    /// both depend on wrt (queries by keys, weights by values); a layer multiplies one by a weight.
    /// </summary>
    public static readonly CompiledRule MatMul = new(
        c =>
        {
            CheckForwardRanks(c);
            string? a = c.Tangent(0) is null ? null : c.Emit.Op("MatMul", c.Aligned(0), c.In(1));
            string? b = c.Tangent(1) is null ? null : c.Emit.Op("MatMul", c.In(0), c.Aligned(1));
            return [a is null ? b : b is null ? a : c.Emit.Add(a, b)];
        },
        c =>
        {
            CheckRanks(c);
            if (c.Cotangent(0) is not { } ct) return [null, null];
            // Where an operand broadcast along a batch axis, the other one spans it, and so does the product to sum.
            return
            [
                c.Needs(0) ? c.SumBack(TimesWeight(c, ct, c.In(1), transposed: true), c.BroadcastAxes(0, trailing: 2), 0) : null,
                c.Needs(1) ? c.SumBack(c.Emit.TransposedTimes(c.In(0), c.Emit.Rank(c.In(0)), ct), c.BroadcastAxes(1, trailing: 2), 1) : null,
            ];
        });

    public static readonly CompiledRule Identity = new(c => [c.Tangent(0)], c => [c.Needs(0) ? c.Cotangent(0) : null]);

    /// <summary>Reshape, Flatten, Squeeze, Unsqueeze: the same elements in a new shape, so directions are reshaped to [K, ..y] and back to [K, ..x].</summary>
    public static readonly CompiledRule Reshaping = new(
        c => [c.Tangent(0) is { } t ? c.Emit.Op("Reshape", c.Emit.Full(t, c.Basis, c.In(0)), c.Emit.WithBasis(c.Basis, c.Out(0))) : null],
        c => [c.Cotangent(0) is { } ct && c.Needs(0) ? c.Emit.Op("Reshape", c.Emit.Full(ct, c.Basis, c.Out(0)), c.Emit.WithBasis(c.Basis, c.In(0))) : null]);

    /// <summary>
    /// DepthToSpace and SpaceToDepth on directions [K, B, C, H, W]: the same reshape, permutation and reshape with the
    /// basis and batch axes read as one, and back by the inverse permutation.
    /// </summary>
    public static readonly CompiledRule BlockRearrange = new(
        c =>
        {
            if (c.Tangent(0) is not { } t) return [null];
            var layout = LayoutOf(c);
            var moved = c.Emit.Op("Transpose", [c.Emit.Op("Reshape", t, c.Emit.Ints([-1, .. layout.Split]))], IntList("perm", [0, .. layout.Perm.Select(p => p + 1)]));
            return [c.Emit.Op("Reshape", moved, c.Emit.Ints([c.Basis, -1, .. layout.Output]))];
        },
        c =>
        {
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return [null];
            var layout = LayoutOf(c);
            var moved = c.Emit.Op("Transpose", [c.Emit.Op("Reshape", ct, c.Emit.Ints([-1, .. layout.Permuted]))], IntList("perm", [0, .. layout.Inverse.Select(p => p + 1)]));
            return [c.Emit.Op("Reshape", moved, c.Emit.Ints([c.Basis, -1, .. layout.Input]))];
        });

    private static Ops.BlockRearrange.Layout LayoutOf(OnnxRuleContext c) =>
        Ops.BlockRearrange.For(c.OpType, c.Int("blocksize", 0), c.String("mode", "DCR"), c.Emit.Shape(c.In(0)));

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

    /// <summary>Split along a per-sample axis: the tangent split the same way, the cotangents (zeros for outputs without one) concatenated back.</summary>
    public static readonly CompiledRule Split = new(
        c =>
        {
            if (c.Tangent(0) is not { } t) return new string?[c.OutputCount];
            long axis = SplitAxis(c);
            var sizes = Enumerable.Range(0, c.OutputCount).Select(o => c.Emit.Shape(c.Out(o))[axis - 1]).ToArray();
            return c.Emit.Ops("Split", c.OutputCount, [t, c.Emit.Ints(sizes)], Int("axis", axis));
        },
        c =>
        {
            if (!c.Needs(0) || Enumerable.Range(0, c.OutputCount).All(o => c.Cotangent(o) is null)) return [null, null];
            var parts = Enumerable.Range(0, c.OutputCount).Select(o => c.Emit.Full(c.Cotangent(o) ?? c.Emit.Scalar(0), c.Basis, c.Out(o))).ToArray();
            return [c.Emit.Op("Concat", parts, Int("axis", SplitAxis(c))), null];
        });

    private static long SplitAxis(OnnxRuleContext c) => c.SampleAxis(c.Int("axis", 0), c.In(0)) + 1;

    /// <summary>
    /// GatherElements along a per-sample axis: the directions gathered by the same indices (broadcast over the basis);
    /// going back, scattered and added where they came from, which ScatterElements does from opset 16.
    /// </summary>
    public static readonly CompiledRule GatherElements = new(
        c =>
        {
            if (c.Tangent(0) is not { } t) return [null];
            return [c.Emit.Op("GatherElements", [c.Emit.Full(t, c.Basis, c.In(0)), BasisIndices(c)], Int("axis", c.DirectionAxis(0)))];
        },
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return result;
            if (c.Emit.Opset < 16)
                throw new NotCompilableException($"GatherElements '{c.Out(0)}' is compiled in reverse from opset 16 (the model's is {c.Emit.Opset})");
            var zeros = c.Emit.Full(c.Emit.Scalar(0), c.Basis, c.In(0));
            result[0] = c.Emit.Op("ScatterElements", [zeros, BasisIndices(c), c.Emit.Full(ct, c.Basis, c.Out(0))],
                Int("axis", c.DirectionAxis(0)), String("reduction", "add"));
            return result;
        });

    /// <summary>
    /// GatherND forward: the directions [K, ..data] gathered by the indices repeated for every direction, with the basis
    /// axis as one more batch axis. Going back (from opset 16, whose ScatterND adds tuples that repeat), the cotangent is
    /// scattered and added into zeros, the basis axis moved last so that the tuples address the data's own axes; with
    /// batch_dims each tuple is first prefixed with its batch positions, which ScatterND does not take as an attribute.
    /// </summary>
    public static readonly CompiledRule GatherNd = new(
        c => [c.Tangent(0) is { } t
            ? c.Emit.Op("GatherND", [c.Emit.Full(t, c.Basis, c.In(0)), BasisIndices(c)], Int("batch_dims", c.Int("batch_dims", 0) + 1))
            : null],
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return result;
            if (c.Emit.Opset < 16)
                throw new NotCompilableException($"GatherND '{c.Out(0)}' is compiled in reverse from opset 16 (the model's is {c.Emit.Opset})");
            long batchDims = c.Int("batch_dims", 0);
            var tuples = batchDims == 0 ? c.In(1) : WithBatchPositions(c, c.In(1), batchDims);
            var zeros = BasisLast(c, c.Emit.Full(c.Emit.Scalar(0), c.Basis, c.In(0)), c.In(0));
            var scattered = c.Emit.Op("ScatterND", [zeros, tuples, BasisLast(c, c.Emit.Full(ct, c.Basis, c.Out(0)), c.Out(0))], String("reduction", "add"));
            result[0] = BasisFirst(c, scattered, c.In(0));
            return result;
        });

    /// <summary>
    /// ScatterND: both directions scattered alike (written, or added), with the basis axis moved last so that the index
    /// tuples address the data's own axes; going back, the data's cotangent zeroed where the updates were written over it
    /// (kept whole for add), the updates' gathered at the tuples.
    /// </summary>
    public static readonly CompiledRule ScatterNd = new(
        c =>
        {
            if (c.Tangent(0) is null && c.Tangent(2) is null) return [null];
            var data = BasisLast(c, c.Emit.Full(c.Tangent(0) ?? c.Emit.Scalar(0), c.Basis, c.In(0)), c.In(0));
            var updates = BasisLast(c, c.Emit.Full(c.Tangent(2) ?? c.Emit.Scalar(0), c.Basis, c.In(2)), c.In(2));
            return [BasisFirst(c, c.Emit.Op("ScatterND", [data, c.In(1), updates], [.. c.Attributes.Where(a => a.Name == "reduction")]), c.Out(0))];
        },
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct) return result;
            var full = BasisLast(c, c.Emit.Full(ct, c.Basis, c.Out(0)), c.Out(0));
            if (c.Needs(0))
                result[0] = c.String("reduction", "none") == "add" ? ct
                    : BasisFirst(c, c.Emit.Op("ScatterND", full, c.In(1), BasisLast(c, c.Emit.Full(c.Emit.Scalar(0), c.Basis, c.In(2)), c.In(2))), c.In(0));
            if (c.Needs(2)) result[2] = BasisFirst(c, c.Emit.Op("GatherND", full, c.In(1)), c.In(2));
            return result;
        });

    /// <summary>Directions [K, ..value] of a model value as [..value, K].</summary>
    private static string BasisLast(OnnxRuleContext c, string direction, string value)
    {
        int rank = c.Emit.Rank(value);
        return c.Emit.Op("Transpose", [direction], IntList("perm", [.. Enumerable.Range(1, rank).Select(a => (long)a), 0]));
    }

    /// <summary>Directions [..value, K] of a model value as [K, ..value].</summary>
    private static string BasisFirst(OnnxRuleContext c, string direction, string value)
    {
        int rank = c.Emit.Rank(value);
        return c.Emit.Op("Transpose", [direction], IntList("perm", [rank, .. Enumerable.Range(0, rank).Select(a => (long)a)]));
    }

    /// <summary>
    /// Index tuples [..batch, ..rest, t] whose first <paramref name="batchDims"/> axes are batch axes, as tuples
    /// [..batch, ..rest, batchDims + t] that spell out those positions first.
    /// </summary>
    private static string WithBatchPositions(OnnxRuleContext c, string indices, long batchDims)
    {
        int rank = c.Emit.Rank(indices);
        var dims = c.Emit.Op("Shape", indices);
        var grid = c.Emit.Op("Concat", [c.Emit.Op("Slice", dims, c.Emit.Ints(0), c.Emit.Ints(rank - 1)), c.Emit.Ints(1)], Int("axis", 0));
        var parts = new List<string>();
        for (int j = 0; j < batchDims; j++)
        {
            var count = c.Emit.Op("Squeeze", c.Emit.Op("Slice", dims, c.Emit.Ints(j), c.Emit.Ints(j + 1)), c.Emit.Ints(0));
            var positions = c.Emit.Op("Range", c.Emit.Op("Squeeze", c.Emit.Ints(0), c.Emit.Ints(0)), count, c.Emit.Op("Squeeze", c.Emit.Ints(1), c.Emit.Ints(0)));
            long[] along = [.. Enumerable.Repeat(1L, j), -1, .. Enumerable.Repeat(1L, rank - 1 - j)];
            parts.Add(c.Emit.Op("Expand", c.Emit.Op("Reshape", positions, c.Emit.Ints(along)), grid));
        }
        parts.Add(indices);
        return c.Emit.Op("Concat", [.. parts], Int("axis", -1));
    }

    /// <summary>
    /// ScatterElements along a per-sample axis: both directions scattered alike (written, or from opset 16 added); going
    /// back, the data's cotangent zeroed where the updates were written over it (kept whole for add), the updates' gathered.
    /// </summary>
    public static readonly CompiledRule ScatterElements = new(
        c =>
        {
            if (c.Tangent(0) is null && c.Tangent(2) is null) return [null];
            var data = c.Emit.Full(c.Tangent(0) ?? c.Emit.Scalar(0), c.Basis, c.In(0));
            var updates = c.Emit.Full(c.Tangent(2) ?? c.Emit.Scalar(0), c.Basis, c.In(2));
            return [c.Emit.Op("ScatterElements", [data, BasisIndices(c), updates], [.. c.Attributes.Where(a => a.Name == "reduction"), Int("axis", c.DirectionAxis(0))])];
        },
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct) return result;
            var full = c.Emit.Full(ct, c.Basis, c.Out(0));
            if (c.Needs(0))
                result[0] = c.String("reduction", "none") == "add" ? ct
                    : c.Emit.Op("ScatterElements", [full, BasisIndices(c), c.Emit.Full(c.Emit.Scalar(0), c.Basis, c.In(2))], Int("axis", c.DirectionAxis(0)));
            if (c.Needs(2)) result[2] = c.Emit.Op("GatherElements", [full, BasisIndices(c)], Int("axis", c.DirectionAxis(0)));
            return result;
        });

    /// <summary>GatherElements' and ScatterElements' indices with a leading basis axis, [K, ..indices].</summary>
    private static string BasisIndices(OnnxRuleContext c) => ForEveryDirection(c, c.In(1));

    /// <summary><paramref name="value"/> repeated along a leading basis axis, [K, ..value]: indices that every direction shares.</summary>
    private static string ForEveryDirection(OnnxRuleContext c, string value) =>
        c.Emit.Op("Expand", c.Emit.Op("Unsqueeze", value, c.Emit.Ints(0)), c.Emit.WithBasis(c.Basis, value));

    /// <summary>CumSum along a per-sample axis the file fixes: the directions summed alike, the cotangent summed the other way.</summary>
    public static readonly CompiledRule CumSum = new(
        c => [c.Tangent(0) is { } t ? RunningSum(c, c.Emit.Full(t, c.Basis, c.In(0)), transposed: false) : null],
        c => [c.Cotangent(0) is { } ct && c.Needs(0) ? RunningSum(c, c.Emit.Full(ct, c.Basis, c.Out(0)), transposed: true) : null, null]);

    private static string RunningSum(OnnxRuleContext c, string direction, bool transposed)
    {
        var axis = c.ConstantInput(1) ?? throw new NotCompilableException($"CumSum '{c.Out(0)}' takes an axis the file does not fix");
        long along = c.SampleAxis(axis[0], c.In(0)) + 1;
        bool reverse = (c.Int("reverse", 0) != 0) != transposed;
        return c.Emit.Op("CumSum", [direction, c.Emit.Ints(along)], Int("exclusive", c.Int("exclusive", 0)), Int("reverse", reverse ? 1 : 0));
    }

    /// <summary>Trilu on the last two axes: the same triangle of the directions, both ways (a projection).</summary>
    public static readonly CompiledRule Trilu = new(
        c => [c.Tangent(0) is { } t ? Triangle(c, c.Emit.Full(t, c.Basis, c.In(0))) : null],
        c => [c.Cotangent(0) is { } ct && c.Needs(0) ? Triangle(c, c.Emit.Full(ct, c.Basis, c.Out(0))) : null, null]);

    private static string Triangle(OnnxRuleContext c, string direction) =>
        c.Emit.Op("Trilu", c.InputCount > 1 && c.In(1).Length > 0 ? [direction, c.In(1)] : [direction], Int("upper", c.Int("upper", 1)));

    /// <summary>Tile with the batch axis untiled: the directions tiled alike, the cotangent's tiles summed back.</summary>
    public static readonly CompiledRule Tile = new(
        c =>
        {
            if (c.Tangent(0) is not { } t) return [null];
            return [c.Emit.Op("Tile", t, c.Emit.Ints([1, .. TileRepeats(c)]))];
        },
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return result;
            var repeats = TileRepeats(c);
            var shape = c.Emit.Shape(c.In(0));
            var split = c.Emit.Op("Reshape", c.Emit.Full(ct, c.Basis, c.Out(0)), c.Emit.Ints([c.Basis, .. shape.SelectMany((d, i) => new[] { repeats[i], d })]));
            result[0] = c.Emit.Op("ReduceSum", [split, c.Emit.Ints([.. Enumerable.Range(0, shape.Length).Select(i => 1L + 2 * i)])], Int("keepdims", 0));
            return result;
        });

    private static long[] TileRepeats(OnnxRuleContext c)
    {
        var repeats = c.ConstantInput(1) ?? throw new NotCompilableException($"Tile '{c.Out(0)}' takes repeats the file does not fix");
        if (repeats[0] != 1) throw new NotCompilableException($"Tile '{c.Out(0)}' repeats the batch axis");
        return repeats;
    }

    /// <summary>
    /// Einsum: each operand's directions through the same contraction with a basis label leading its term and the
    /// output's; going back, the output's cotangent contracted with the other operands (and ones along labels only that
    /// operand has), put back on the diagonals an operand's term reads. With "...", compiled where the operand's batch dimensions are the output's (no broadcast to undo).
    /// </summary>
    public static readonly CompiledRule Einsum = new(
        c =>
        {
            var equation = Ops.EinsumEquation.Parse(c.String("equation", ""), c.InputCount);
            char basis = equation.FreeLabel();
            string? sum = null;
            for (int i = 0; i < c.InputCount; i++)
            {
                if (c.Tangent(i) is not { } t) continue;
                var inputs = Enumerable.Range(0, c.InputCount).Select(j => j == i ? c.Emit.Full(t, c.Basis, c.In(i)) : c.In(j)).ToArray();
                var term = c.Emit.Op("Einsum", inputs, String("equation", equation.WithLabel(basis, i).Text));
                sum = sum is null ? term : c.Emit.Add(sum, term);
            }
            return [sum];
        },
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct) return result;
            var equation = Ops.EinsumEquation.Parse(c.String("equation", ""), c.InputCount);
            char basis = equation.FreeLabel();
            for (int i = 0; i < c.InputCount; i++)
            {
                if (!c.Needs(i)) continue;
                var shape = c.Emit.Shape(c.In(i));
                var output = c.Emit.Shape(c.Out(0));
                int labels = Ops.EinsumEquation.Labels(equation.Inputs[i]).Length, outputLabels = Ops.EinsumEquation.Labels(equation.Output).Length;
                if (!shape[..^labels].SequenceEqual(output[..^outputLabels]))
                    throw new NotCompilableException($"Einsum '{c.Out(0)}' broadcasts the batch dimensions of its input {i}; compiled where they are the output's");
                var (pullback, own) = equation.Pullback(basis, i);
                string[] inputs = [c.Emit.Full(ct, c.Basis, c.Out(0)), .. Enumerable.Range(0, c.InputCount).Where(j => j != i).Select(c.In),
                    .. own.Select(l => { long n = equation.Size(i, l, shape); return c.Emit.Floats([.. Enumerable.Repeat(1f, (int)n)], n); })];
                result[i] = c.Emit.Op("Einsum", inputs, String("equation", pullback.Text));
                if (equation.Diagonal(basis, i) is { } diagonal)
                    result[i] = c.Emit.Op("Einsum", [result[i]!, .. diagonal.Identities.Select(l => c.Emit.Identity(equation.Size(i, l, shape)))],
                        String("equation", diagonal.Equation));
            }
            return result;
        });

    /// <summary>Most entries of a Gather's one-hot matrix: a larger index set or axis stays in the interpreter.</summary>
    private const long MaxOneHotEntries = 1 << 20;

    /// <summary>
    /// Gather along a per-sample axis at indices the file fixes: the tangent gathered the same way; going back, each
    /// cotangent is added to the position it was gathered from, as a product by the indices' one-hot matrix over the
    /// indices' axes moved last.
    /// </summary>
    public static readonly CompiledRule Gather = new(
        c =>
        {
            if (c.Tangent(0) is not { } t) return [null];
            long axis = c.SampleAxis(c.Int("axis", 0), c.In(0));
            return [c.Emit.Op("Gather", [t, c.In(1)], Int("axis", axis + 1))];
        },
        c =>
        {
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return [null, null];
            int rank = c.Emit.Rank(c.In(0));
            long axis = c.SampleAxis(c.Int("axis", 0), c.In(0));
            long extent = c.Emit.Shape(c.In(0))[axis];
            long[] indices = c.ConstantInput(1)!;
            int indexRank = c.Emit.Rank(c.In(1));
            if (indices.Length * extent > MaxOneHotEntries)
                throw new NotCompilableException($"Gather '{c.Out(0)}' takes {indices.Length} indices along an axis of {extent}; compiled up to {MaxOneHotEntries} one-hot entries");
            var oneHot = new float[indices.Length * extent];
            for (int i = 0; i < indices.Length; i++) oneHot[i * extent + (indices[i] < 0 ? indices[i] + extent : indices[i])] = 1;
            // Direction coordinates: the basis, the data's axes before `axis`, the indices' axes, the data's axes after it.
            int outRank = rank + indexRank;
            long first = axis + 1, afterIndices = axis + 1 + indexRank;
            long[] last = [.. Enumerable.Range(0, (int)first).Select(a => (long)a), .. Enumerable.Range((int)afterIndices, outRank - (int)afterIndices).Select(a => (long)a),
                .. Enumerable.Range((int)first, indexRank).Select(a => (long)a)];
            var moved = c.Emit.Op("Transpose", [ct], IntList("perm", last));
            var rows = c.Emit.Op("Reshape", moved, c.Emit.Ints([.. Enumerable.Repeat(0L, outRank - indexRank), indices.Length]));
            var added = c.Emit.Op("MatMul", rows, c.Emit.Floats(oneHot, indices.Length, extent));
            // The gathered axis, now last, back to its place.
            int addedRank = outRank - indexRank + 1;
            long[] back = [.. Enumerable.Range(0, (int)first).Select(a => (long)a), addedRank - 1, .. Enumerable.Range((int)first, addedRank - 1 - (int)first).Select(a => (long)a)];
            return [c.Emit.Op("Transpose", [added], IntList("perm", back)), null];
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

    /// <summary>Dropout at inference and a float32-to-float32 Cast: the identity.</summary>
    public static readonly CompiledRule Cast = new(
        c => CastsToFloat(c) ? [c.Tangent(0)] : [null],
        c => [CastsToFloat(c) && c.Needs(0) ? c.Cotangent(0) : null]);

    /// <summary>
    /// CastLike: the derivative graphs are float32 throughout, so a cast like a float32 value passes the direction; the
    /// second input lends its type only.
    /// </summary>
    public static readonly CompiledRule CastLike = new(
        c => [c.Tangent(0)],
        c => [c.Needs(0) ? c.Cotangent(0) : null, null]);

    private static bool CastsToFloat(OnnxRuleContext c) =>
        c.Int("to", 1) == 1 ? true : throw new NotCompilableException($"Cast '{c.Out(0)}' casts to type {c.Int("to", 0)}; compiled for float32 only");

    /// <summary>Expand: the tangent is expanded alike, the cotangent summed back over the expanded axes.</summary>
    public static readonly CompiledRule Expand = new(
        c => [c.Tangent(0) is not null ? c.Emit.Op("Expand", c.Aligned(0), c.Emit.WithBasis(c.Basis, c.Out(0))) : null],
        c => [c.Cotangent(0) is { } ct && c.Needs(0) ? c.Unbroadcast(ct, 0) : null, null]);

    /// <summary>ReduceSum or ReduceMean over per-sample axes: the same reduction of the tangent, the cotangent spread back (divided by the count for a mean).</summary>
    public static CompiledRule Reduction(bool mean) => new(
        c =>
        {
            if (c.Tangent(0) is not { } t) return [null];
            if (ReducedAxes(c, axesAttributeBefore18: mean) is not { } axes) return [t];
            return [Reduce(c, mean ? "ReduceMean" : "ReduceSum", t, [.. axes.Select(a => a + 1)], c.Int("keepdims", 1))];
        },
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return result;
            if (ReducedAxes(c, axesAttributeBefore18: mean) is not { } axes) return [ct, .. result[1..]];
            if (c.Int("keepdims", 1) == 0) ct = c.Emit.Op("Unsqueeze", ct, c.Emit.Ints([.. axes.Select(a => a + 1)]));
            var spread = c.Emit.Op("Expand", ct, c.Emit.WithBasis(c.Basis, c.In(0)));
            var shape = c.Emit.Shape(c.In(0));
            result[0] = mean ? c.Emit.Mul(spread, c.Emit.Scalar(1f / axes.Aggregate(1L, (p, a) => p * shape[a]))) : spread;
            return result;
        });

    /// <summary>∂y/∂x of a reduction as nodes, from x, y kept at x's rank and the per-sample axes.</summary>
    public delegate string ReductionSlope(OnnxRuleContext c, string x, string kept, long[] axes);

    /// <summary>
    /// ReduceMax, ReduceMin, ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSumExp over per-sample axes (an attribute before
    /// opset 18), and with <paramref name="spatial"/> GlobalMaxPool over the spatial axes: the tangent times the slope
    /// summed over the axes, the cotangent spread back times the slope.
    /// </summary>
    public static CompiledRule ReductionBySlope(ReductionSlope slope, bool spatial = false) => new(
        c =>
        {
            if (c.Tangent(0) is not { } t) return [null];
            if (SlopeAxes(c, spatial) is not ({ } axes, var keep)) return [t];
            return [Reduce(c, "ReduceSum", c.Emit.Mul(t, ReductionSlopeOf(c, slope, axes, keep)), [.. axes.Select(a => a + 1)], keep ? 1 : 0)];
        },
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return result;
            if (SlopeAxes(c, spatial) is not ({ } axes, var keep)) return [ct, .. result[1..]];
            if (!keep) ct = c.Emit.Op("Unsqueeze", ct, c.Emit.Ints([.. axes.Select(a => a + 1)]));
            result[0] = c.Emit.Mul(ct, ReductionSlopeOf(c, slope, axes, keep));
            return result;
        });

    private static (long[]? Axes, bool Keep) SlopeAxes(OnnxRuleContext c, bool spatial) => spatial
        ? ([.. Enumerable.Range(2, c.Emit.Rank(c.In(0)) - 2).Select(a => (long)a)], true)
        : (ReducedAxes(c, axesAttributeBefore18: true), c.Int("keepdims", 1) != 0);

    private static string ReductionSlopeOf(OnnxRuleContext c, ReductionSlope slope, long[] axes, bool keep) =>
        slope(c, c.In(0), keep ? c.Out(0) : c.Emit.Op("Unsqueeze", c.Out(0), c.Emit.Ints(axes)), axes);

    /// <summary>
    /// ReduceProd's slope: the product of the others (y/x without zeros, the non-zeros' product at a lone zero, else 0).
    /// That is the slope everywhere but not, at a zero, a function whose own derivative is right there: a graph that is
    /// differentiated again (a PINN's boundary factor Πᵢ xᵢ(1 − xᵢ) is zero on every face) takes each product of the
    /// others itself instead, <see cref="ProductsOfOthers"/>.
    /// </summary>
    public static readonly ReductionSlope ProductSlope = (c, x, _, axes) =>
    {
        if (c.Emit.ReadBack) return ProductsOfOthers(c, x, axes);
        var zero = c.Emit.Op("Equal", x, c.Emit.Scalar(0));
        var nonZero = c.Emit.Op("Where", zero, c.Emit.Scalar(1), x);
        var product = Reduce(c, "ReduceProd", nonZero, axes, 1);
        var zeros = Reduce(c, "ReduceSum", c.Emit.Op("Cast", [zero], Int("to", 1)), axes, 1);
        var lone = c.Emit.Op("And", c.Emit.Op("Equal", zeros, c.Emit.Scalar(1)), zero);
        return c.Emit.Op("Where", c.Emit.Op("Equal", zeros, c.Emit.Scalar(0)), c.Emit.Op("Div", product, nonZero),
            c.Emit.Op("Where", lone, product, c.Emit.Scalar(0)));
    };

    /// <summary>The longest axis whose products of the others are compiled: they take the square of its length.</summary>
    private const long MaxProductsOfOthers = 64;

    /// <summary>
    /// Per element of x along the one reduced axis longer than 1, the product of the axis's other elements: x repeated
    /// along a new axis with its own element replaced by 1 (a Where on a fixed mask), multiplied out.
    /// </summary>
    private static string ProductsOfOthers(OnnxRuleContext c, string x, long[] axes)
    {
        var shape = c.Emit.Shape(x);
        var along = axes.Where(a => shape[a] != 1).ToArray();
        if (along.Length == 0) return c.Emit.Scalar(1);
        if (along.Length > 1 || shape[along[0]] > MaxProductsOfOthers)
            throw new NotCompilableException($"ReduceProd '{c.Out(0)}' reduces {Ops.Shapes.Text(shape)} over axes [{string.Join(", ", axes)}]; its second " +
                                             $"derivative is compiled over one axis of at most {MaxProductsOfOthers} elements");
        long axis = along[0], length = shape[axis];
        var own = c.Emit.Op("Equal", c.Emit.Identity(length, [length, length, .. Enumerable.Repeat(1L, shape.Length - 1 - (int)axis)]), c.Emit.Scalar(1));
        var others = c.Emit.Op("Where", own, c.Emit.Scalar(1), c.Emit.Op("Unsqueeze", x, c.Emit.Ints(axis)));
        return Reduce(c, "ReduceProd", others, [axis + 1], 0);
    }

    /// <summary>ReduceMax's and ReduceMin's slope: 1 where x alone attains the extremum, 1/n where n elements tie.</summary>
    public static readonly ReductionSlope ExtremumSlope = (c, x, kept, axes) =>
    {
        var attains = c.Emit.Op("Cast", [c.Emit.Op("Equal", x, kept)], Int("to", 1));
        return c.Emit.Op("Div", attains, Reduce(c, "ReduceSum", attains, axes, 1));
    };

    /// <summary>The sorted per-sample axes a reduction reduces, or null when it is the identity (no axes, noop_with_empty_axes).</summary>
    private static long[]? ReducedAxes(OnnxRuleContext c, bool axesAttributeBefore18)
    {
        int rank = c.Emit.Rank(c.In(0));
        long[]? axes = axesAttributeBefore18 && c.Emit.Opset < 18 ? c.Ints("axes") : c.ConstantInput(1);
        if (axes is null || axes.Length == 0)
        {
            if (c.Int("noop_with_empty_axes", 0) != 0) return null;
            axes = Enumerable.Range(0, rank).Select(a => (long)a).ToArray();
        }
        return axes.Select(a => c.SampleAxis(a, c.In(0))).Distinct().Order().ToArray();
    }

    /// <summary>
    /// LayerNormalization over per-sample axes, y = γ·x̂ + β with x̂ = (x − μ)·r and r = 1/√(σ² + ε): the tangent is
    /// γ·r·(t − mean t − x̂·mean(x̂·t)), the cotangent r·(g − mean g − x̂·mean(x̂·g)) with g = γ·ct (means over the axes).
    /// </summary>
    public static readonly CompiledRule LayerNormalization = Normalization(instance: false);

    /// <summary>InstanceNormalization: LayerNormalization's rule over the spatial axes, with a scale per channel.</summary>
    public static readonly CompiledRule InstanceNormalization = Normalization(instance: true);

    /// <summary>RMSNormalization: LayerNormalization's rule without the mean.</summary>
    public static readonly CompiledRule RmsNormalization = Normalization(instance: false);

    private static CompiledRule Normalization(bool instance) => new(
        c => [c.Tangent(0) is { } t ? c.Emit.Mul(NormalizationScale(c, instance), Normalised(c, t, instance)) : null],
        c => [c.Cotangent(0) is { } ct && c.Needs(0) ? Normalised(c, c.Emit.Mul(ct, NormalizationScale(c, instance)), instance) : null, null, null]);

    /// <summary>The scale, shaped [C, 1, ...] for InstanceNormalization so that it broadcasts per channel.</summary>
    private static string NormalizationScale(OnnxRuleContext c, bool instance) => !instance ? c.In(1)
        : c.Emit.Op("Unsqueeze", c.In(1), c.Emit.Ints([.. Enumerable.Range(1, c.Emit.Rank(c.In(0)) - 2).Select(a => (long)a)]));

    /// <summary>r·(d − mean d − x̂·mean(x̂·d)) for a direction d of the normalisation's input, means over its axes.</summary>
    private static string Normalised(OnnxRuleContext c, string direction, bool instance)
    {
        int rank = c.Emit.Rank(c.In(0));
        long first = instance ? 2 : c.SampleAxis(c.Int("axis", -1), c.In(0));
        // Every axis it normalises over is checked: from axis 0 of a seq-first value, the batch is among them.
        long[] axes = Enumerable.Range((int)first, rank - (int)first).Select(a => c.SampleAxis(a, c.In(0))).ToArray();
        long[] directionAxes = [.. axes.Select(a => a + 1)];
        bool rms = c.OpType == "RMSNormalization";
        var centred = rms ? c.In(0) : c.Emit.Sub(c.In(0), Reduce(c, "ReduceMean", c.In(0), axes, 1));
        var variance = Reduce(c, "ReduceMean", c.Emit.Mul(centred, centred), axes, 1);
        var r = c.Emit.Op("Reciprocal", c.Emit.Op("Sqrt", c.Emit.Add(variance, c.Emit.Scalar(c.Float("epsilon", 1e-5f)))));
        var normalised = c.Emit.Mul(centred, r);
        var projected = c.Emit.Mul(normalised, Reduce(c, "ReduceMean", c.Emit.Mul(normalised, direction), directionAxes, 1));
        var around = rms ? direction : c.Emit.Sub(direction, Reduce(c, "ReduceMean", direction, directionAxes, 1));
        return c.Emit.Mul(r, c.Emit.Sub(around, projected));
    }

    /// <summary>
    /// GroupNormalization: LayerNormalization's rule on x read as [N, G, M] (M = C/G × spatial), the directions read alike
    /// and put back; the scale per channel (opset 21), or per group repeated over its channels (18).
    /// </summary>
    public static readonly CompiledRule GroupNormalization = new(
        c => [c.Tangent(0) is { } t ? c.Emit.Mul(GroupScale(c), GroupNormalised(c, t)) : null],
        c => [c.Cotangent(0) is { } ct && c.Needs(0) ? GroupNormalised(c, c.Emit.Mul(ct, GroupScale(c))) : null, null, null]);

    private static string GroupNormalised(OnnxRuleContext c, string direction)
    {
        long[] shape = c.Emit.Shape(c.In(0));
        long groups = c.Int("num_groups", 1);
        var x = c.Emit.Op("Reshape", c.In(0), c.Emit.Ints(0, groups, -1));
        var d = c.Emit.Op("Reshape", direction, c.Emit.Ints(c.Basis, 0, groups, -1));
        var centred = c.Emit.Sub(x, Reduce(c, "ReduceMean", x, [2], 1));
        var variance = Reduce(c, "ReduceMean", c.Emit.Mul(centred, centred), [2], 1);
        var r = c.Emit.Op("Reciprocal", c.Emit.Op("Sqrt", c.Emit.Add(variance, c.Emit.Scalar(c.Float("epsilon", 1e-5f)))));
        var normalised = c.Emit.Mul(centred, r);
        var projected = c.Emit.Mul(normalised, Reduce(c, "ReduceMean", c.Emit.Mul(normalised, d), [3], 1));
        var result = c.Emit.Mul(r, c.Emit.Sub(c.Emit.Sub(d, Reduce(c, "ReduceMean", d, [3], 1)), projected));
        return c.Emit.Op("Reshape", result, c.Emit.Ints([c.Basis, 0, .. shape[1..]]));
    }

    /// <summary>The scale as [C, 1, ...]: per channel from opset 21, each group's repeated over its channels before.</summary>
    private static string GroupScale(OnnxRuleContext c)
    {
        long[] shape = c.Emit.Shape(c.In(0));
        long groups = c.Int("num_groups", 1), channels = shape[1];
        var perChannel = c.Emit.Opset >= 21 ? c.In(1)
            : c.Emit.Op("Reshape", c.Emit.Op("Expand", c.Emit.Op("Unsqueeze", c.In(1), c.Emit.Ints(1)), c.Emit.Ints(groups, channels / groups)), c.Emit.Ints(channels));
        return shape.Length == 2 ? perChannel : c.Emit.Op("Unsqueeze", perChannel, c.Emit.Ints([.. Enumerable.Range(1, shape.Length - 2).Select(a => (long)a)]));
    }

    /// <summary>
    /// LpNormalization along a per-sample axis, y = x/n: the tangent (t − y·Σ s·t)/n and the cotangent (c − s·Σ y·c)/n,
    /// with n's slope s = y (p = 2) or sign(x) (p = 1).
    /// </summary>
    public static readonly CompiledRule LpNormalization = new(
        c => [c.Tangent(0) is { } t ? LpNormalized(c, t, transposed: false) : null],
        c => [c.Cotangent(0) is { } ct && c.Needs(0) ? LpNormalized(c, ct, transposed: true) : null]);

    private static string LpNormalized(OnnxRuleContext c, string direction, bool transposed)
    {
        long axis = c.SampleAxis(c.Int("axis", -1), c.In(0));
        bool euclidean = c.Int("p", 2) == 2;
        string x = c.In(0), y = c.Out(0);
        var norm = euclidean ? c.Emit.Op("Sqrt", Reduce(c, "ReduceSum", c.Emit.Mul(x, x), [axis], 1)) : Reduce(c, "ReduceSum", c.Emit.Op("Abs", x), [axis], 1);
        var slope = euclidean ? y : c.Emit.Op("Sign", x);
        var (along, across) = transposed ? (slope, y) : (y, slope);
        var projected = c.Emit.Mul(along, Reduce(c, "ReduceSum", c.Emit.Mul(across, direction), [axis + 1], 1));
        return c.Emit.Op("Div", c.Emit.Sub(direction, projected), norm);
    }

    /// <summary>A reduction over <paramref name="axes"/>: all but ReduceSum take them as an attribute before opset 18.</summary>
    private static string Reduce(OnnxRuleContext c, string op, string value, long[] axes, long keepdims) =>
        op != "ReduceSum" && c.Emit.Opset < 18
            ? c.Emit.Op(op, [value], IntList("axes", axes), Int("keepdims", keepdims))
            : c.Emit.Op(op, [value, c.Emit.Ints(axes)], Int("keepdims", keepdims));

    /// <summary>
    /// Slice along per-sample axes with steps of one or more: the tangent sliced alike; the cotangent put back in place,
    /// each stepped axis first spread by its step (every element followed by step − 1 zeros, the last one's cut off),
    /// then padded back with zeros.
    /// </summary>
    public static readonly CompiledRule Slice = new(
        c =>
        {
            if (c.Tangent(0) is not { } t) return [null];
            var (axes, starts, ends, steps, _) = SliceBounds(c);
            return [c.Emit.Op("Slice", t, c.Emit.Ints(starts), c.Emit.Ints(ends), c.Emit.Ints([.. axes.Select(a => a + 1)]), c.Emit.Ints(steps))];
        },
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return result;
            var (axes, starts, _, steps, shape) = SliceBounds(c);
            // A copy: the emitter's shapes are the plan's own arrays.
            var dims = (long[])c.Emit.Shape(c.Out(0)).Clone();
            var pads = new long[2 * (shape.Length + 1)];
            for (int i = 0; i < axes.Length; i++)
            {
                long a = axes[i], step = steps[i], count = dims[a], length = count;
                if (step > 1)
                {
                    if (count == 0) throw new NotCompilableException($"Slice '{c.Out(0)}' keeps nothing of an axis it steps along");
                    // [.., count, ..] -> [.., count, step] (zeros after each) -> [.., count·step, ..] -> the first (count − 1)·step + 1.
                    var spread = c.Emit.Op("Pad", c.Emit.Op("Unsqueeze", ct, c.Emit.Ints(a + 2)), c.Emit.Ints(PadOne(shape.Length + 2, a + 2, step - 1)));
                    long[] merged = [0, 0, .. dims[1..(int)a], count * step, .. dims[((int)a + 1)..]];
                    length = (count - 1) * step + 1;
                    ct = c.Emit.Op("Slice", c.Emit.Op("Reshape", spread, c.Emit.Ints(merged)), c.Emit.Ints(0), c.Emit.Ints(length), c.Emit.Ints(a + 1));
                    dims[a] = length;
                }
                pads[a + 1] = starts[i];
                pads[shape.Length + 1 + a + 1] = shape[a] - starts[i] - length;
            }
            result[0] = c.Emit.Op("Pad", ct, c.Emit.Ints(pads));
            return result;
        });

    /// <summary>Pads for a tensor of <paramref name="rank"/> that add <paramref name="after"/> at the end of one axis.</summary>
    private static long[] PadOne(int rank, long axis, long after)
    {
        var pads = new long[2 * rank];
        pads[rank + axis] = after;
        return pads;
    }

    /// <summary>
    /// A Slice's per-sample axes with their starts and ends clamped to the input's shape (which it returns too), and its
    /// steps; steps below one are not compiled.
    /// </summary>
    private static (long[] Axes, long[] Starts, long[] Ends, long[] Steps, long[] Shape) SliceBounds(OnnxRuleContext c)
    {
        var shape = c.Emit.Shape(c.In(0));
        var starts = c.ConstantInput(1)!;
        var ends = c.ConstantInput(2)!;
        var axes = c.ConstantInput(3) ?? Enumerable.Range(0, starts.Length).Select(a => (long)a).ToArray();
        var steps = c.ConstantInput(4) ?? Enumerable.Repeat(1L, starts.Length).ToArray();
        if (steps.Any(step => step < 1))
            throw new NotCompilableException($"Slice '{c.Out(0)}' steps backwards; compiled for steps of 1 or more");
        axes = axes.Select(a => c.SampleAxis(a, c.In(0))).ToArray();
        long Clamp(long v, long dim) => Math.Clamp(v < 0 ? v + dim : v, 0, dim);
        var clampedStarts = starts.Select((v, i) => Clamp(v, shape[axes[i]])).ToArray();
        var clampedEnds = ends.Select((v, i) => Math.Max(clampedStarts[i], Clamp(v, shape[axes[i]]))).ToArray();
        return (axes, clampedStarts, clampedEnds, steps, shape);
    }

    /// <summary>A sum over the op's axis (default the last), kept as an axis of one.</summary>
    private static string Sum(OnnxRuleContext c, string direction) =>
        c.Emit.Op("ReduceSum", [direction, c.Emit.Ints(c.DirectionAxis(-1))], Int("keepdims", 1));

    private static string Scaled(OnnxRuleContext c, string direction, float factor) =>
        factor == 1 ? direction : c.Emit.Mul(direction, c.Emit.Scalar(factor));

    /// <summary>
    /// x·W, or x·Wᵀ over W's last two axes (<paramref name="transposed"/>, <see cref="OnnxEmitter.TimesTransposedWeight"/>),
    /// for directions x of any rank and the node's input W. (A Gemm of x's rows would do it in plain ONNX but needs four
    /// more nodes to reshape x and back, which cost the small fixtures up to a fifth of their rate at batch 1.)
    /// </summary>
    private static string TimesWeight(OnnxRuleContext c, string x, string w, bool transposed) =>
        transposed ? c.Emit.TimesTransposedWeight(x, w, c.Emit.Rank(w)) : c.Emit.Op("MatMul", x, w);

    private static void RefuseWeight(OnnxRuleContext c, int input)
    {
        if (c.Tangent(input) is not null || c.Needs(input))
            throw new NotCompilableException($"{c.OpType} '{c.Out(0)}' takes its input {input} from wrt; only its data input is compiled");
    }

    /// <summary>
    /// Going forward, the products broadcast each tangent as the op broadcasts its operand, so an operand may have fewer
    /// axes than the output (a derivative graph read back multiplies a value [B, ..] by a direction [K, B, ..]); only
    /// a second operand whose first axis is a matrix axis mixes the samples.
    /// </summary>
    private static void CheckForwardRanks(OnnxRuleContext c)
    {
        if (c.Emit.Rank(c.In(0)) < 2 || c.Emit.Rank(c.In(1)) < 2)
            throw new NotCompilableException($"MatMul '{c.Out(0)}' multiplies ranks {c.Emit.Rank(c.In(0))} and {c.Emit.Rank(c.In(1))}; compiled for ranks 2 or more");
        if (c.Tangent(1) is not null && c.Emit.Rank(c.In(1)) < 3)
            throw new NotCompilableException(
                $"MatMul '{c.Out(0)}' takes its input 1 from wrt, whose first axis is not the product's batch axis; compiled where it is");
    }

    /// <summary>
    /// Refuses a product whose operand from wrt does not keep its first (batch) axis as the output's: a matrix of rank 2
    /// on the right contracts it, and a lower rank broadcasts it against another batch axis.
    /// </summary>
    private static void CheckRanks(OnnxRuleContext c)
    {
        if (c.Emit.Rank(c.In(0)) < 2 || c.Emit.Rank(c.In(1)) < 2)
            throw new NotCompilableException($"MatMul '{c.Out(0)}' multiplies ranks {c.Emit.Rank(c.In(0))} and {c.Emit.Rank(c.In(1))}; compiled for ranks 2 or more");
        int rank = c.Emit.Rank(c.Out(0));
        for (int i = 0; i < 2; i++)
            if ((c.Tangent(i) is not null || c.Needs(i)) && (c.Emit.Rank(c.In(i)) != rank || (i == 1 && rank < 3)))
                throw new NotCompilableException(
                    $"MatMul '{c.Out(0)}' takes its input {i} from wrt, whose first axis is not the product's batch axis; compiled where it is");
    }

    private static long[] Permutation(OnnxRuleContext c) =>
        c.Ints("perm") ?? Enumerable.Range(0, c.Emit.Rank(c.In(0))).Reverse().Select(p => (long)p).ToArray();
}
