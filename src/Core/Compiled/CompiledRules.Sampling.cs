using static JacService.Core.Compiled.OnnxEmitter;

namespace JacService.Core.Compiled;

internal static partial class CompiledRules
{
    /// <summary>
    /// GridSample: the interpreter's taps (<see cref="Ops.GridSampling"/>) written as nodes, each a flat pixel index, a
    /// weight and the weight's slopes in the grid's x and y, [N, Ho·Wo]. Forward, X's tangent is read through the taps
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
            if (c.Tangent(1) is { } tg && taps[0].SlopeX is not null)
            {
                var grid = e.Op("Reshape", e.Full(tg, c.Basis, c.In(1)), e.Ints(0, 0, -1, 2));
                string Part(long axis) => e.Op("Unsqueeze", e.Select(grid, 3, axis), e.Ints(2));
                var (gx, gy) = (Part(0), Part(1));
                foreach (var tap in taps)
                {
                    var moved = e.Add(e.Mul(e.Op("Unsqueeze", tap.SlopeX!, e.Ints(1)), gx), e.Mul(e.Op("Unsqueeze", tap.SlopeY!, e.Ints(1)), gy));
                    t = Plus(e, t, e.Mul(ReadTap(e, pixels, tap.Index), moved));
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
                string? dx = null, dy = null;
                foreach (var tap in taps)
                {
                    if (tap.SlopeX is null) continue;
                    var read = e.Op("ReduceSum", [e.Mul(flat, ReadTap(e, pixels, tap.Index)), e.Ints(2)], Int("keepdims", 0));
                    dx = Plus(e, dx, e.Mul(read, tap.SlopeX));
                    dy = Plus(e, dy, e.Mul(read, tap.SlopeY!));
                }
                result[1] = dx is null ? e.Full(e.Scalar(0), c.Basis, c.In(1))
                    : e.Op("Reshape", e.Op("Concat", [e.Op("Unsqueeze", dx, e.Ints(-1)), e.Op("Unsqueeze", dy!, e.Ints(-1))], Int("axis", -1)),
                        e.WithBasis(c.Basis, c.In(1)));
            }
            return result;
        });

    /// <summary>One tap of every output position, [N, Ho·Wo]: the pixel's flat index, its weight, and (bilinear) the weight's slopes.</summary>
    private sealed record SamplingTap(string Index, string Weight, string? SlopeX, string? SlopeY);

    private static SamplingTap[] SamplingTaps(OnnxRuleContext c)
    {
        var e = c.Emit;
        var x = e.Shape(c.In(0));
        if (x.Length != 4) throw new NotCompilableException($"GridSample '{c.Out(0)}' samples a rank-{x.Length} input; compiled for images [N, C, H, W]");
        long h = x[2], w = x[3];
        bool align = c.Int("align_corners", 0) != 0;
        var padding = c.String("padding_mode", "zeros");
        var points = e.Op("Reshape", c.In(1), e.Ints(0, -1, 2));
        var (ix, sx) = Unnormalised(e, e.Select(points, 2, 0), w, align, padding);
        var (iy, sy) = Unnormalised(e, e.Select(points, 2, 1), h, align, padding);
        if (c.String("mode", "bilinear") == "nearest")
        {
            var (nx, ny) = (Whole(e, e.Op("Round", ix)), Whole(e, e.Op("Round", iy)));
            return [new SamplingTap(PixelIndex(e, nx, ny, w, h), InsideImage(e, nx, ny, w, h), null, null)];
        }
        var (x0, y0) = (Whole(e, e.Op("Floor", ix)), Whole(e, e.Op("Floor", iy)));
        var (fx, fy) = (e.Sub(ix, x0), e.Sub(iy, y0));
        var taps = new List<SamplingTap>(4);
        foreach (var (dy, dx) in new[] { (0, 0), (0, 1), (1, 0), (1, 1) })
        {
            var (px, py) = (dx == 0 ? x0 : e.Add(x0, e.Scalar(1)), dy == 0 ? y0 : e.Add(y0, e.Scalar(1)));
            var inside = InsideImage(e, px, py, w, h);
            var (wx, wy) = (dx == 1 ? fx : e.Sub(e.Scalar(1), fx), dy == 1 ? fy : e.Sub(e.Scalar(1), fy));
            var slopeX = e.Mul(e.Mul(wy, inside), dx == 1 ? sx : e.Op("Neg", sx));
            var slopeY = e.Mul(e.Mul(wx, inside), dy == 1 ? sy : e.Op("Neg", sy));
            taps.Add(new SamplingTap(PixelIndex(e, px, py, w, h), e.Mul(e.Mul(wx, wy), inside), slopeX, slopeY));
        }
        return [.. taps];
    }

    /// <summary>A grid coordinate in pixels and its slope, as <see cref="Ops.GridSampling"/> computes them.</summary>
    private static (string Pixel, string Slope) Unnormalised(OnnxEmitter e, string g, long size, bool align, string padding)
    {
        float scale = align ? (size - 1) / 2f : size / 2f;
        var pixel = align ? e.Mul(e.Add(g, e.Scalar(1)), e.Scalar(scale))
            : e.Mul(e.Sub(e.Mul(e.Add(g, e.Scalar(1)), e.Scalar(size)), e.Scalar(1)), e.Scalar(0.5f));
        var slope = e.Op("Expand", e.Scalar(scale), e.Op("Shape", g));
        if (padding == "reflection")
        {
            float low = align ? 0 : -0.5f, span = align ? size - 1 : size;
            if (span <= 0) return (e.Mul(g, e.Scalar(0)), e.Mul(g, e.Scalar(0)));
            var shifted = e.Sub(pixel, e.Scalar(low));
            var sign = e.Op("Where", e.Op("Less", shifted, e.Scalar(0)), e.Scalar(-1), e.Scalar(1));
            var distance = e.Op("Abs", shifted);
            var flips = e.Op("Floor", e.Mul(distance, e.Scalar(1 / span)));
            var extra = e.Sub(distance, e.Mul(flips, e.Scalar(span)));
            var odd = e.Op("Equal", e.Op("Mod", [flips, e.Scalar(2)], Int("fmod", 1)), e.Scalar(1));
            pixel = e.Add(e.Op("Where", odd, e.Sub(e.Scalar(span), extra), extra), e.Scalar(low));
            slope = e.Mul(slope, e.Op("Where", odd, e.Op("Neg", sign), sign));
        }
        if (padding is "border" or "reflection")
        {
            var inside = e.Op("And", e.Op("Greater", pixel, e.Scalar(0)), e.Op("Less", pixel, e.Scalar(size - 1)));
            slope = e.Mul(slope, e.Op("Cast", [inside], Int("to", (long)Onnx.Proto.TensorProto.Types.DataType.Float)));
            pixel = e.Op("Clip", pixel, e.Scalar(0), e.Scalar(size - 1));
        }
        return (pixel, slope);
    }

    /// <summary>
    /// A pixel position with NaN read as 0: a NaN coordinate's index must still be a pixel, or GatherElements refuses it
    /// and the request fails. Its weight stays NaN.
    /// </summary>
    private static string Whole(OnnxEmitter e, string p) => e.Op("Where", e.Op("IsNaN", p), e.Scalar(0), p);

    private static string InsideImage(OnnxEmitter e, string px, string py, long w, long h)
    {
        string Within(string p, long size) => e.Op("And", e.Op("GreaterOrEqual", p, e.Scalar(0)), e.Op("LessOrEqual", p, e.Scalar(size - 1)));
        return e.Op("Cast", [e.Op("And", Within(px, w), Within(py, h))], Int("to", (long)Onnx.Proto.TensorProto.Types.DataType.Float));
    }

    private static string PixelIndex(OnnxEmitter e, string px, string py, long w, long h)
    {
        string Clamped(string p, long size) =>
            e.Op("Cast", [e.Op("Clip", p, e.Scalar(0), e.Scalar(size - 1))], Int("to", (long)Onnx.Proto.TensorProto.Types.DataType.Int64));
        return e.Add(e.Mul(Clamped(py, h), e.Ints(w)), Clamped(px, w));
    }

    /// <summary>Pixels [.., N, C, H·W] read at one tap's indices [N, P]: [.., N, C, P].</summary>
    private static string ReadTap(OnnxEmitter e, string pixels, string index)
    {
        var shape = e.Op("Concat", [e.Op("Slice", e.Op("Shape", pixels), e.Ints(0), e.Ints(-1)), e.Op("Slice", e.Op("Shape", index), e.Ints(1), e.Ints(2))],
            Int("axis", 0));
        return e.Op("GatherElements", [pixels, e.Op("Expand", e.Op("Unsqueeze", index, e.Ints(1)), shape)], Int("axis", -1));
    }

    private static string Plus(OnnxEmitter e, string? sum, string term) => sum is null ? term : e.Add(sum, term);
}
