using JacService.Core.Onnx;
using static JacService.Core.Ops.Scalars;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// GridSample on images (X [N, C, H, W], grid [N, Ho, Wo, 2] of (x, y) in [−1, 1]): each output position reads X at its
/// grid point, from the four pixels around it (bilinear) or the nearest one. The output is a sum over taps of a weight
/// times a pixel, so everything follows from each tap's flat index and weight and the weight's slopes in the grid's x and
/// y: linear in X (the same taps carry X's tangent, and scatter its cotangent back), and in the grid the slopes times
/// the pixels. Bilinear weights are products of an x and a y factor, each linear between pixels, so the only second
/// derivative in the grid is the mixed one (the cell's twist), and X and the grid pair through the slopes.
/// </summary>
internal static class GridSampling
{
    private static readonly string[] Paddings = ["zeros", "border", "reflection"];

    public static string? Validate(GraphNode node, int opset)
    {
        var a = node.Attributes;
        var named = a.String("mode", opset >= 20 ? "linear" : "bilinear");
        // Opset 20 renamed the modes, and ONNX Runtime, which serves Predict, holds each opset to its own names.
        string[] names = opset >= 20 ? ["linear", "nearest", "cubic"] : ["bilinear", "nearest", "bicubic"];
        if (!names.Contains(named)) return $"mode '{named}' is not one of {string.Join(", ", names)} at opset {opset}";
        if (named is "bicubic" or "cubic") return $"mode '{named}' is not supported; export with {names[0]} or nearest sampling";
        if (!Paddings.Contains(a.String("padding_mode", "zeros"))) return $"padding_mode '{a.String("padding_mode", "")}' is not one of {string.Join(", ", Paddings)}";
        if (a.Int("align_corners", 0) is not (0 or 1)) return $"align_corners {a.Int("align_corners", 0)} is not 0 or 1";
        return null;
    }

    /// <summary>The mode under opset 16's name ("linear" became the name in 20).</summary>
    private static string Mode(NodeAttributes a) => a.String("mode", "bilinear") switch { "linear" => "bilinear", var m => m };

    public static Dual[] Forward(OpContext c)
    {
        var (x, grid) = (c.In(0), c.In(1));
        var taps = Taps(c.Attr, x.Shape, grid.Value);
        var flat = x.Value.flatten(2);
        var values = taps.Select(t => Read(flat, t.Index)).ToArray();
        var y = Sum(taps.Select((t, i) => values[i] * t.Weight.unsqueeze(1)));
        Tensor? tangent = null;
        if (x.Tangent is { } tx)
        {
            var full = Tangents.Fit(tx, x.Shape).flatten(3);
            tangent = Sum(taps.Select(t => Read(full, t.Index) * t.Weight.unsqueeze(1)));
        }
        if (grid.Tangent is { } tg)
        {
            var (gx, gy) = Coordinates(Tangents.Fit(tg, grid.Shape));
            tangent = Tangents.Sum(tangent, Sum(taps.Select((t, i) => values[i] * (t.SlopeX.unsqueeze(1) * gx).Plus(t.SlopeY.unsqueeze(1) * gy))));
        }
        return [new Dual(Output(y, grid.Shape), tangent is null ? null : Output(tangent, grid.Shape))];
    }

    public static Tensor?[] Vjp(VjpContext c)
    {
        var result = new Tensor?[2];
        if (c.Cotangent(0) is not { } ct) return result;
        var (x, grid) = (c.In(0), c.In(1));
        var taps = Taps(c.Attr, x.Dims(), grid);
        // [K, N, C, Ho·Wo]
        var flat = Tangents.Fit(ct, c.Out(0).Dims()).flatten(3);
        if (c.Needs(0))
        {
            var into = zeros([flat.size(0), .. x.Dims()[..2], x.size(2) * x.size(3)], flat.dtype, flat.device);
            foreach (var t in taps) into.scatter_add_(3, t.Index.unsqueeze(1).expand_as(flat), flat * t.Weight.unsqueeze(1));
            result[0] = into.view([flat.size(0), .. x.Dims()]);
        }
        if (c.Needs(1))
        {
            var pixels = x.flatten(2);
            Tensor? dx = null, dy = null;
            foreach (var t in taps)
            {
                var read = (flat * Read(pixels, t.Index)).sum(2);
                dx = Tangents.Sum(dx, read * t.SlopeX);
                dy = Tangents.Sum(dy, read * t.SlopeY);
            }
            result[1] = stack([dx!, dy!], -1).view([flat.size(0), .. grid.Dims()]);
        }
        return result;
    }

    /// <summary>The mixed terms: the grid's x and y directions paired by the cell's twist, and X's directions with the grid's through the slopes.</summary>
    public static Tensor?[] Curvature(CurvatureContext c)
    {
        if (c.G(1) is not { } tg) return [];
        var (x, grid) = (c.In(0), c.In(1));
        var taps = Taps(c.Attr, x.Dims(), grid);
        var (gx, gy) = Coordinates(Tangents.Fit(tg, grid.Dims()));
        var pixels = x.flatten(2);
        var twist = Sum(taps.Select(t => Read(pixels, t.Index) * t.Twist.unsqueeze(1)));
        var q = c.SymmetricPairs(gx, gy) * twist;
        if (c.G(0) is { } txAll)
        {
            var tx = Tangents.Fit(txAll, x.Dims()).flatten(3);
            // b(u, v): X's direction u read through the slopes along the grid's direction v.
            Tensor Bilinear(Tensor u, Tensor v)
            {
                var (vx, vy) = Coordinates(v);
                return Sum(taps.Select(t => Read(u, t.Index) * (t.SlopeX.unsqueeze(1) * vx).Plus(t.SlopeY.unsqueeze(1) * vy)));
            }
            q = q.Plus(c.SymmetricPairs(tx, Tangents.Fit(tg, grid.Dims()), Bilinear));
        }
        return [Output(q, grid.Dims())];
    }

    /// <summary>The output's elements, and the four taps' reads of them.</summary>
    public static long Allocates(OpContext c)
    {
        var (x, grid) = (c.In(0).Shape, c.In(1).Shape);
        if (x.Length != 4 || grid.Length != 4) return 0;
        return Sizes.Times(6, Sizes.Times(Sizes.Times(x[0], x[1]), Sizes.Times(grid[1], grid[2])));
    }

    /// <summary>
    /// One tap of every output position, [N, Ho·Wo] each: the pixel's flat index (y·W + x, clamped in range), its weight
    /// (0 where the pixel lies outside and padding is zeros), the weight's slopes in the grid's x and y (the coordinate's
    /// unnormalising scale and padding's reflection or clamp applied), and its mixed second derivative.
    /// </summary>
    private sealed record Tap(Tensor Index, Tensor Weight, Tensor SlopeX, Tensor SlopeY, Tensor Twist);

    private static Tap[] Taps(NodeAttributes a, long[] x, Tensor grid)
    {
        Shapes.Require(x.Length == 4 && grid.dim() == 4 && grid.size(3) == 2 && grid.size(0) == x[0],
            () => $"GridSample samples X [N, C, H, W] at a grid [N, Ho, Wo, 2], not X {Shapes.Text(x)} at {Shapes.Text(grid.Dims())} " +
                  "(volumetric and other ranks are not supported)");
        long h = x[2], w = x[3];
        bool align = a.Int("align_corners", 0) != 0;
        var padding = a.String("padding_mode", "zeros");
        var points = grid.flatten(1, 2);
        var (ix, sx) = Unnormalise(points.select(-1, 0), w, align, padding);
        var (iy, sy) = Unnormalise(points.select(-1, 1), h, align, padding);
        if (Mode(a) == "nearest")
        {
            // Half-way points go to the even pixel, as torch's and ONNX Runtime's nearbyint round them.
            var (nx, ny) = (Whole(ix.round()), Whole(iy.round()));
            var zero = zeros_like(ix);
            return [new Tap(Index(nx, ny, w, h), Inside(nx, ny, w, h).to_type(ix.dtype), zero, zero, zero)];
        }
        var (x0, y0) = (Whole(ix.floor()), Whole(iy.floor()));
        var (fx, fy) = (ix.Minus(x0), iy.Minus(y0));
        var taps = new List<Tap>(4);
        foreach (var (dy, dx) in new[] { (0, 0), (0, 1), (1, 0), (1, 1) })
        {
            var (px, py) = (dx == 0 ? x0 : x0.Plus(1), dy == 0 ? y0 : y0.Plus(1));
            var inside = Inside(px, py, w, h).to_type(ix.dtype);
            // Each factor is f (the far tap) or 1 − f (the near one); its slope +1 or −1.
            var (wx, wy) = (dx == 1 ? fx : fx.From(1), dy == 1 ? fy : fy.From(1));
            double signX = dx == 1 ? 1 : -1, signY = dy == 1 ? 1 : -1;
            taps.Add(new Tap(Index(px, py, w, h), wx * wy * inside, wy * inside * sx * S(signX), wx * inside * sy * S(signY),
                inside * sx * sy * S(signX * signY)));
        }
        return [.. taps];
    }

    /// <summary>
    /// A grid coordinate in pixels and d(pixel)/d(grid): the unnormalising scale times the slope of the padding's map,
    /// as libtorch computes its gradient: ±1 where reflection folds, 0 where border or reflection clamps at an end.
    /// </summary>
    private static (Tensor Pixel, Tensor Slope) Unnormalise(Tensor g, long size, bool align, string padding)
    {
        double scale = align ? (size - 1) / 2.0 : size / 2.0;
        // align: (g + 1)(size − 1)/2; else ((g + 1)·size − 1)/2.
        var pixel = align ? g.Plus(1) * S(scale) : (g.Plus(1) * S(size)).Minus(1) * S(0.5);
        var slope = full_like(g, S(scale));
        if (padding == "reflection")
        {
            // Folded back and forth over [low, high]: the corners' centres (align) or their edges.
            double low = align ? 0 : -0.5, span = align ? size - 1 : size;
            if (span <= 0) return (zeros_like(pixel), zeros_like(pixel));
            var shifted = pixel.Minus(low);
            var sign = where(shifted.lt(S(0)), full_like(g, S(-1)), full_like(g, S(1)));
            var distance = shifted.abs();
            var flips = (distance * S(1 / span)).floor();
            var extra = distance.Minus(flips * S(span));
            var odd = flips.remainder(S(2)).eq(S(1));
            pixel = where(odd, extra.From(span), extra).Plus(low);
            slope = slope * where(odd, sign.neg(), sign);
        }
        if (padding is "border" or "reflection")
        {
            var inside = pixel.gt(S(0)).logical_and(pixel.lt(S(size - 1)));
            slope = slope * inside.to_type(g.dtype);
            pixel = pixel.clamp(S(0), S(size - 1));
        }
        return (pixel, slope);
    }

    /// <summary>A pixel position with NaN (a NaN coordinate) read as 0, so that its index is a pixel: its weight stays NaN.</summary>
    private static Tensor Whole(Tensor p) => where(p.isnan(), zeros_like(p), p);

    private static Tensor Inside(Tensor px, Tensor py, long w, long h) =>
        px.ge(S(0)).logical_and(px.le(S(w - 1))).logical_and(py.ge(S(0))).logical_and(py.le(S(h - 1)));

    // In int64: a float32 index would be wrong past 2^24 pixels.
    private static Tensor Index(Tensor px, Tensor py, long w, long h) =>
        (py.clamp(S(0), S(h - 1)).to_type(ScalarType.Int64) * L(w)).Plus(px.clamp(S(0), S(w - 1)).to_type(ScalarType.Int64));

    /// <summary>Pixels [.., N, C, H·W] read at one tap's indices [N, P]: [.., N, C, P].</summary>
    private static Tensor Read(Tensor pixels, Tensor index)
    {
        var shape = pixels.Dims();
        shape[^1] = index.size(1);
        var at = index.unsqueeze(1);
        for (long lead = pixels.dim() - 3; lead > 0; lead--) at = at.unsqueeze(0);
        return pixels.gather(-1, at.expand(shape));
    }

    /// <summary>A direction of the grid [.., N, Ho, Wo, 2] as its x and y parts [.., N, 1, Ho·Wo], to scale the taps' slopes.</summary>
    private static (Tensor X, Tensor Y) Coordinates(Tensor direction)
    {
        var flat = direction.flatten(-3, -2);
        return (flat.select(-1, 0).unsqueeze(-2), flat.select(-1, 1).unsqueeze(-2));
    }

    /// <summary>[.., N, C, Ho·Wo] back to [.., N, C, Ho, Wo].</summary>
    private static Tensor Output(Tensor flat, long[] grid)
    {
        var shape = flat.Dims();
        return flat.view([.. shape[..^1], grid[1], grid[2]]);
    }

    private static Tensor Sum(IEnumerable<Tensor> terms) => terms.Aggregate((a, b) => a.Plus(b));
}
