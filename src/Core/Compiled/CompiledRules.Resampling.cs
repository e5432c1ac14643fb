using JacService.Core.Onnx;
using JacService.Core.Ops;
using static JacService.Core.Compiled.OnnxEmitter;

namespace JacService.Core.Compiled;

/// <summary>Resize's compiled rule, as its interpreter rule in Ops/Resampling.cs: the same tables, as ONNX nodes.</summary>
internal static partial class CompiledRules
{
    /// <summary>
    /// Resize along per-sample axes. Going forward, the directions go through the node's own Resize with the basis folded
    /// into the batch axis (ONNX Runtime's resampling kernels, which also compute the forward values), except under an
    /// aspect-ratio policy; going back, and under a policy, the cotangent goes through the transposed tables the
    /// interpreter uses. The tables are constants, so the lengths and scales must be known: the scales where the file
    /// fixes them, or the sizes (which the shapes give, or the file where the aspect-ratio policy needs their values).
    /// </summary>
    public static readonly CompiledRule Resize = new(
        c => [c.Tangent(0) is not { } t ? null : c.String("keep_aspect_ratio_policy", "stretch") == "stretch" ? Folded(c, t) : Resampled(c, t, transposed: false)],
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Needs(0) && c.Cotangent(0) is { } ct) result[0] = Resampled(c, ct, transposed: true);
            return result;
        });

    /// <summary>
    /// The node's Resize applied to a direction [K, B, ..] read as [K·B, ..]: the same scales, or the same sizes with the
    /// folded batch's length in front where they name every axis.
    /// </summary>
    private static string Folded(OnnxRuleContext c, string direction)
    {
        long[] input = c.Emit.Shape(c.In(0)), output = c.Emit.Shape(c.Out(0));
        if (input[0] != output[0]) throw new NotCompilableException($"Resize '{c.Out(0)}' resizes the batch axis");
        var folded = c.Emit.Op("Reshape", direction, c.Emit.Ints([-1, .. input[1..]]));
        bool byScales = c.InputCount > 2 && c.In(2).Length > 0 && c.Emit.ConstantFloats(c.In(2)) is { Length: > 0 };
        string[] inputs;
        if (byScales) inputs = [folded, "", c.In(2)];
        else if (c.Ints("axes") is { } axes) inputs = [folded, "", "", c.Emit.Ints([.. axes.Select(a => output[a < 0 ? a + input.Length : a])])];
        else inputs = [folded, "", "", c.Emit.Op("Concat", [c.Emit.Op("Slice", c.Emit.Op("Shape", folded), c.Emit.Ints(0), c.Emit.Ints(1)), c.Emit.Ints(output[1..])], Int("axis", 0))];
        var resized = c.Emit.Op("Resize", inputs, [.. c.Attributes]);
        return c.Emit.Op("Reshape", resized, c.Emit.Ints([c.Basis, -1, .. output[1..]]));
    }

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
            long along = c.SampleAxis(axis, input.Length) + 1;
            var table = Resampling.TableOf(attributes, input[axis], length, scale);
            direction = Apply(c, transposed ? table.Transposed : table, direction, along, input.Length - axis - 1);
        }
        return direction;
    }

    /// <summary>Σⱼ w_j ⊙ Gather(direction, index_j) along <paramref name="along"/>, the weights broadcast over the axes after it.</summary>
    private static string Apply(OnnxRuleContext c, ResampleTable table, string direction, long along, long trailing)
    {
        if (table.Taps == 0) throw new NotCompilableException($"Resize '{c.Out(0)}' has an axis no input reaches");
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
