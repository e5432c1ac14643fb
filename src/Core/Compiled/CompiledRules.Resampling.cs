using JacService.Core.Onnx;
using JacService.Core.Ops;
using static JacService.Core.Compiled.OnnxEmitter;

namespace JacService.Core.Compiled;

/// <summary>Resize's compiled rule, as its interpreter rule in Ops/Resampling.cs: the same tables, as ONNX nodes.</summary>
internal static partial class CompiledRules
{
    /// <summary>
    /// Resize along per-sample axes: the directions resampled by the tables the forward pass uses, the cotangent by their
    /// transposes. The tables are constants, so the lengths and scales must be known: the scales where the file fixes
    /// them, or the sizes (which the shapes give, or the file where the aspect-ratio policy needs their values). Not the
    /// node's own Resize on the directions: ONNX Runtime's bicubic kernel took upsampler's forward-mode Jacobian of 256
    /// rows to 171-200 ms, against 29 ms through the tables as matrix products.
    /// </summary>
    public static readonly CompiledRule Resize = new(
        c => [c.Tangent(0) is { } t ? Resampled(c, t, transposed: false) : null],
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Needs(0) && c.Cotangent(0) is { } ct) result[0] = Resampled(c, ct, transposed: true);
            return result;
        });

    private static string Resampled(OnnxRuleContext c, string direction, bool transposed)
    {
        var attributes = Resampling.Attributes.Of(new NodeAttributes(c.Attributes));
        long[] input = c.Emit.Shape(c.In(0)), output = c.Emit.Shape(c.Out(0));
        double[]? scales = null;
        long[]? sizes = null;
        var given = c.InputCount > 2 && c.In(2).Length > 0
            ? c.Emit.ConstantFloats(c.In(2)) ?? throw new NotCompilableException($"Resize '{c.Out(0)}' takes scales the file does not fix")
            : null;
        if (given is { Length: > 0 })
            scales = given.Select(s => (double)s).ToArray();
        else if (attributes.Policy == "stretch")
            sizes = (attributes.Axes ?? Enumerable.Range(0, input.Length).Select(a => (long)a)).Select(a => output[a < 0 ? a + input.Length : a]).ToArray();
        else
            sizes = c.ConstantInput(3);
        foreach (var (axis, length, scale) in Resampling.Layout(attributes, input, scales, sizes))
        {
            long along = c.SampleAxis(axis, c.In(0)) + 1;
            var table = Resampling.TableOf(attributes, input[axis], length, scale);
            direction = Apply(c, transposed ? table.Transposed : table, direction, along, input.Length - axis - 1);
        }
        return direction;
    }

    /// <summary>
    /// The table along <paramref name="along"/>: a matrix product on a small axis (as the interpreter), else
    /// Σⱼ w_j ⊙ Gather(direction, index_j), the weights broadcast over the axes after it.
    /// </summary>
    private static string Apply(OnnxRuleContext c, ResampleTable table, string direction, long along, long trailing)
    {
        if (table.Taps == 0) throw new NotCompilableException($"Resize '{c.Out(0)}' has an axis no input reaches");
        if (table.Dense)
        {
            var matrix = c.Emit.Floats([.. table.Transposition().Select(w => (float)w)], table.Input, table.Output);
            if (trailing == 0) return c.Emit.Op("MatMul", direction, matrix);
            long last = along + trailing;
            long[] swap = [.. Enumerable.Range(0, (int)last + 1).Select(a => a == along ? last : a == last ? along : (long)a)];
            var moved = c.Emit.Op("Transpose", [direction], IntList("perm", swap));
            return c.Emit.Op("Transpose", [c.Emit.Op("MatMul", moved, matrix)], IntList("perm", swap));
        }
        var terms = new List<string>();
        for (int j = 0; j < table.Taps; j++)
        {
            var picked = c.Emit.Op("Gather", [direction, c.Emit.Ints([.. table.IndexOf(j)])], Int("axis", along));
            terms.Add(table.Unweighted ? picked
                : c.Emit.Mul(picked, c.Emit.Floats(table.WeightOf(j).Select(w => (float)w).ToArray(), [table.Output, .. Enumerable.Repeat(1L, (int)trailing)])));
        }
        return terms.Count == 1 ? terms[0] : c.Emit.Op("Sum", [.. terms]);
    }
}
