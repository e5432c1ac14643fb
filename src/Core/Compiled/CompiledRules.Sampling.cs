using static JacService.Core.Compiled.OnnxEmitter;

namespace JacService.Core.Compiled;

internal static partial class CompiledRules
{
    /// <summary>
    /// GridSample: the interpreter's taps (<see cref="Ops.GridSampling"/>) written as nodes, each a flat pixel index, a
    /// weight and the weight's slope in each grid coordinate, [N, P]. Forward, X's tangent is read through the taps
    /// (GatherElements) and the grid's multiplies the slopes and the pixels; back, X's cotangent is scattered to the
    /// taps' pixels (ScatterElements adding, which GridSample's opset 16 has) and the grid's is the cotangent times the
    /// pixels, summed over channels, times the slopes.
    /// </summary>
    public static readonly CompiledRule GridSample = new(
        c =>
        {
            var e = c.Emit;
            var taps = SamplingTaps(c);
            var pixels = e.Op("Reshape", c.In(0), e.Ints(0, 0, -1));
            string? t = null;
            if (c.Tangent(0) is { } tx)
            {
                var flat = e.Op("Reshape", e.Full(tx, c.Basis, c.In(0)), e.Ints(0, 0, 0, -1));
                foreach (var tap in taps) t = Plus(e, t, e.Mul(ReadTap(e, flat, tap.Index), e.Op("Unsqueeze", tap.Weight, e.Ints(1))));
            }
            if (c.Tangent(1) is { } tg && taps[0].Slopes is { } first)
            {
                var grid = e.Op("Reshape", e.Full(tg, c.Basis, c.In(1)), e.Ints(0, 0, -1, first.Length));
                var g = Enumerable.Range(0, first.Length).Select(k => e.Op("Unsqueeze", e.Select(grid, 3, k), e.Ints(2))).ToArray();
                foreach (var tap in taps)
                {
                    string? moved = null;
                    for (int k = 0; k < g.Length; k++) moved = Plus(e, moved, e.Mul(e.Op("Unsqueeze", tap.Slopes![k], e.Ints(1)), g[k]));
                    t = Plus(e, t, e.Mul(ReadTap(e, pixels, tap.Index), moved!));
                }
            }
            // Nearest sampling moves nothing with the grid.
            return [t is null ? e.Full(e.Scalar(0), c.Basis, c.Out(0)) : e.Op("Reshape", t, e.WithBasis(c.Basis, c.Out(0)))];
        },
        c =>
        {
            var result = new string?[2];
            if (c.Cotangent(0) is not { } ct) return result;
            var e = c.Emit;
            var taps = SamplingTaps(c);
            var pixels = e.Op("Reshape", c.In(0), e.Ints(0, 0, -1));
            var flat = e.Op("Reshape", e.Full(ct, c.Basis, c.Out(0)), e.Ints(0, 0, 0, -1));
            if (c.Needs(0))
            {
                var into = e.Full(e.Scalar(0), c.Basis, pixels);
                foreach (var tap in taps)
                    into = e.Op("ScatterElements", [into, e.Op("Expand", e.Op("Unsqueeze", tap.Index, e.Ints(1)), e.Op("Shape", flat)),
                        e.Mul(flat, e.Op("Unsqueeze", tap.Weight, e.Ints(1)))], Int("axis", -1), String("reduction", "add"));
                result[0] = e.Op("Reshape", into, e.WithBasis(c.Basis, c.In(0)));
            }
            if (c.Needs(1))
            {
                if (taps[0].Slopes is not { } first)
                    result[1] = e.Full(e.Scalar(0), c.Basis, c.In(1));
                else
                {
                    var slopes = new string?[first.Length];
                    foreach (var tap in taps)
                    {
                        var read = e.Op("ReduceSum", [e.Mul(flat, ReadTap(e, pixels, tap.Index)), e.Ints(2)], Int("keepdims", 0));
                        for (int k = 0; k < slopes.Length; k++) slopes[k] = Plus(e, slopes[k], e.Mul(read, tap.Slopes![k]));
                    }
                    result[1] = e.Op("Reshape", e.Op("Concat", [.. slopes.Select(d => e.Op("Unsqueeze", d!, e.Ints(-1)))], Int("axis", -1)),
                        e.WithBasis(c.Basis, c.In(1)));
                }
            }
            return result;
        });

    /// <summary>One tap of every output position, [N, P]: the pixel's flat index, its weight, and (linear, cubic) the weight's slope in each coordinate.</summary>
    private sealed record SamplingTap(string Index, string Weight, string[]? Slopes);

    private static SamplingTap[] SamplingTaps(OnnxRuleContext c)
    {
        var e = c.Emit;
        var x = e.Shape(c.In(0));
        int d = x.Length - 2;
        if (d is not (2 or 3) || (d == 3 && e.Opset < 20))
            throw new NotCompilableException($"GridSample '{c.Out(0)}' samples a rank-{x.Length} input at opset {e.Opset}; compiled for images, and volumes from opset 20");
        bool align = c.Int("align_corners", 0) != 0;
        var padding = c.String("padding_mode", "zeros");
        var points = e.Op("Reshape", c.In(1), e.Ints(0, -1, d));
        // Coordinate k runs along X's spatial axis d − 1 − k.
        var sizes = Enumerable.Range(0, d).Select(k => x[x.Length - 1 - k]).ToArray();
        var strides = Enumerable.Range(0, d).Select(k => sizes.Take(k).Aggregate(1L, (p, s) => p * s)).ToArray();
        if (c.String("mode", "") is "bicubic" or "cubic")
            return d == 2 ? CubicTaps(e, points, sizes, align, padding)
                : throw new NotCompilableException($"GridSample '{c.Out(0)}' samples a volume bicubically, which ONNX Runtime does not");
        var coordinates = Enumerable.Range(0, d).Select(k => Unnormalised(e, e.Select(points, 2, k), sizes[k], align, padding)).ToArray();
        if (c.String("mode", "bilinear") == "nearest")
        {
            var nearest = coordinates.Select(p => Whole(e, e.Op("Round", p.Pixel))).ToArray();
            return [new SamplingTap(PixelIndex(e, nearest, sizes, strides), InsideImage(e, nearest, sizes), null)];
        }
        var low = coordinates.Select(p => Whole(e, e.Op("Floor", p.Pixel))).ToArray();
        var fraction = coordinates.Select((p, k) => e.Sub(p.Pixel, low[k])).ToArray();
        var taps = new List<SamplingTap>(1 << d);
        for (int corner = 0; corner < 1 << d; corner++)
        {
            var far = Enumerable.Range(0, d).Select(k => (corner >> k & 1) == 1).ToArray();
            var at = low.Select((l, k) => far[k] ? e.Add(l, e.Scalar(1)) : l).ToArray();
            var inside = InsideImage(e, at, sizes);
            var factors = fraction.Select((f, k) => far[k] ? f : e.Sub(e.Scalar(1), f)).ToArray();
            string Product(IEnumerable<string> parts) => parts.Aggregate(inside, e.Mul);
            var slopes = Enumerable.Range(0, d)
                .Select(k => Product(factors.Where((_, j) => j != k).Append(far[k] ? coordinates[k].Slope : e.Op("Neg", coordinates[k].Slope)))).ToArray();
            taps.Add(new SamplingTap(PixelIndex(e, at, sizes, strides), Product(factors), slopes));
        }
        return [.. taps];
    }

    /// <summary>A grid coordinate in pixels and its slope, as <see cref="Ops.GridSampling"/> computes them.</summary>
    private static (string Pixel, string Slope) Unnormalised(OnnxEmitter e, string g, long size, bool align, string padding)
    {
        float scale = align ? (size - 1) / 2f : size / 2f;
        var pixel = align ? e.Mul(e.Add(g, e.Scalar(1)), e.Scalar(scale))
            : e.Mul(e.Sub(e.Mul(e.Add(g, e.Scalar(1)), e.Scalar(size)), e.Scalar(1)), e.Scalar(0.5f));
        var (padded, slope) = Padded(e, pixel, size, align, padding);
        return (padded, slope is null ? e.Op("Expand", e.Scalar(scale), e.Op("Shape", g)) : e.Mul(slope, e.Scalar(scale)));
    }

    /// <summary>A pixel position after padding's map, as <see cref="Ops.GridSampling"/> pads it, and the map's slope (null: 1).</summary>
    private static (string Pixel, string? Slope) Padded(OnnxEmitter e, string pixel, long size, bool align, string padding)
    {
        string? slope = null;
        if (padding == "reflection")
        {
            float low = align ? 0 : -0.5f, span = align ? size - 1 : size;
            if (span <= 0) return (e.Mul(pixel, e.Scalar(0)), e.Mul(pixel, e.Scalar(0)));
            var shifted = e.Sub(pixel, e.Scalar(low));
            var sign = e.Op("Where", e.Op("Less", shifted, e.Scalar(0)), e.Scalar(-1), e.Scalar(1));
            var distance = e.Op("Abs", shifted);
            var flips = e.Op("Floor", e.Mul(distance, e.Scalar(1 / span)));
            var extra = e.Sub(distance, e.Mul(flips, e.Scalar(span)));
            var odd = e.Op("Equal", e.Op("Mod", [flips, e.Scalar(2)], Int("fmod", 1)), e.Scalar(1));
            pixel = e.Add(e.Op("Where", odd, e.Sub(e.Scalar(span), extra), extra), e.Scalar(low));
            slope = e.Op("Where", odd, e.Op("Neg", sign), sign);
        }
        if (padding is "border" or "reflection")
        {
            var inside = e.Op("Cast", [e.Op("And", e.Op("Greater", pixel, e.Scalar(0)), e.Op("Less", pixel, e.Scalar(size - 1)))],
                Int("to", (long)Onnx.Proto.TensorProto.Types.DataType.Float));
            slope = slope is null ? inside : e.Mul(slope, inside);
            pixel = e.Op("Clip", pixel, e.Scalar(0), e.Scalar(size - 1));
        }
        return (pixel, slope);
    }

    /// <summary>
    /// Bicubic taps, as <see cref="Ops.GridSampling"/> takes them: the 4 × 4 pixels around the unpadded point, each padded
    /// on its own, weighted by cubic convolution along x and y.
    /// </summary>
    private static SamplingTap[] CubicTaps(OnnxEmitter e, string points, long[] sizes, bool align, string padding)
    {
        var unpadded = Enumerable.Range(0, 2).Select(k => Unnormalised(e, e.Select(points, 2, k), sizes[k], align, "zeros")).ToArray();
        var low = unpadded.Select(p => Whole(e, e.Op("Floor", p.Pixel))).ToArray();
        var (cx, cy) = (CubicWeights(e, e.Sub(unpadded[0].Pixel, low[0])), CubicWeights(e, e.Sub(unpadded[1].Pixel, low[1])));
        var (sx, sy) = (unpadded[0].Slope, unpadded[1].Slope);
        long[] strides = [1, sizes[0]];
        var taps = new List<SamplingTap>(16);
        for (int j = 0; j < 4; j++)
            for (int i = 0; i < 4; i++)
            {
                string[] at = [Padded(e, e.Add(low[0], e.Scalar(i - 1)), sizes[0], align, padding).Pixel, Padded(e, e.Add(low[1], e.Scalar(j - 1)), sizes[1], align, padding).Pixel];
                var inside = InsideImage(e, at, sizes);
                taps.Add(new SamplingTap(PixelIndex(e, at, sizes, strides), e.Mul(e.Mul(inside, cx.Value[i]), cy.Value[j]),
                    [e.Mul(e.Mul(e.Mul(inside, cx.Slope[i]), cy.Value[j]), sx), e.Mul(e.Mul(e.Mul(inside, cx.Value[i]), cy.Slope[j]), sy)]));
            }
        return [.. taps];
    }

    /// <summary>The four cubic convolution weights (A = −0.75) of a point t past the second pixel, and their slopes in t.</summary>
    private static (string[] Value, string[] Slope) CubicWeights(OnnxEmitter e, string t)
    {
        const float A = -0.75f;
        float[] k1 = [1, 0, -(A + 3), A + 2], k2 = [-4 * A, 8 * A, -5 * A, A];
        float[] Derivative(float[] c) => [.. c.Skip(1).Select((v, i) => v * (i + 1))];
        string[] at = [e.Add(t, e.Scalar(1)), t, e.Sub(e.Scalar(1), t), e.Sub(e.Scalar(2), t)];
        float[][] polynomials = [k2, k1, k1, k2];
        return ([.. at.Select((s, i) => Horner(e, s, polynomials[i]))],
            [.. at.Select((s, i) => i < 2 ? Horner(e, s, Derivative(polynomials[i])) : e.Op("Neg", Horner(e, s, Derivative(polynomials[i]))))]);
    }

    /// <summary>Σ cᵢ sⁱ by Horner's rule.</summary>
    private static string Horner(OnnxEmitter e, string s, float[] c) =>
        c.Reverse().Skip(1).Aggregate(e.Op("Expand", e.Scalar(c[^1]), e.Op("Shape", s)), (sum, coefficient) => e.Add(e.Mul(sum, s), e.Scalar(coefficient)));

    /// <summary>
    /// A pixel position with NaN read as 0: a NaN coordinate's index must still be a pixel, or GatherElements refuses it
    /// and the request fails. Its weight stays NaN.
    /// </summary>
    private static string Whole(OnnxEmitter e, string p) => e.Op("Where", e.Op("IsNaN", p), e.Scalar(0), p);

    private static string InsideImage(OnnxEmitter e, string[] at, long[] sizes)
    {
        var inside = at.Select((p, k) => e.Op("And", e.Op("GreaterOrEqual", p, e.Scalar(0)), e.Op("LessOrEqual", p, e.Scalar(sizes[k] - 1))))
            .Aggregate((a, b) => e.Op("And", a, b));
        return e.Op("Cast", [inside], Int("to", (long)Onnx.Proto.TensorProto.Types.DataType.Float));
    }

    private static string PixelIndex(OnnxEmitter e, string[] at, long[] sizes, long[] strides) =>
        at.Select((p, k) => e.Mul(e.Op("Cast", [e.Op("Clip", p, e.Scalar(0), e.Scalar(sizes[k] - 1))], Int("to", (long)Onnx.Proto.TensorProto.Types.DataType.Int64)),
            e.Ints(strides[k]))).Aggregate(e.Add);

    /// <summary>Pixels [.., N, C, H·W] read at one tap's indices [N, P]: [.., N, C, P].</summary>
    private static string ReadTap(OnnxEmitter e, string pixels, string index)
    {
        var shape = e.Op("Concat", [e.Op("Slice", e.Op("Shape", pixels), e.Ints(0), e.Ints(-1)), e.Op("Slice", e.Op("Shape", index), e.Ints(1), e.Ints(2))],
            Int("axis", 0));
        return e.Op("GatherElements", [pixels, e.Op("Expand", e.Op("Unsqueeze", index, e.Ints(1)), shape)], Int("axis", -1));
    }

    private static string Plus(OnnxEmitter e, string? sum, string term) => sum is null ? term : e.Add(sum, term);
}
