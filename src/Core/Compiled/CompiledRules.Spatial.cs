using JacService.Core.Onnx.Proto;
using static JacService.Core.Compiled.OnnxEmitter;

namespace JacService.Core.Compiled;

/// <summary>
/// Compiled rules of the convolutional ops: Conv and the pools are linear in their data (MaxPool given where its maxima
/// are), so a direction goes through the same op with the basis folded into the batch axis, and comes back through the
/// transposed convolution; BatchNormalization at inference and constant Pad are a per-channel scale and a border.
/// </summary>
internal static partial class CompiledRules
{
    /// <summary>Conv by weights: the same convolution (no bias) of the directions going forward, ConvTranspose by the same weights going back.</summary>
    public static readonly CompiledRule Conv = new(
        c =>
        {
            RefuseWeights(c, 1, 2);
            if (c.Tangent(0) is not { } t) return [null];
            return [Unfolded(c, c.Emit.Op("Conv", [Folded(c, t, c.In(0)), c.In(1)], [.. c.Attributes]), c.Out(0))];
        },
        c =>
        {
            RefuseWeights(c, 1, 2);
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return result;
            var kernel = c.Emit.Shape(c.In(1))[2..];
            result[0] = Transposed(c, ct, c.In(1), kernel, c.Int("group", 1));
            return result;
        });

    /// <summary>ConvTranspose by weights: the same op (no bias) of the directions going forward, Conv by the same weights of the cotangent padded back.</summary>
    public static readonly CompiledRule ConvTranspose = new(
        c =>
        {
            RefuseWeights(c, 1, 2);
            if (c.Tangent(0) is not { } t) return [null];
            return [Unfolded(c, c.Emit.Op("ConvTranspose", [Folded(c, t, c.In(0)), c.In(1)], [.. c.Attributes]), c.Out(0))];
        },
        c =>
        {
            RefuseWeights(c, 1, 2);
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return result;
            int spatial = c.Emit.Rank(c.In(0)) - 2;
            var pads = c.String("auto_pad", "NOTSET") == "VALID" ? new long[2 * spatial] : c.Ints("pads") ?? new long[2 * spatial];
            var padded = c.Emit.Op("Pad", Folded(c, ct, c.Out(0)), c.Emit.Ints([0, 0, .. pads[..spatial], 0, 0, .. pads[spatial..]]));
            AttributeProto[] attributes = [IntList("strides", Ones(c, "strides")), IntList("dilations", Ones(c, "dilations")), Int("group", c.Int("group", 1))];
            result[0] = Unfolded(c, c.Emit.Op("Conv", [padded, c.In(1)], attributes), c.In(0));
            return result;
        });

    /// <summary>
    /// AveragePool: the same pool of the directions going forward; going back, each cotangent is spread over its window
    /// by a ConvTranspose with a per-channel kernel of 1/|window|, which holds where every window divides by its full size.
    /// </summary>
    public static readonly CompiledRule AveragePool = new(
        c => [c.Tangent(0) is { } t ? Unfolded(c, c.Emit.Op("AveragePool", [Folded(c, t, c.In(0))], [.. c.Attributes]), c.Out(0)) : null],
        c =>
        {
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return [null];
            var kernel = c.Ints("kernel_shape")!;
            bool padded = c.String("auto_pad", "NOTSET") is "SAME_UPPER" or "SAME_LOWER" || (c.Ints("pads") ?? []).Any(p => p != 0);
            if (padded && c.Int("count_include_pad", 0) == 0)
                throw new NotCompilableException($"AveragePool '{c.Out(0)}' pads without count_include_pad, so its windows divide by different counts");
            long channels = c.Emit.Shape(c.In(0))[1], size = kernel.Aggregate(1L, (p, k) => p * k);
            var weights = c.Emit.Floats(Enumerable.Repeat(1f / size, (int)(channels * size)).ToArray(), [channels, 1, .. kernel]);
            return [Transposed(c, ct, weights, kernel, channels)];
        });

    /// <summary>
    /// MaxPool: each output is the input at its window's maximum, found by a second MaxPool with indices (flat over the
    /// whole input, batch and channels included); directions are gathered there, and cotangents scattered back.
    /// </summary>
    public static readonly CompiledRule MaxPool = new(
        c =>
        {
            if (c.Tangent(0) is not { } t) return [null];
            var flat = c.Emit.Op("Reshape", c.Emit.Full(t, c.Basis, c.In(0)), c.Emit.Ints(c.Basis, -1));
            return [c.Emit.Op("Gather", [flat, MaxIndices(c)], Int("axis", 1))];
        },
        c =>
        {
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return [null];
            var (kernel, strides, dilations) = (c.Ints("kernel_shape")!, Ones(c, "strides"), Ones(c, "dilations"));
            bool overlapping = kernel.Where((k, i) => strides[i] < (k - 1) * dilations[i] + 1).Any();
            // Where windows overlap, an input can be the maximum of several and takes the sum of their cotangents;
            // ScatterElements adds duplicates only from opset 16 (before, which of them lands is unspecified).
            if (overlapping && c.Emit.Opset < 16)
                throw new NotCompilableException($"MaxPool '{c.Out(0)}' has overlapping windows; compiled from opset 16 (the model's is {c.Emit.Opset})");
            var updates = c.Emit.Op("Reshape", c.Emit.Full(ct, c.Basis, c.Out(0)), c.Emit.Ints(c.Basis, -1));
            var indices = c.Emit.Op("Expand", c.Emit.Op("Reshape", MaxIndices(c), c.Emit.Ints(1, -1)), c.Emit.Op("Shape", updates));
            var zeros = c.Emit.Op("Reshape", c.Emit.Full(c.Emit.Scalar(0), c.Basis, c.In(0)), c.Emit.Ints(c.Basis, -1));
            AttributeProto[] attributes = overlapping ? [Int("axis", 1), String("reduction", "add")] : [Int("axis", 1)];
            var scattered = c.Emit.Op("ScatterElements", [zeros, indices, updates], attributes);
            return [c.Emit.Op("Reshape", scattered, c.Emit.WithBasis(c.Basis, c.In(0)))];
        });

    /// <summary>The flat indices of a MaxPool's maxima, from the same pool with its second output, row-major.</summary>
    private static string MaxIndices(OnnxRuleContext c) =>
        c.Emit.Ops("MaxPool", 2, [c.In(0)], [.. c.Attributes.Where(a => a.Name != "storage_order"), Int("storage_order", 0)])[1];

    /// <summary>GlobalAveragePool: the mean over the spatial axes going forward, spread evenly back.</summary>
    public static readonly CompiledRule GlobalAveragePool = new(
        c =>
        {
            if (c.Tangent(0) is not { } t) return [null];
            int rank = c.Emit.Rank(c.In(0));
            return [Reduce(c, "ReduceMean", t, [.. Enumerable.Range(3, rank - 2).Select(a => (long)a)], 1)];
        },
        c =>
        {
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return [null];
            long cells = c.Emit.Shape(c.In(0))[2..].Aggregate(1L, (p, d) => p * d);
            return [c.Emit.Mul(c.Emit.Op("Expand", ct, c.Emit.WithBasis(c.Basis, c.In(0))), c.Emit.Scalar(1f / cells))];
        });

    /// <summary>BatchNormalization at inference: per channel, y = scale·(x − mean)/√(var + ε) + bias, so directions are scaled by scale/√(var + ε).</summary>
    public static readonly CompiledRule BatchNormalization = new(
        c =>
        {
            RefuseWeights(c, 1, 2, 3, 4);
            return [c.Tangent(0) is { } t ? c.Emit.Mul(t, ChannelScale(c)) : null];
        },
        c =>
        {
            RefuseWeights(c, 1, 2, 3, 4);
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is { } ct && c.Needs(0)) result[0] = c.Emit.Mul(ct, ChannelScale(c));
            return result;
        });

    /// <summary>scale/√(var + ε) as [C, 1, ..], to broadcast against [K, B, C, ..spatial].</summary>
    private static string ChannelScale(OnnxRuleContext c)
    {
        var scale = c.Emit.Op("Div", c.In(1), c.Emit.Op("Sqrt", c.Emit.Add(c.In(4), c.Emit.Scalar(c.Float("epsilon", 1e-5f)))));
        return c.Emit.Op("Reshape", scale, c.Emit.Ints([-1, .. Enumerable.Repeat(1L, c.Emit.Rank(c.In(0)) - 2)]));
    }

    /// <summary>Pad with a constant: directions are padded with zeros, cotangents cut back to the input's extent.</summary>
    public static readonly CompiledRule Pad = new(
        c =>
        {
            if (c.Tangent(0) is not { } t) return [null];
            var pads = PadWidths(c);
            int rank = pads.Length / 2;
            return [c.Emit.Op("Pad", t, c.Emit.Ints([0, .. pads[..rank], 0, .. pads[rank..]]))];
        },
        c =>
        {
            var result = new string?[c.InputCount];
            if (c.Cotangent(0) is not { } ct || !c.Needs(0)) return result;
            var pads = PadWidths(c);
            var shape = c.Emit.Shape(c.In(0));
            var axes = Enumerable.Range(1, shape.Length - 1).ToArray();
            result[0] = c.Emit.Op("Slice", ct, c.Emit.Ints([.. axes.Select(a => pads[a])]), c.Emit.Ints([.. axes.Select(a => pads[a] + shape[a])]),
                c.Emit.Ints([.. axes.Select(a => (long)a + 1)]));
            return result;
        });

    /// <summary>A constant Pad's widths (begins then ends), refused where it pads the batch axis, crops, or pads by other than a constant.</summary>
    private static long[] PadWidths(OnnxRuleContext c)
    {
        if (c.String("mode", "constant") != "constant")
            throw new NotCompilableException($"Pad '{c.Out(0)}' pads in mode '{c.String("mode", "constant")}'; compiled for constant padding");
        int rank = c.Emit.Rank(c.In(0));
        long[]? axes = null;
        if (c.InputCount > 3 && c.In(3).Length > 0)
            axes = c.ConstantInput(3) ?? throw new NotCompilableException($"Pad '{c.Out(0)}' takes axes the file does not fix");
        var pads = Ops.ShapeOps.FullPads(c.ConstantInput(1)!, axes, rank);
        if (pads is null || pads[0] != 0 || pads[rank] != 0 || pads.Any(p => p < 0))
            throw new NotCompilableException($"Pad '{c.Out(0)}' pads [{string.Join(", ", c.ConstantInput(1)!)}]; compiled for non-negative pads of the per-sample axes");
        return pads;
    }

    /// <summary>[K, B, ..sample] as [K·B, ..sample]: the basis folded into the batch axis of an op that works per sample.</summary>
    private static string Folded(OnnxRuleContext c, string direction, string value) =>
        c.Emit.Op("Reshape", c.Emit.Full(direction, c.Basis, value), c.Emit.Ints([-1, .. c.Emit.Shape(value)[1..]]));

    /// <summary>[K·B, ..sample] back to [K, B, ..sample].</summary>
    private static string Unfolded(OnnxRuleContext c, string folded, string value) =>
        c.Emit.Op("Reshape", folded, c.Emit.Ints([c.Basis, -1, .. c.Emit.Shape(value)[1..]]));

    /// <summary>
    /// A cotangent of a windowed op's output taken back to its input by ConvTranspose with <paramref name="weights"/>
    /// ([C_out, C_in/group, ..kernel], the layout Conv's weights already have): the window geometry of the node, and the
    /// output padding that gives back the input's extent where the last windows left cells over.
    /// </summary>
    private static string Transposed(OnnxRuleContext c, string cotangent, string weights, long[] kernel, long group)
    {
        int n = kernel.Length;
        var (strides, dilations) = (Ones(c, "strides"), Ones(c, "dilations"));
        long[] input = c.Emit.Shape(c.In(0))[2..], output = c.Emit.Shape(c.Out(0))[2..];
        var autoPad = c.String("auto_pad", "NOTSET");
        var pads = autoPad == "NOTSET" ? c.Ints("pads") ?? new long[2 * n] : new long[2 * n];
        if (autoPad is "SAME_UPPER" or "SAME_LOWER")
        {
            // The padding ONNX derives: what the windows of ceil(input / stride) outputs need, the odd cell at the end (UPPER) or the start.
            for (int i = 0; i < n; i++)
            {
                long total = Math.Max(0, (output[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - input[i]);
                pads[i] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2;
                pads[n + i] = total - pads[i];
            }
        }
        var extra = Enumerable.Range(0, n)
            .Select(i => input[i] - ((output[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - pads[i] - pads[n + i])).ToArray();
        if (extra.Any(e => e < 0))
            throw new NotCompilableException($"{c.OpType} '{c.Out(0)}' has windows past its padded input (ceil_mode); compiled for windows inside it");
        var back = c.Emit.Op("ConvTranspose", [Folded(c, cotangent, c.Out(0)), weights],
            IntList("kernel_shape", kernel), IntList("strides", strides), IntList("dilations", dilations), IntList("pads", pads),
            IntList("output_padding", extra), Int("group", group));
        return Unfolded(c, back, c.In(0));
    }

    /// <summary>A per-spatial-axis attribute that defaults to ones (strides, dilations).</summary>
    private static long[] Ones(OnnxRuleContext c, string name) =>
        c.Ints(name) ?? Enumerable.Repeat(1L, c.Emit.Rank(c.In(0)) - 2).ToArray();

    private static void RefuseWeights(OnnxRuleContext c, params int[] inputs)
    {
        foreach (var i in inputs) if (i < c.InputCount) RefuseWeight(c, i);
    }
}
