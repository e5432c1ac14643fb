using JacService.Core.Onnx;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// DepthToSpace and SpaceToDepth move b × b blocks between the channel axis and the two spatial ones: a reshape of
/// [C, H, W], a permutation and a reshape. One <see cref="Layout"/> describes each (the split of the input's [C, H, W],
/// the permutation of the split axes, the output's [C, H, W]) and serves values, tangents and, inverted, cotangents,
/// whatever axes lead (the batch, the basis). torch writes PixelShuffle as DepthToSpace (CRD); TensorFlow's
/// depth_to_space and space_to_depth are DCR.
/// </summary>
internal static class BlockRearrange
{
    /// <param name="Input">The input's [C, H, W].</param>
    /// <param name="Split">Those axes split into blocks.</param>
    /// <param name="Perm">The order the split axes take.</param>
    /// <param name="Output">The output's [C, H, W].</param>
    public sealed record Layout(long[] Input, long[] Split, long[] Perm, long[] Output)
    {
        /// <summary>The split axes in their permuted order: the shape a cotangent is read as before the inverse permutation.</summary>
        public long[] Permuted => Perm.Select(p => Split[p]).ToArray();

        public long[] Inverse
        {
            get
            {
                var inverse = new long[Perm.Length];
                for (int i = 0; i < Perm.Length; i++) inverse[Perm[i]] = i;
                return inverse;
            }
        }
    }

    public static string? Validate(GraphNode node, int opset)
    {
        if (node.Attributes.Int("blocksize", 0) < 1) return $"{node.OpType} needs a blocksize of 1 or more, got {node.Attributes.Int("blocksize", 0)}";
        var mode = node.Attributes.String("mode", "DCR");
        return node.OpType == "DepthToSpace" && mode is not ("DCR" or "CRD") ? $"DepthToSpace mode must be DCR or CRD, got '{mode}'" : null;
    }

    /// <summary>The layout of <paramref name="op"/> on an input of shape <paramref name="x"/> ([N, C, H, W]).</summary>
    public static Layout For(string op, long blocksize, string mode, long[] x)
    {
        Shapes.Require(x.Length == 4, () => $"{op} takes an input of rank 4 [N, C, H, W], got {Shapes.Text(x)}");
        long b = blocksize, c = x[1], h = x[2], w = x[3];
        if (op == "SpaceToDepth")
        {
            Shapes.Require(h % b == 0 && w % b == 0, () => $"SpaceToDepth with blocksize {b} needs H and W divisible by {b}, got {Shapes.Text(x)}");
            return new Layout([c, h, w], [c, h / b, b, w / b, b], [2, 4, 0, 1, 3], [c * b * b, h / b, w / b]);
        }
        Shapes.Require(c % (b * b) == 0, () => $"DepthToSpace with blocksize {b} needs C divisible by {b * b}, got {Shapes.Text(x)}");
        long depth = c / (b * b);
        return mode == "CRD"
            ? new Layout([c, h, w], [depth, b, b, h, w], [0, 3, 1, 4, 2], [depth, h * b, w * b])
            : new Layout([c, h, w], [b, b, depth, h, w], [2, 3, 0, 4, 1], [depth, h * b, w * b]);
    }

    public static Layout For(GraphNode node, long[] x) => For(node.OpType, node.Attributes.Int("blocksize", 0), node.Attributes.String("mode", "DCR"), x);

    public static Tensor Forward(OpContext c, Tensor x) => Apply(For(c.Node, x.Dims()), x);

    public static Tensor Push(OpContext c, Tensor tangent, Tensor y) => Apply(For(c.Node, c.In(0).Shape), tangent);

    public static Tensor Pull(VjpContext c, Tensor cotangent) => Transpose(For(c.Node, c.In(0).Dims()), cotangent);

    /// <summary>The rearrangement of t, whose last three axes are the input's [C, H, W].</summary>
    public static Tensor Apply(Layout layout, Tensor t)
    {
        var lead = t.Dims()[..^3];
        return t.reshape([.. lead, .. layout.Split]).permute([.. Leading(lead.Length), .. Shifted(layout.Perm, lead.Length)])
            .reshape([.. lead, .. layout.Output]);
    }

    /// <summary>The transpose (and inverse) of <see cref="Apply"/>: ct's last three axes are the output's.</summary>
    public static Tensor Transpose(Layout layout, Tensor ct)
    {
        var lead = ct.Dims()[..^3];
        return ct.reshape([.. lead, .. layout.Permuted]).permute([.. Leading(lead.Length), .. Shifted(layout.Inverse, lead.Length)])
            .reshape([.. lead, .. layout.Input]);
    }

    private static long[] Leading(int count) => Enumerable.Range(0, count).Select(a => (long)a).ToArray();

    private static long[] Shifted(long[] perm, int by) => perm.Select(p => p + by).ToArray();
}
