using JacService.Core.Onnx;
using static JacService.Core.Ops.Scalars;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// GridSample on images and volumes (X [N, C, ..S] with S two or three axes, grid [N, ..O, |S|] of coordinates in [−1, 1],
/// the first along S's last axis): each output position reads X at its grid point, from the 2^|S| pixels around it
/// (bilinear, trilinear), the 16 around it (bicubic, images only) or the nearest one. The output is a sum over taps of a
/// weight times a pixel, so everything follows from each tap's flat index and weight and the weight's slopes in each
/// coordinate: linear in X (the same taps carry X's tangent, and scatter its cotangent back), and in the grid the slopes
/// times the pixels. The weights are products of one factor per coordinate: linear between pixels, so that the grid's
/// only second derivatives are mixed ones (a pair of coordinates' twist), or cubic, which curve along each coordinate
/// too; X and the grid pair through the slopes.
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
        if (!Paddings.Contains(a.String("padding_mode", "zeros"))) return $"padding_mode '{a.String("padding_mode", "")}' is not one of {string.Join(", ", Paddings)}";
        if (a.Int("align_corners", 0) is not (0 or 1)) return $"align_corners {a.Int("align_corners", 0)} is not 0 or 1";
        return null;
    }

    /// <summary>The mode under opset 16's name (20 renamed bilinear linear, and bicubic cubic).</summary>
    private static string Mode(NodeAttributes a) => a.String("mode", "bilinear") switch { "linear" => "bilinear", "cubic" => "bicubic", var m => m };

    public static Dual[] Forward(OpContext c)
    {
        var (x, grid) = (c.In(0), c.In(1));
        var taps = Taps(c.Attr, c.Opset, x.Shape, grid.Value);
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
            var g = Coordinates(Tangents.Fit(tg, grid.Shape));
            tangent = Tangents.Sum(tangent, Sum(taps.Select((t, i) => values[i] * Along(t, g))));
        }
        return [new Dual(Output(y, grid.Shape), tangent is null ? null : Output(tangent, grid.Shape))];
    }

    public static Tensor?[] Vjp(VjpContext c)
    {
        var result = new Tensor?[2];
        if (c.Cotangent(0) is not { } ct) return result;
        var (x, grid) = (c.In(0), c.In(1));
        var taps = Taps(c.Attr, c.Opset, x.Dims(), grid);
        // [K, N, C, P]
        var flat = Tangents.Fit(ct, c.Out(0).Dims()).flatten(3);
        var pixels = x.flatten(2);
        if (c.Needs(0))
        {
            var into = zeros([flat.size(0), .. pixels.Dims()], flat.dtype, flat.device);
            foreach (var t in taps) into.scatter_add_(3, t.Index.unsqueeze(1).expand_as(flat), flat * t.Weight.unsqueeze(1));
            result[0] = into.view([flat.size(0), .. x.Dims()]);
        }
        if (c.Needs(1))
        {
            var slopes = new Tensor?[grid.size(-1)];
            foreach (var t in taps)
            {
                var read = (flat * Read(pixels, t.Index)).sum(2);
                for (int k = 0; k < slopes.Length; k++) slopes[k] = Tangents.Sum(slopes[k], read * t.Slopes[k]);
            }
            result[1] = stack(slopes!, -1).view([flat.size(0), .. grid.Dims()]);
        }
        return result;
    }

    /// <summary>
    /// The grid's second-order terms: each pair of its coordinates by its twist, each coordinate by its own curvature
    /// (cubic weights), and X's directions with the grid's through the slopes.
    /// </summary>
    public static Tensor?[] Curvature(CurvatureContext c)
    {
        if (c.G(1) is not { } tg) return [];
        var (x, grid) = (c.In(0), c.In(1));
        var taps = Taps(c.Attr, c.Primal.Opset, x.Dims(), grid);
        var g = Coordinates(Tangents.Fit(tg, grid.Dims()));
        var pixels = x.flatten(2);
        var values = taps.Select(t => Read(pixels, t.Index)).ToArray();
        Tensor? q = null;
        int pair = 0;
        for (int a = 0; a < g.Length; a++)
            for (int b = a + 1; b < g.Length; b++, pair++)
            {
                int ab = pair;
                q = Tangents.Sum(q, c.SymmetricPairs(g[a], g[b]) * Sum(taps.Select((t, i) => values[i] * t.Twists[ab].unsqueeze(1))));
            }
        // Cubic weights curve along each coordinate too.
        for (int k = 0; k < g.Length && taps[0].Curvatures is not null; k++)
        {
            int along = k;
            q = Tangents.Sum(q, c.Pairs(g[k], g[k]) * Sum(taps.Select((t, i) => values[i] * t.Curvatures![along].unsqueeze(1))));
        }
        if (c.G(0) is { } txAll)
        {
            var tx = Tangents.Fit(txAll, x.Dims()).flatten(3);
            // b(u, v): X's direction u read through the slopes along the grid's direction v.
            Tensor Bilinear(Tensor u, Tensor v) => Sum(taps.Select(t => Read(u, t.Index) * Along(t, Coordinates(v))));
            q = Tangents.Sum(q, c.SymmetricPairs(tx, Tangents.Fit(tg, grid.Dims()), Bilinear));
        }
        return [Output(q!, grid.Dims())];
    }

    /// <summary>The output's elements, and the taps' reads of them.</summary>
    public static long Allocates(OpContext c)
    {
        var (x, grid) = (c.In(0).Shape, c.In(1).Shape);
        if (x.Length is not (4 or 5) || grid.Length != x.Length) return 0;
        long taps = Mode(c.Attr) == "bicubic" ? 16 : 1L << (x.Length - 2);
        return Sizes.Times(taps + 2, Sizes.Times(Sizes.Times(x[0], x[1]), Sizes.Elements(grid[1..^1])));
    }

    /// <summary>
    /// One tap of every output position, [N, P] each: the pixel's flat index (clamped in range), its weight (0 where the
    /// pixel lies outside and padding is zeros), the weight's slope in each grid coordinate (the coordinate's
    /// unnormalising scale and padding's reflection or clamp applied), its mixed second derivative in each pair of
    /// coordinates (0, 1), (0, 2), (1, 2), and for cubic weights the second derivative along each coordinate.
    /// </summary>
    private sealed record Tap(Tensor Index, Tensor Weight, Tensor[] Slopes, Tensor[] Twists, Tensor[]? Curvatures = null);

    private static Tap[] Taps(NodeAttributes a, int opset, long[] x, Tensor grid)
    {
        int d = x.Length - 2;
        Shapes.Require(d is 2 or 3 && grid.dim() == x.Length && grid.size(-1) == d && grid.size(0) == x[0],
            () => $"GridSample samples X [N, C, H, W] or [N, C, D, H, W] at a grid [N, ..out, 2 or 3] of as many coordinates as X has " +
                  $"spatial axes, not X {Shapes.Text(x)} at {Shapes.Text(grid.Dims())}");
        Shapes.Require(d == 2 || opset >= 20, () => $"GridSample samples volumes from opset 20 (the model's is {opset}); X is {Shapes.Text(x)}");
        bool align = a.Int("align_corners", 0) != 0;
        var padding = a.String("padding_mode", "zeros");
        var points = grid.flatten(1, -2);
        // Coordinate k runs along X's spatial axis d − 1 − k: x along the last, y the one before, z the first.
        var sizes = Enumerable.Range(0, d).Select(k => x[x.Length - 1 - k]).ToArray();
        var strides = Enumerable.Range(0, d).Select(k => sizes.Take(k).Aggregate(1L, (p, s) => p * s)).ToArray();
        var coordinates = Enumerable.Range(0, d).Select(k => Unnormalise(points.select(-1, k), sizes[k], align, padding)).ToArray();
        if (Mode(a) == "bicubic") return Cubic(points, x, sizes, align, padding);
        if (Mode(a) == "nearest")
        {
            // Half-way points go to the even pixel, as torch's and ONNX Runtime's nearbyint round them.
            var nearest = coordinates.Select(p => Whole(p.Pixel.round())).ToArray();
            var zero = zeros_like(nearest[0]);
            return [new Tap(Index(nearest, sizes, strides), Inside(nearest, sizes).to_type(zero.dtype), [.. nearest.Select(_ => zero)],
                [.. Enumerable.Repeat(zero, d * (d - 1) / 2)])];
        }
        var low = coordinates.Select(p => Whole(p.Pixel.floor())).ToArray();
        var fraction = coordinates.Select((p, k) => p.Pixel.Minus(low[k])).ToArray();
        var taps = new List<Tap>(1 << d);
        for (int corner = 0; corner < 1 << d; corner++)
        {
            // Bit k of the corner: the far pixel (weight f, slope +1) or the near one (1 − f, slope −1) along coordinate k.
            var far = Enumerable.Range(0, d).Select(k => (corner >> k & 1) == 1).ToArray();
            var at = low.Select((l, k) => far[k] ? l.Plus(1) : l).ToArray();
            var inside = Inside(at, sizes).to_type(low[0].dtype);
            var factors = fraction.Select((f, k) => far[k] ? f : f.From(1)).ToArray();
            var slopes = Enumerable.Range(0, d).Select(k => coordinates[k].Slope * S(far[k] ? 1 : -1)).ToArray();
            Tensor Product(IEnumerable<Tensor> parts) => parts.Aggregate(inside, (p, f) => p * f);
            var twists = new List<Tensor>();
            for (int i = 0; i < d; i++)
                for (int j = i + 1; j < d; j++)
                    twists.Add(Product(factors.Where((_, k) => k != i && k != j).Append(slopes[i]).Append(slopes[j])));
            taps.Add(new Tap(Index(at, sizes, strides), Product(factors),
                [.. Enumerable.Range(0, d).Select(k => Product(factors.Where((_, j) => j != k).Append(slopes[k])))], [.. twists]));
        }
        return [.. taps];
    }

    /// <summary>
    /// Bicubic sampling of an image: the 4 × 4 pixels around the unpadded point, each padded on its own (as libtorch and
    /// ONNX Runtime do), weighted by cubic convolution (A = −0.75) along x and y. The weights are cubic in the point, so
    /// the taps also carry each coordinate's second derivative.
    /// </summary>
    private static Tap[] Cubic(Tensor points, long[] x, long[] sizes, bool align, string padding)
    {
        Shapes.Require(x.Length == 4, () => $"GridSample samples volumes linearly or by the nearest pixel; cubic sampling needs an image, not X {Shapes.Text(x)}");
        var unpadded = Enumerable.Range(0, 2).Select(k => Unnormalise(points.select(-1, k), sizes[k], align, "zeros")).ToArray();
        var low = unpadded.Select(p => Whole(p.Pixel.floor())).ToArray();
        var coefficients = unpadded.Select((p, k) => CubicCoefficients(p.Pixel.Minus(low[k]))).ToArray();
        var (sx, sy) = (unpadded[0].Slope, unpadded[1].Slope);
        var strides = new[] { 1L, sizes[0] };
        var taps = new List<Tap>(16);
        for (int j = 0; j < 4; j++)
            for (int i = 0; i < 4; i++)
            {
                Tensor[] at = [Pad(low[0].Plus(i - 1), sizes[0], align, padding).Pixel, Pad(low[1].Plus(j - 1), sizes[1], align, padding).Pixel];
                var inside = Inside(at, sizes).to_type(low[0].dtype);
                var (cx, cy) = (coefficients[0], coefficients[1]);
                taps.Add(new Tap(Index(at, sizes, strides), inside * cx.Value[i] * cy.Value[j],
                    [inside * cx.Slope[i] * cy.Value[j] * sx, inside * cx.Value[i] * cy.Slope[j] * sy],
                    [inside * cx.Slope[i] * cy.Slope[j] * sx * sy],
                    [inside * cx.Curvature[i] * cy.Value[j] * sx * sx, inside * cx.Value[i] * cy.Curvature[j] * sy * sy]));
            }
        return [.. taps];
    }

    /// <summary>
    /// The four cubic convolution weights of the pixels at −1, 0, 1, 2 from a point t ∈ [0, 1) past the second, and their
    /// first and second derivatives in t: k₂(t + 1), k₁(t), k₁(1 − t), k₂(2 − t), with k₁(s) = (A + 2)s³ − (A + 3)s² + 1
    /// and k₂(s) = As³ − 5As² + 8As − 4A.
    /// </summary>
    private static (Tensor[] Value, Tensor[] Slope, Tensor[] Curvature) CubicCoefficients(Tensor t)
    {
        const double A = -0.75;
        double[] k1 = [1, 0, -(A + 3), A + 2], k2 = [-4 * A, 8 * A, -5 * A, A];
        double[] Derivative(double[] c) => [.. c.Skip(1).Select((v, i) => v * (i + 1))];
        Tensor[] at = [t.Plus(1), t, t.From(1), t.From(2)];
        double[][] polynomials = [k2, k1, k1, k2];
        // The last two run backwards in t: their odd derivatives change sign.
        double[] sign = [1, 1, -1, -1];
        return ([.. at.Select((s, i) => Polynomial(s, polynomials[i]))],
            [.. at.Select((s, i) => Polynomial(s, Derivative(polynomials[i])) * S(sign[i]))],
            [.. at.Select((s, i) => Polynomial(s, Derivative(Derivative(polynomials[i]))))]);
    }

    /// <summary>Σ cᵢ sⁱ by Horner's rule.</summary>
    private static Tensor Polynomial(Tensor s, double[] c) =>
        c.Reverse().Skip(1).Aggregate(full_like(s, S(c[^1])), (sum, coefficient) => (sum * s).Plus(coefficient));

    /// <summary>
    /// A grid coordinate in pixels and d(pixel)/d(grid): the unnormalising scale times the slope of the padding's map,
    /// as libtorch computes its gradient: ±1 where reflection folds, 0 where border or reflection clamps at an end.
    /// </summary>
    private static (Tensor Pixel, Tensor Slope) Unnormalise(Tensor g, long size, bool align, string padding)
    {
        double scale = align ? (size - 1) / 2.0 : size / 2.0;
        // align: (g + 1)(size − 1)/2; else ((g + 1)·size − 1)/2.
        var pixel = align ? g.Plus(1) * S(scale) : (g.Plus(1) * S(size)).Minus(1) * S(0.5);
        var (padded, slope) = Pad(pixel, size, align, padding);
        return (padded, slope * S(scale));
    }

    /// <summary>A pixel position after padding's map (reflection folds it, border and reflection clamp it) and the map's slope.</summary>
    private static (Tensor Pixel, Tensor Slope) Pad(Tensor pixel, long size, bool align, string padding)
    {
        var slope = ones_like(pixel);
        if (padding == "reflection")
        {
            // Folded back and forth over [low, high]: the corners' centres (align) or their edges.
            double low = align ? 0 : -0.5, span = align ? size - 1 : size;
            if (span <= 0) return (zeros_like(pixel), zeros_like(pixel));
            var shifted = pixel.Minus(low);
            var sign = where(shifted.lt(S(0)), full_like(shifted, S(-1)), full_like(shifted, S(1)));
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
            slope = slope * inside.to_type(slope.dtype);
            pixel = pixel.clamp(S(0), S(size - 1));
        }
        return (pixel, slope);
    }

    /// <summary>A pixel position with NaN (a NaN coordinate) read as 0, so that its index is a pixel: its weight stays NaN.</summary>
    private static Tensor Whole(Tensor p) => where(p.isnan(), zeros_like(p), p);

    private static Tensor Inside(Tensor[] at, long[] sizes) =>
        at.Select((p, k) => p.ge(S(0)).logical_and(p.le(S(sizes[k] - 1)))).Aggregate((a, b) => a.logical_and(b));

    // In int64: a float32 index would be wrong past 2^24 pixels.
    private static Tensor Index(Tensor[] at, long[] sizes, long[] strides) =>
        at.Select((p, k) => p.clamp(S(0), S(sizes[k] - 1)).to_type(ScalarType.Int64) * L(strides[k])).Aggregate((a, b) => a.Plus(b));

    /// <summary>Pixels [.., N, C, H·W] read at one tap's indices [N, P]: [.., N, C, P].</summary>
    private static Tensor Read(Tensor pixels, Tensor index)
    {
        var shape = pixels.Dims();
        shape[^1] = index.size(1);
        var at = index.unsqueeze(1);
        for (long lead = pixels.dim() - 3; lead > 0; lead--) at = at.unsqueeze(0);
        return pixels.gather(-1, at.expand(shape));
    }

    /// <summary>A direction of the grid [.., N, ..O, d] as its d coordinates [.., N, 1, P], to scale the taps' slopes.</summary>
    private static Tensor[] Coordinates(Tensor direction)
    {
        // The output positions are the d axes before the coordinates.
        var flat = direction.flatten(-(int)direction.size(-1) - 1, -2);
        return [.. Enumerable.Range(0, (int)flat.size(-1)).Select(k => flat.select(-1, k).unsqueeze(-2))];
    }

    /// <summary>A tap's weight moved along the grid's direction: Σ over coordinates of its slope times the direction's.</summary>
    private static Tensor Along(Tap t, Tensor[] direction) =>
        Sum(direction.Select((v, k) => t.Slopes[k].unsqueeze(1) * v));

    /// <summary>[.., N, C, P] back to [.., N, C, ..O].</summary>
    private static Tensor Output(Tensor flat, long[] grid)
    {
        var shape = flat.Dims();
        return flat.view([.. shape[..^1], .. grid[1..^1]]);
    }

    private static Tensor Sum(IEnumerable<Tensor> terms) => terms.Aggregate((a, b) => a.Plus(b));
}
