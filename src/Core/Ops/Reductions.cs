using JacService.Core.Onnx;
using static JacService.Core.Ops.Scalars;
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
        if (ReducedAxes(c, axesFromInput) is not { } axes) return [x];
        bool keep = c.Attr.Int("keepdims", 1) != 0;
        var y = reduce(x.Value, axes, keep);
        return [new Dual(y, x.Tangent is null ? null : reduce(x.Tangent, Tangents.Shift(axes), keep))];
    }

    /// <summary>The sorted axes a reduction reduces, or null when it is the identity (empty axes with noop_with_empty_axes).</summary>
    private static long[]? ReducedAxes(OpContext c, bool axesFromInput)
    {
        long rank = c.In(0).Rank;
        long[]? axes = axesFromInput ? (c.Optional(1) is { } a ? HostValues.Ints(a.Value) : null) : c.Attr.Ints("axes");
        if (axes is null || axes.Length == 0)
        {
            if (c.Attr.Int("noop_with_empty_axes", 0) != 0) return null;
            axes = Enumerable.Range(0, (int)rank).Select(i => (long)i).ToArray();
        }
        return axes.Select(v => Shapes.Axis(v, rank)).Distinct().Order().ToArray();
    }

    public static Tensor?[] ReduceSumVjp(VjpContext c) => ReduceVjp(c, axesFromInput: true, mean: false);

    public static Tensor?[] ReduceMeanVjp(VjpContext c) => ReduceVjp(c, axesFromInput: c.Opset >= 18, mean: true);

    /// <summary>The transpose of a sum is a broadcast: the cotangent is spread back over the reduced axes (divided by their size for a mean).</summary>
    private static Tensor?[] ReduceVjp(VjpContext c, bool axesFromInput, bool mean)
    {
        var result = new Tensor?[c.InputCount];
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return result;
        var x = c.In(0);
        if (ReducedAxes(c.Primal(), axesFromInput) is not { } axes) return [ct, .. result[1..]];
        if (c.Attr.Int("keepdims", 1) == 0)
            foreach (var axis in axes) ct = ct.unsqueeze(axis + 1);
        var spread = ct.expand(Tangents.WithBasis(ct.size(0), x.Dims()));
        result[0] = mean ? spread / S(Shapes.Product(axes.Select(a => x.Dims()[a]))) : spread;
        return result;
    }

    // ReduceMax, ReduceMin, ReduceL1, ReduceL2, ReduceSumSquare and ReduceLogSumExp (axes an attribute before opset 18,
    // as ReduceMean's): each is y = r(x) over the axes with a slope ∂y/∂x from x and y kept at x's rank. The tangent is
    // Σ slope·T over the axes, the cotangent slope·C spread back. Max and Min share ties equally, as JAX and PyTorch do.

    public static Dual[] ReduceMax(OpContext c) => ReduceBySlope(c, NodeAxes, (x, axes) => x.amax(axes, keepdim: true), ExtremumSlope);

    public static Dual[] ReduceMin(OpContext c) => ReduceBySlope(c, NodeAxes, (x, axes) => x.amin(axes, keepdim: true), ExtremumSlope);

    public static Dual[] ReduceL1(OpContext c) => ReduceBySlope(c, NodeAxes, (x, axes) => x.abs().sum(axes, keepdim: true), L1Slope);

    public static Dual[] ReduceL2(OpContext c) => ReduceBySlope(c, NodeAxes, (x, axes) => (x * x).sum(axes, keepdim: true).sqrt(), L2Slope);

    public static Dual[] ReduceSumSquare(OpContext c) => ReduceBySlope(c, NodeAxes, (x, axes) => (x * x).sum(axes, keepdim: true), SumSquareSlope);

    public static Dual[] ReduceLogSumExp(OpContext c) => ReduceBySlope(c, NodeAxes, LogSumExp, LogSumExpSlope);

    public static Dual[] ReduceProd(OpContext c) => ReduceBySlope(c, NodeAxes, Product, ProductSlope);

    public static Tensor?[] ReduceProdVjp(VjpContext c) => ReduceBySlopeVjp(c, NodeAxes, ProductSlope);

    public static Tensor?[] ReduceExtremumVjp(VjpContext c) => ReduceBySlopeVjp(c, NodeAxes, ExtremumSlope);

    public static Tensor?[] ReduceL1Vjp(VjpContext c) => ReduceBySlopeVjp(c, NodeAxes, L1Slope);

    public static Tensor?[] ReduceL2Vjp(VjpContext c) => ReduceBySlopeVjp(c, NodeAxes, L2Slope);

    public static Tensor?[] ReduceSumSquareVjp(VjpContext c) => ReduceBySlopeVjp(c, NodeAxes, SumSquareSlope);

    public static Tensor?[] ReduceLogSumExpVjp(VjpContext c) => ReduceBySlopeVjp(c, NodeAxes, LogSumExpSlope);

    /// <summary>∂y/∂x of a reduction, from x, y kept at x's rank and the reduced axes.</summary>
    private delegate Tensor ReductionSlope(Tensor x, Tensor kept, long[] axes);

    private static readonly ReductionSlope ExtremumSlope = (x, kept, axes) =>
    {
        var attains = x.eq(kept).to_type(x.dtype);
        return attains / attains.sum(axes, keepdim: true);
    };

    /// <summary>
    /// ∂y/∂xᵢ of a product is the product of the others: y/xᵢ without a zero in the group, the product of the non-zeros p
    /// at its one zero (0 elsewhere), and 0 throughout with two zeros or more. PINNs that build a boundary's distance
    /// function as Πᵢ xᵢ(1 − xᵢ) meet those zeros on the boundary.
    /// </summary>
    private static readonly ReductionSlope ProductSlope = (x, _, axes) =>
    {
        var (zero, nonZero, product, zeros) = ProductParts(x, axes);
        return where(zeros.eq(S(0)), product / nonZero, where(zeros.eq(S(1)).logical_and(zero), product, zeros_like(product)));
    };

    /// <summary>Where x is zero, x with those set to one, the product of the non-zeros and their count per group (kept at x's rank).</summary>
    private static (Tensor Zero, Tensor NonZero, Tensor Product, Tensor Zeros) ProductParts(Tensor x, long[] axes)
    {
        var zero = x.eq(S(0));
        var nonZero = x.masked_fill(zero, S(1));
        return (zero, nonZero, Product(nonZero, axes), zero.sum(axes, keepdim: true, type: x.dtype));
    }

    /// <summary>The product over several axes, kept (libtorch's prod takes one axis at a time).</summary>
    private static Tensor Product(Tensor x, long[] axes) => axes.Aggregate(x, (p, axis) => p.prod(axis, keepdim: true));

    private static readonly ReductionSlope L1Slope = (x, _, _) => x.sign();

    private static readonly ReductionSlope L2Slope = (x, kept, _) => x / kept;

    private static readonly ReductionSlope SumSquareSlope = (x, _, _) => x * S(2);

    private static readonly ReductionSlope LogSumExpSlope = (x, kept, _) => x.Minus(kept).exp();

    /// <summary>log Σ eˣ, shifted by the maximum so that no exponential overflows.</summary>
    private static Tensor LogSumExp(Tensor x, long[] axes)
    {
        var max = x.amax(axes, keepdim: true);
        return x.Minus(max).exp().sum(axes, keepdim: true).log().Plus(max);
    }

    // GlobalMaxPool is ReduceMax over the spatial axes, kept.
    public static Dual[] GlobalMaxPool(OpContext c) => ReduceBySlope(c, SpatialAxes, (x, axes) => x.amax(axes, keepdim: true), ExtremumSlope);

    public static Tensor?[] GlobalMaxPoolVjp(VjpContext c) => ReduceBySlopeVjp(c, SpatialAxes, ExtremumSlope);

    /// <summary>The axes a reduction reduces (null: none, it passes x through) and whether it keeps them as 1.</summary>
    private delegate (long[]? Axes, bool Keep) ReducedBy(OpContext c);

    /// <summary>A Reduce op's axes (an attribute before opset 18) and its keepdims.</summary>
    private static readonly ReducedBy NodeAxes = c => (ReducedAxes(c, c.Opset >= 18), c.Attr.Int("keepdims", 1) != 0);

    /// <summary>A global pool's: the spatial axes after [N, C], kept.</summary>
    private static readonly ReducedBy SpatialAxes = c => ([.. Enumerable.Range(2, (int)c.In(0).Rank - 2).Select(a => (long)a)], true);

    private static Dual[] ReduceBySlope(OpContext c, ReducedBy reducedBy, Func<Tensor, long[], Tensor> reduce, ReductionSlope slope)
    {
        var x = c.In(0);
        if (reducedBy(c) is not ({ } axes, var keep)) return [x];
        var kept = reduce(x.Value, axes);
        var y = keep ? kept : kept.reshape(Dropped(x.Shape, axes));
        return [new Dual(y, x.Tangent is { } t ? (t * slope(x.Value, kept, axes)).sum(Tangents.Shift(axes), keep) : null)];
    }

    private static Tensor?[] ReduceBySlopeVjp(VjpContext c, ReducedBy reducedBy, ReductionSlope slope)
    {
        var result = new Tensor?[c.InputCount];
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return result;
        var x = c.In(0);
        if (reducedBy(c.Primal()).Axes is not { } axes) return [ct, .. result[1..]];
        var kept = Kept(x.Dims(), axes);
        result[0] = ct.reshape(Tangents.WithBasis(ct.size(0), kept)) * slope(x, c.Out(0).reshape(kept), axes);
        return result;
    }

    /// <summary>x's shape with the reduced axes kept as 1.</summary>
    private static long[] Kept(long[] shape, long[] axes) => shape.Select((d, i) => axes.Contains(i) ? 1 : d).ToArray();

    /// <summary>x's shape without the reduced axes.</summary>
    private static long[] Dropped(long[] shape, long[] axes) => shape.Where((_, i) => !axes.Contains(i)).ToArray();

    // y = √Σx²: d²y[u, v] = Σ u v / y − (Σ x u)(Σ x v) / y³.
    public static Tensor?[] ReduceL2Curvature(CurvatureContext c) => ReduceCurvature(c, (x, kept, g, axes) =>
    {
        var a = (x * g).sum(Tangents.Shift(axes), keepdim: true);
        return (c.Pairs(g, g).sum(Tangents.Shift(axes), keepdim: true) / kept).Minus(c.Pairs(a, a) / Powers.Cube(kept));
    });

    // y = Πx over a group with z zeros, p the product of its non-zeros and s = G / x at the non-zeros:
    // z = 0: d²y[u, v] = y ((Σ s_u)(Σ s_v) − Σ s_u s_v); z = 1: p ((Σ G_u at the zero)(Σ s_v) + the same with u, v swapped);
    // z = 2: p (G_u at one zero · G_v at the other + swapped) = p ((Σ_zeros G_u)(Σ_zeros G_v) − Σ_zeros G_u G_v); z > 2: 0.
    public static Tensor?[] ReduceProdCurvature(CurvatureContext c) => ReduceCurvature(c, (x, kept, g, axes) =>
    {
        var shifted = Tangents.Shift(axes);
        var (zero, nonZero, product, zeros) = ProductParts(x, axes);
        var s = (g / nonZero).masked_fill(zero, S(0));
        var atZeros = g.masked_fill(zero.logical_not(), S(0));
        var (sumS, sumZ) = (s.sum(shifted, keepdim: true), atZeros.sum(shifted, keepdim: true));
        var none = kept * c.Pairs(sumS, sumS).Minus(c.Pairs(s, s).sum(shifted, keepdim: true));
        var one = product * c.SymmetricPairs(sumZ, sumS);
        var two = product * c.Pairs(sumZ, sumZ).Minus(c.Pairs(atZeros, atZeros).sum(shifted, keepdim: true));
        return where(zeros.eq(S(0)), none, where(zeros.eq(S(1)), one, where(zeros.eq(S(2)), two, zeros_like(none))));
    });

    // y = Σx²: d²y[u, v] = 2 Σ u v.
    public static Tensor?[] ReduceSumSquareCurvature(CurvatureContext c) =>
        ReduceCurvature(c, (_, _, g, axes) => c.Pairs(g, g).sum(Tangents.Shift(axes), keepdim: true) * S(2));

    // y = log Σeˣ, s = eˣ⁻ʸ: d²y[u, v] = Σ s u v − (Σ s u)(Σ s v).
    public static Tensor?[] ReduceLogSumExpCurvature(CurvatureContext c) => ReduceCurvature(c, (x, kept, g, axes) =>
    {
        var s = x.Minus(kept).exp();
        var a = (s * g).sum(Tangents.Shift(axes), keepdim: true);
        return (s * c.Pairs(g, g)).sum(Tangents.Shift(axes), keepdim: true).Minus(c.Pairs(a, a));
    });

    /// <summary>A reduction's curvature term computed at x's rank (from x, y kept, G and the axes), then shaped as y.</summary>
    private static Tensor?[] ReduceCurvature(CurvatureContext c, Func<Tensor, Tensor, Tensor, long[], Tensor> term)
    {
        if (c.G(0) is not { } g) return [null];
        var x = c.In(0);
        if (NodeAxes(c.Primal).Axes is not { } axes) return [null];
        var kept = c.Out(0).reshape(Kept(x.Dims(), axes));
        var result = term(x, kept, g, axes);
        return [result.reshape(Tangents.WithBasis(result.size(0), c.Out(0).Dims()))];
    }

    public static Dual[] Softmax(OpContext c)
    {
        var x = c.In(0);
        long axis = Shapes.Axis(c.Attr.Int("axis", -1), x.Rank);
        var y = x.Value.softmax(axis);
        // d softmax = y * (T - <T, y>) along the axis.
        var t = x.Tangent is { } tx ? y * tx.Minus((tx * y).sum(axis + 1, keepdim: true)) : null;
        return [new Dual(y, t)];
    }

    public static Dual[] LogSoftmax(OpContext c)
    {
        var x = c.In(0);
        long axis = Shapes.Axis(c.Attr.Int("axis", -1), x.Rank);
        var y = x.Value.log_softmax(axis);
        var t = x.Tangent is { } tx ? tx.Minus((tx * y.exp()).sum(axis + 1, keepdim: true)) : null;
        return [new Dual(y, t)];
    }

    // With w = G - <G, s> along the axis (the tangent of log-softmax): d²logsoftmax[u, v] = -<s, w_u w_v>, and
    // softmax = exp(logsoftmax) adds the product of first derivatives: d²s[u, v] = s (w_u w_v - <s, w_u w_v>).
    public static Tensor?[] SoftmaxCurvature(CurvatureContext c)
    {
        if (c.G(0) is not { } g) return [null];
        var s = c.Out(0);
        long axis = Shapes.Axis(c.Attr.Int("axis", -1), s.dim()) + 1;
        var w = CentredBySoftmax(g, s, axis);
        var ww = c.Pairs(w, w);
        return [s * ww.Minus((s * ww).sum(axis, keepdim: true))];
    }

    public static Tensor?[] LogSoftmaxCurvature(CurvatureContext c)
    {
        if (c.G(0) is not { } g) return [null];
        var s = c.Out(0).exp();
        long axis = Shapes.Axis(c.Attr.Int("axis", -1), s.dim()) + 1;
        var w = CentredBySoftmax(g, s, axis);
        return [(s * c.Pairs(w, w)).sum(axis, keepdim: true).neg()];
    }

    private static Tensor CentredBySoftmax(Tensor g, Tensor s, long axis) => g.Minus((g * s).sum(axis, keepdim: true));

    // Softmax's Jacobian diag(y) - y y^T is symmetric: the cotangent takes the tangent's formula.
    public static Tensor?[] SoftmaxVjp(VjpContext c)
    {
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return [null];
        var y = c.Out(0);
        long axis = Shapes.Axis(c.Attr.Int("axis", -1), y.dim());
        return [y * ct.Minus((ct * y).sum(axis + 1, keepdim: true))];
    }

    // LogSoftmax's Jacobian I - 1 p^T transposes to I - p 1^T.
    public static Tensor?[] LogSoftmaxVjp(VjpContext c)
    {
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return [null];
        var y = c.Out(0);
        long axis = Shapes.Axis(c.Attr.Int("axis", -1), y.dim());
        return [ct.Minus(y.exp() * ct.sum(axis + 1, keepdim: true))];
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
        _ = Param(1);
        _ = Param(4);
        var scale = BatchNormalizationScale(c);
        var y = (x.Value.Minus(Param(3)) * scale).Plus(Param(2));
        return [new Dual(y, x.Tangent is null ? null : x.Tangent * scale)];
    }

    /// <summary>The per-channel factor scale / sqrt(var + epsilon), shaped to broadcast over [N, C, ...].</summary>
    private static Tensor BatchNormalizationScale(OpContext c)
    {
        var x = c.In(0);
        var perChannel = new long[x.Rank - 1];
        Array.Fill(perChannel, 1L);
        perChannel[0] = x.Shape[1];
        return c.In(1).Value.reshape(perChannel) * c.In(4).Value.reshape(perChannel).Plus(c.Attr.Float("epsilon", 1e-5f)).rsqrt();
    }

    // Inference BatchNormalization is a per-channel scaling of x: diagonal, its own transpose.
    public static Tensor?[] BatchNormalizationVjp(VjpContext c) =>
        [c.Needs(0) && c.Cotangent(0) is { } ct ? ct * BatchNormalizationScale(c.Primal()) : null, null, null, null, null];

    public static string? ValidateLpNormalization(GraphNode node, int opset) =>
        node.Attributes.Int("p", 2) is 1 or 2 ? null : $"p {node.Attributes.Int("p", 2)} is not 1 or 2";

    /// <summary>LpNormalization: y = x / n along an axis, n = ‖x‖₂ or ‖x‖₁, and n's slope s = y or sign(x).</summary>
    private static (Tensor Y, Tensor Norm, Tensor Slope, long Axis, bool Euclidean) LpForward(OpContext c)
    {
        var x = c.In(0).Value;
        long axis = Shapes.Axis(c.Attr.Int("axis", -1), x.dim());
        bool euclidean = c.Attr.Int("p", 2) == 2;
        var norm = euclidean ? Powers.Square(x).sum(axis, keepdim: true).sqrt() : x.abs().sum(axis, keepdim: true);
        var y = x / norm;
        return (y, norm, euclidean ? y : x.sign(), axis, euclidean);
    }

    public static Dual[] LpNormalization(OpContext c)
    {
        var (y, norm, slope, axis, _) = LpForward(c);
        if (c.In(0).Tangent is not { } t) return [new Dual(y, null)];
        return [new Dual(y, t.Minus(y * (slope * t).sum(axis + 1, keepdim: true)) / norm)];
    }

    // The Jacobian (I − y sᵀ)/n; its transpose (I − s yᵀ)/n.
    public static Tensor?[] LpNormalizationVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return result;
        var (y, norm, slope, axis, _) = LpForward(c.Primal());
        result[0] = ct.Minus(slope * (y * ct).sum(axis + 1, keepdim: true)) / norm;
        return result;
    }

    // With u = Σ s·G along the axis: d²y[g, h] = (−g u_h − h u_g − y (g·h) + 3 y u_g u_h) / n² for p = 2 (s = y), and
    // (−g u_h − h u_g + 2 y u_g u_h) / n² for p = 1 (s = sign x, n piecewise linear).
    public static Tensor?[] LpNormalizationCurvature(CurvatureContext c)
    {
        if (c.G(0) is not { } g) return [null];
        var (y, norm, slope, axis, euclidean) = LpForward(c.Primal);
        long along = axis + 1;
        var u = (slope * g).sum(along, keepdim: true);
        var second = (y * c.Pairs(u, u) * S(euclidean ? 3 : 2)).Minus(c.SymmetricPairs(g, u));
        if (euclidean) second = second.Minus(y * c.Pairs(g, g, (a, b) => (a * b).sum(along, keepdim: true)));
        return [second / Powers.Square(norm)];
    }

    public static string? ValidateGroupNormalization(GraphNode node, int opset) =>
        node.Attributes.Int("num_groups", 0) > 0 ? null : "num_groups must be a positive count of groups";

    // GroupNormalization runs LayerNormalization's rules on x read as [N, G, C/G, ...]: over every axis after G, with the
    // scale and bias one per group (opset 18) or per channel (21).
    public static Dual[] GroupNormalization(OpContext c)
    {
        var x = c.In(0);
        var y = Normalize(Grouped(c), GroupAxes)[0];
        return [new Dual(y.Value.reshape(x.Shape), y.Tangent is { } t ? t.reshape(Ungrouped(t, x.Shape)) : null)];
    }

    public static Tensor?[] GroupNormalizationVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return result;
        var grouped = Grouped(c.Primal());
        var (_, xhat, rstd, dims, scale) = NormalizeForward(grouped, GroupAxes);
        result[0] = Project(ct.reshape(Tangents.WithBasis(ct.size(0), grouped.In(0).Shape)) * scale, xhat, rstd, dims, centred: true).reshape(ct.Dims());
        return result;
    }

    public static Tensor?[] GroupNormalizationCurvature(CurvatureContext c)
    {
        var grouped = Grouped(c.Primal);
        var second = NormalizeCurvature(new CurvatureContext(grouped, [], c.Basis), GroupAxes)[0];
        return [second?.reshape(Ungrouped(second, c.In(0).Dims()))];
    }

    /// <summary>The context with x (and its tangent) read as [N, G, C/G, ...]; the other inputs as they are.</summary>
    private static OpContext Grouped(OpContext c)
    {
        var x = c.In(0);
        long groups = c.Attr.Int("num_groups", 0);
        Shapes.Require(x.Rank >= 2 && groups > 0 && x.Shape[1] % groups == 0,
            () => $"GroupNormalization of {Shapes.Text(x.Shape)} into {groups} groups: the channels (axis 1) must divide into them");
        long[] grouped = [x.Shape[0], groups, x.Shape[1] / groups, .. x.Shape[2..]];
        var tangent = x.Tangent is { } t ? Tangents.Fit(t, x.Shape).reshape(Tangents.WithBasis(t.size(0), grouped)) : null;
        return new OpContext(c.Node, c.Opset, c.ComputeType,
            Enumerable.Range(0, c.InputCount).Select(i => i == 0 ? new Dual(x.Value.reshape(grouped), tangent) : c.Optional(i)).ToArray());
    }

    /// <summary>[lead, N, G, C/G, ...] back to [lead, N, C, ...].</summary>
    private static long[] Ungrouped(Tensor grouped, long[] shape) => [grouped.size(0), .. shape];

    /// <summary>GroupNormalization on [N, G, C/G, ...]: every axis after G; scale and bias per group (opset 18) or channel (21).</summary>
    private static readonly NormalizedBy GroupAxes = c =>
    {
        var x = c.In(0);
        long groups = x.Shape[1], perGroup = x.Shape[2];
        long[] trailing = [.. Enumerable.Repeat(1L, (int)x.Rank - 3)];
        Tensor Shaped(Tensor v, string what)
        {
            long expected = c.Opset >= 21 ? groups * perGroup : groups;
            Shapes.Require(v.Dims().SequenceEqual([expected]),
                () => $"GroupNormalization {what} {Shapes.Text(v.Dims())} is not one per {(c.Opset >= 21 ? "channel" : "group")} ({expected}) at opset {c.Opset}");
            return c.Opset >= 21 ? v.reshape([groups, perGroup, .. trailing]) : v.reshape([groups, 1, .. trailing]);
        }
        return (Enumerable.Range(2, (int)x.Rank - 2).Select(i => (long)i).ToArray(), Shaped(c.In(1).Value, "scale"), Shaped(c.In(2).Value, "bias"));
    };

    public static string? ValidateLayerNormalization(GraphNode node, int opset) =>
        node.Outputs.Skip(1).Any(o => o >= 0) ? "only the Y output is supported (Mean and InvStdDev are not)" : null;

    public static Dual[] LayerNormalization(OpContext c) => Normalize(c, LayerAxes);

    public static Dual[] InstanceNormalization(OpContext c) => Normalize(c, InstanceAxes);

    public static Tensor?[] LayerNormalizationVjp(VjpContext c) => NormalizeVjp(c, LayerAxes);

    public static Tensor?[] InstanceNormalizationVjp(VjpContext c) => NormalizeVjp(c, InstanceAxes);

    public static Tensor?[] LayerNormalizationCurvature(CurvatureContext c) => NormalizeCurvature(c, LayerAxes);

    public static Tensor?[] InstanceNormalizationCurvature(CurvatureContext c) => NormalizeCurvature(c, InstanceAxes);

    /// <summary>The axes a normalisation normalises over, and its scale and bias shaped to broadcast against x.</summary>
    private delegate (long[] Dims, Tensor Scale, Tensor? Bias) NormalizedBy(OpContext c);

    /// <summary>LayerNormalization: the axes from `axis` to the last; scale and bias of the normalised shape.</summary>
    private static readonly NormalizedBy LayerAxes = c =>
    {
        var x = c.In(0);
        long axis = Shapes.Axis(c.Attr.Int("axis", -1), x.Rank);
        var scale = c.In(1).Value;
        var normalized = x.Shape[(int)axis..];
        Shapes.Require(Shapes.Broadcast(scale.Dims(), normalized).SequenceEqual(normalized),
            () => $"LayerNormalization scale {Shapes.Text(scale.Dims())} does not match normalized shape {Shapes.Text(normalized)}");
        return (Enumerable.Range((int)axis, (int)(x.Rank - axis)).Select(i => (long)i).ToArray(), scale, c.Optional(2)?.Value);
    };

    /// <summary>InstanceNormalization: the spatial axes of [N, C, ...]; scale and bias per channel.</summary>
    private static readonly NormalizedBy InstanceAxes = c =>
    {
        var x = c.In(0);
        Shapes.Require(x.Rank >= 3, () => $"InstanceNormalization needs [N, C, ...], got {Shapes.Text(x.Shape)}");
        long[] perChannel = [x.Shape[1], .. Enumerable.Repeat(1L, (int)x.Rank - 2)];
        Tensor PerChannel(Tensor v, string what)
        {
            Shapes.Require(v.Dims().SequenceEqual([x.Shape[1]]), () => $"InstanceNormalization {what} {Shapes.Text(v.Dims())} is not one per channel ({x.Shape[1]})");
            return v.reshape(perChannel);
        }
        return (Enumerable.Range(2, (int)x.Rank - 2).Select(i => (long)i).ToArray(), PerChannel(c.In(1).Value, "scale"), PerChannel(c.In(2).Value, "bias"));
    };

    private static Dual[] Normalize(OpContext c, NormalizedBy by)
    {
        var (y, xhat, rstd, dims, scale) = NormalizeForward(c, by);
        if (c.In(0).Tangent is not { } t) return [new Dual(y, null)];
        return [new Dual(y, Project(t, xhat, rstd, dims, Centres(c)) * scale)];
    }

    /// <summary>Whether the normalisation subtracts the mean: all but RMSNormalization, which scales by the root mean square alone.</summary>
    private static bool Centres(OpContext c) => c.Node.OpType != "RMSNormalization";

    // The map dx -> rstd * P dx with P = I - mean - xhat mean(xhat .) is symmetric, so the cotangent is scaled by the
    // scale first and then takes the same projection.
    private static Tensor?[] NormalizeVjp(VjpContext c, NormalizedBy by)
    {
        var result = new Tensor?[c.InputCount];
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return result;
        var (_, xhat, rstd, dims, scale) = NormalizeForward(c.Primal(), by);
        result[0] = Project(ct * scale, xhat, rstd, dims, Centres(c.Primal()));
        return result;
    }

    private static (Tensor Y, Tensor Xhat, Tensor Rstd, long[] Dims, Tensor Scale) NormalizeForward(OpContext c, NormalizedBy by)
    {
        var x = c.In(0).Value;
        var (dims, scale, bias) = by(c);
        double epsilon = c.Attr.Float("epsilon", 1e-5f);
        var centred = Centres(c) ? x.Minus(x.mean(dims, keepdim: true)) : x;
        var rstd = Powers.Square(centred).mean(dims, keepdim: true).Plus(epsilon).rsqrt();
        var xhat = centred * rstd;
        var y = bias is null ? xhat * scale : (xhat * scale).Plus(bias);
        return (y, xhat, rstd, dims, scale);
    }

    // With w = rstd (G - mean G) and b = mean(xhat w) over the normalised axes, xhat = (x - mean) rstd has
    // d²xhat[u, v] = -(w_u b_v + w_v b_u) + xhat (3 b_u b_v - mean(w_u w_v)); y = xhat * scale + bias. Without the
    // mean (RMSNormalization) the same holds with w = rstd G.
    private static Tensor?[] NormalizeCurvature(CurvatureContext c, NormalizedBy by)
    {
        if (c.G(0) is not { } g) return [null];
        var (_, xhat, rstd, dims, scale) = NormalizeForward(c.Primal, by);
        var gdims = Tangents.Shift(dims);
        var w = (Centres(c.Primal) ? g.Minus(g.mean(gdims, keepdim: true)) : g) * rstd;
        var b = (xhat * w).mean(gdims, keepdim: true);
        var second = (xhat * (c.Pairs(b, b) * S(3)).Minus(c.Pairs(w, w).mean(gdims, keepdim: true))).Minus(c.SymmetricPairs(w, b));
        return [second * scale];
    }

    /// <summary>rstd * (v - mean(v) - xhat * mean(xhat * v)), means over the normalised axes of v [K, ..x] (without mean(v) uncentred).</summary>
    private static Tensor Project(Tensor v, Tensor xhat, Tensor rstd, long[] dims, bool centred)
    {
        var vdims = Tangents.Shift(dims);
        return (centred ? v.Minus(v.mean(vdims, keepdim: true)) : v).Minus(xhat * (v * xhat).mean(vdims, keepdim: true)) * rstd;
    }
}
