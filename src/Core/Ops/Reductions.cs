using JacService.Core.Onnx;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>Sums, means and the softmax family.</summary>
internal static class Reductions
{
    public static Dual[] ReduceSum(OpContext c) => Reduce(c, axesFromInput: true, (t, axes, keep) => t.sum(axes, keep));

    // ReduceMean takes its axes as an attribute up to opset 17 and as an input from opset 18.
    public static Dual[] ReduceMean(OpContext c) => Reduce(c, axesFromInput: c.Opset >= 18, (t, axes, keep) => t.mean(axes, keep));

    private static Dual[] Reduce(OpContext c, bool axesFromInput, Func<Tensor, long[], bool, Tensor> reduce)
    {
        var x = c.In(0);
        long rank = x.Rank;
        bool keep = c.Attr.Int("keepdims", 1) != 0;
        long[]? axes = axesFromInput ? (c.Optional(1) is { } a ? Shapes.Ints(a.Value) : null) : c.Attr.Ints("axes");
        if (axes is null || axes.Length == 0)
        {
            if (c.Attr.Int("noop_with_empty_axes", 0) != 0) return [x];
            axes = Enumerable.Range(0, (int)rank).Select(i => (long)i).ToArray();
        }
        axes = axes.Select(v => Shapes.Axis(v, rank)).Distinct().Order().ToArray();
        var y = reduce(x.Value, axes, keep);
        return [new Dual(y, x.Tangent is null ? null : reduce(x.Tangent, Tangents.Shift(axes), keep))];
    }

    public static Dual[] Softmax(OpContext c)
    {
        var x = c.In(0);
        long axis = Shapes.Axis(c.Attr.Int("axis", -1), x.Rank);
        var y = x.Value.softmax(axis);
        // d softmax = y * (T - <T, y>) along the axis.
        var t = x.Tangent is { } tx ? y * (tx - (tx * y).sum(axis + 1, keepdim: true)) : null;
        return [new Dual(y, t)];
    }

    public static Dual[] LogSoftmax(OpContext c)
    {
        var x = c.In(0);
        long axis = Shapes.Axis(c.Attr.Int("axis", -1), x.Rank);
        var y = x.Value.log_softmax(axis);
        var t = x.Tangent is { } tx ? tx - (tx * y.exp()).sum(axis + 1, keepdim: true) : null;
        return [new Dual(y, t)];
    }
}

/// <summary>Inference-time normalisations.</summary>
internal static class Normalization
{
    public static string? ValidateBatchNormalization(GraphNode node, int opset)
    {
        if (node.Attributes.Int("training_mode", 0) != 0) return "training_mode=1 is not supported (inference only)";
        if (node.Outputs.Skip(1).Any(o => o >= 0)) return "only the Y output is supported (inference only)";
        return null;
    }

    public static Dual[] BatchNormalization(OpContext c)
    {
        var x = c.In(0);
        double epsilon = c.Attr.Float("epsilon", 1e-5f);
        Shapes.Require(x.Rank >= 2, () => $"BatchNormalization needs [N, C, ...], got {Shapes.Text(x.Shape)}");
        long channels = x.Shape[1];
        var perChannel = new long[x.Rank - 1];
        Array.Fill(perChannel, 1L);
        perChannel[0] = channels;
        Tensor Param(int i)
        {
            var p = c.In(i).Value;
            Shapes.Require(p.numel() == channels, () => $"BatchNormalization input {i} has {p.numel()} values for {channels} channels");
            return p.reshape(perChannel);
        }
        var scale = Param(1) * (Param(4) + epsilon).rsqrt();
        var y = (x.Value - Param(3)) * scale + Param(2);
        return [new Dual(y, x.Tangent is null ? null : x.Tangent * scale)];
    }

    public static string? ValidateLayerNormalization(GraphNode node, int opset) =>
        node.Outputs.Skip(1).Any(o => o >= 0) ? "only the Y output is supported (Mean and InvStdDev are not)" : null;

    public static Dual[] LayerNormalization(OpContext c)
    {
        var x = c.In(0);
        long rank = x.Rank;
        long axis = Shapes.Axis(c.Attr.Int("axis", -1), rank);
        double epsilon = c.Attr.Float("epsilon", 1e-5f);
        var dims = Enumerable.Range((int)axis, (int)(rank - axis)).Select(i => (long)i).ToArray();
        var scale = c.In(1).Value;
        var bias = c.Optional(2)?.Value;
        var normalized = x.Shape[(int)axis..];
        Shapes.Require(Shapes.Broadcast(scale.shape, normalized).SequenceEqual(normalized),
            () => $"LayerNormalization scale {Shapes.Text(scale.shape)} does not match normalized shape {Shapes.Text(normalized)}");

        var centred = x.Value - x.Value.mean(dims, keepdim: true);
        var rstd = (centred.square().mean(dims, keepdim: true) + epsilon).rsqrt();
        var xhat = centred * rstd;
        var y = bias is null ? xhat * scale : xhat * scale + bias;
        if (x.Tangent is not { } t) return [new Dual(y, null)];

        // d xhat = rstd * (dx - mean(dx) - xhat * mean(xhat * dx)), means over the normalised axes.
        var tdims = Tangents.Shift(dims);
        var dxhat = (t - t.mean(tdims, keepdim: true) - xhat * (t * xhat).mean(tdims, keepdim: true)) * rstd;
        return [new Dual(y, dxhat * scale)];
    }
}
