using System.Collections.Concurrent;
using JacService.Core.Onnx;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// Resize (nearest, linear and cubic; every coordinate mode but tf_crop_and_resize; antialias, axes and the aspect
/// ratio policies of opset 18): separable and linear in its data, so each resized axis is a fixed map, a
/// <see cref="ResampleTable"/>, that the tangent takes too and the cotangent takes transposed. The tables follow
/// ONNX's reference implementation, and where it and ONNX Runtime part (a single output position under align_corners
/// and pytorch_half_pixel), ONNX Runtime and PyTorch.
/// </summary>
internal static class Resampling
{
    private static readonly string[] Modes = ["nearest", "linear", "cubic"];
    private static readonly string[] NearestModes = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"];
    private static readonly string[] Policies = ["stretch", "not_larger", "not_smaller"];

    private static string[] CoordinateModes(int opset) =>
        opset >= 19 ? ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"]
            : ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"];

    public static string? Validate(GraphNode node, int opset)
    {
        var a = node.Attributes;
        string mode = a.String("mode", "nearest"), coordinates = a.String("coordinate_transformation_mode", "half_pixel");
        if (!Modes.Contains(mode)) return $"mode '{mode}' is not one of {string.Join(", ", Modes)}";
        if (coordinates == "tf_crop_and_resize")
            return "coordinate_transformation_mode 'tf_crop_and_resize' is not supported; export a plain resize and crop with Slice";
        if (!CoordinateModes(opset).Contains(coordinates))
            return $"coordinate_transformation_mode '{coordinates}' is not one of {string.Join(", ", CoordinateModes(opset))} at opset {opset}";
        if (!NearestModes.Contains(a.String("nearest_mode", "round_prefer_floor")))
            return $"nearest_mode '{a.String("nearest_mode", "")}' is not one of {string.Join(", ", NearestModes)}";
        foreach (var name in new[] { "antialias", "axes", "keep_aspect_ratio_policy" })
            if (opset < 18 && a.Has(name)) return $"the attribute {name} arrived in opset 18 (the model's is {opset})";
        if (!Policies.Contains(a.String("keep_aspect_ratio_policy", "stretch")))
            return $"keep_aspect_ratio_policy '{a.String("keep_aspect_ratio_policy", "")}' is not one of {string.Join(", ", Policies)}";
        // ONNX Runtime leaves the axes of a policy counted from the back unresized, where the spec resizes them.
        if (a.String("keep_aspect_ratio_policy", "stretch") != "stretch" && a.Ints("axes") is { } axes && axes.Any(x => x < 0))
            return $"keep_aspect_ratio_policy with axes counted from the back ({Shapes.Text(axes)}) is not supported: ONNX Runtime leaves them unresized; name the axes from the front";
        if (a.Int("antialias", 0) is not (0 or 1)) return $"antialias {a.Int("antialias", 0)} is not 0 or 1";
        if (node.Inputs.Length is < 1 or > 4) return $"Resize takes 1 to 4 inputs (X, roi, scales, sizes), not {node.Inputs.Length}";
        return null;
    }

    public static Dual[] Resize(OpContext c)
    {
        var x = c.In(0);
        var tables = Tables(c, x.Shape);
        var y = x.Value;
        var t = x.Tangent;
        foreach (var (axis, table) in tables)
        {
            y = table.Apply(y, axis);
            if (t is not null) t = table.Apply(t, axis + 1);
        }
        return [new Dual(tables.Length == 0 ? y.alias() : y, t is not null && tables.Length == 0 ? t.alias() : t)];
    }

    public static Tensor?[] ResizeVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return result;
        var tables = Tables(c.Primal(), c.In(0).Dims());
        foreach (var (axis, table) in tables) ct = table.Transposed.Apply(ct, axis + 1);
        result[0] = ct;
        return result;
    }

    /// <summary>The elements of the widest value it makes, and the entries of its tables (each axis's and its transpose).</summary>
    public static long Allocates(OpContext c)
    {
        var shape = c.In(0).Shape;
        var attributes = Attributes.Of(c.Attr);
        var current = (long[])shape.Clone();
        long most = 0, entries = 0;
        foreach (var (axis, output, scale) in Layout(attributes, shape, ScalesOf(c), SizesOf(c)))
        {
            current[axis] = output;
            most = Math.Max(most, Sizes.Elements(current));
            entries = Sizes.Plus(entries, Sizes.Times(Sizes.Times(TapsOf(attributes, scale), output), 2));
        }
        return Sizes.Plus(most, entries);
    }

    /// <summary>An antialiasing filter wider than this, in input positions per output position, is refused.</summary>
    public const int MaxTaps = 1024;

    /// <summary>
    /// The input positions each output position reads: 1 or 2 (nearest), 2 (linear), 4 (cubic), or with antialias
    /// the filter's support stretched by 1/scale when downscaling; refused past <see cref="MaxTaps"/>.
    /// </summary>
    private static int TapsOf(Attributes a, double scale)
    {
        if (!a.Antialias || a.Mode == "nearest") return a.Mode == "cubic" ? 4 : 2;
        double reach = a.Mode == "cubic" ? 2 : 1;
        double taps = 2 * Math.Ceiling(reach / Math.Min(scale, 1));
        Shapes.Require(taps <= MaxTaps, () => $"Resize's antialiasing filter at a scale of {scale:G4} reads {taps:0} input positions per output; " +
            $"at most {MaxTaps} are supported (a scale of at least {reach / (MaxTaps / 2):0.####})");
        return (int)taps;
    }

    /// <summary>The tables of the axes a Resize changes, in axis order.</summary>
    private static (long Axis, ResampleTable Table)[] Tables(OpContext c, long[] shape)
    {
        var attributes = Attributes.Of(c.Attr);
        return Layout(attributes, shape, ScalesOf(c), SizesOf(c))
            .Select(a => (a.Axis, TableOf(attributes, shape[a.Axis], a.Output, a.Scale))).ToArray();
    }

    private static double[]? ScalesOf(OpContext c) =>
        c.Optional(2) is { } s && s.Value.numel() > 0 ? HostValues.Reals(s.Value) : null;

    private static long[]? SizesOf(OpContext c) =>
        c.Optional(3) is { } s && s.Value.numel() > 0 ? HostValues.Ints(s.Value) : null;

    /// <summary>What a Resize's attributes say about each axis it resizes.</summary>
    internal sealed record Attributes(string Mode, string Coordinates, string Nearest, double CubicA, bool ExcludeOutside, bool Antialias,
        long[]? Axes, string Policy)
    {
        public static Attributes Of(NodeAttributes a) => new(a.String("mode", "nearest"), a.String("coordinate_transformation_mode", "half_pixel"),
            a.String("nearest_mode", "round_prefer_floor"), a.Float("cubic_coeff_a", -0.75f), a.Int("exclude_outside", 0) != 0,
            a.Int("antialias", 0) != 0, a.Ints("axes"), a.String("keep_aspect_ratio_policy", "stretch"));
    }

    /// <summary>
    /// Each axis the Resize changes, with its output length and scale, from its scales or its sizes (one of them, a value
    /// per axis it names). An axis whose length and scale stay 1:1 maps onto itself in every mode and is left out.
    /// </summary>
    internal static List<(long Axis, long Output, double Scale)> Layout(Attributes a, long[] shape, double[]? scales, long[]? sizes)
    {
        int rank = shape.Length;
        var axes = a.Axes?.Select(axis => Shapes.Axis(axis, rank, "Resize axis")).ToArray() ?? Enumerable.Range(0, rank).Select(i => (long)i).ToArray();
        Shapes.Require(axes.Distinct().Count() == axes.Length, () => $"Resize axes {Shapes.Text(a.Axes!)} repeat an axis");
        Shapes.Require((scales is null) != (sizes is null), () => scales is null
            ? "Resize takes scales or sizes, and has neither" : "Resize takes scales or sizes, not both");
        int given = scales?.Length ?? sizes!.Length;
        Shapes.Require(given == axes.Length,
            () => $"Resize {(scales is null ? "sizes" : "scales")} give {given} values for {axes.Length} axes of {Shapes.Text(shape)}");
        var outputs = new long[axes.Length];
        var factors = new double[axes.Length];
        if (scales is not null)
        {
            for (int i = 0; i < axes.Length; i++)
            {
                double s = scales[i];
                Shapes.Require(s > 0 && double.IsFinite(s), () => $"Resize scale {s} for axis {axes[i]} is not a positive number");
                factors[i] = s;
                outputs[i] = Floor(shape[axes[i]] * s);
            }
        }
        else
        {
            for (int i = 0; i < axes.Length; i++)
            {
                long size = sizes![i];
                Shapes.Require(size >= 0, () => $"Resize size {size} for axis {axes[i]} is negative");
                Shapes.Require(shape[axes[i]] > 0 || size == 0, () => $"Resize cannot fill axis {axes[i]} of length 0 to {size}");
                outputs[i] = size;
                factors[i] = shape[axes[i]] == 0 ? 1 : (double)size / shape[axes[i]];
            }
            if (a.Policy != "stretch" && axes.Length > 0)
            {
                double kept = a.Policy == "not_larger" ? factors.Min() : factors.Max();
                for (int i = 0; i < axes.Length; i++)
                {
                    factors[i] = kept;
                    outputs[i] = Floor(kept * shape[axes[i]] + 0.5);
                }
            }
        }
        var result = new List<(long, long, double)>();
        for (int i = 0; i < axes.Length; i++)
            if (outputs[i] != shape[axes[i]] || factors[i] != 1) result.Add((axes[i], outputs[i], factors[i]));
        return result.OrderBy(r => r.Item1).ToList();
    }

    // Saturates instead of wrapping, so a hostile scale meets the planner's element limit as a huge count.
    private static long Floor(double v) => v >= long.MaxValue / 2 ? long.MaxValue / 2 : (long)Math.Floor(v);

    // Tables by everything they depend on: the interpreter asks for them on every call.
    private static readonly ConcurrentDictionary<(Attributes Mode, long Input, long Output, double Scale), ResampleTable> Cached = new();
    private const int MaxCached = 4096;

    internal static ResampleTable TableOf(Attributes a, long input, long output, double scale)
    {
        var key = (a with { Axes = null, Policy = "" }, input, output, scale);
        if (Cached.TryGetValue(key, out var table)) return table;
        if (Cached.Count >= MaxCached) Cached.Clear();
        return Cached.GetOrAdd(key, k => Build(k.Mode, k.Input, k.Output, k.Scale));
    }

    /// <summary>
    /// Each output position's source coordinate, its taps (the positions nearest it, the lower on a tie, edge positions
    /// repeated past either end) and their coefficients, as ONNX's reference implementation computes them.
    /// </summary>
    private static ResampleTable Build(Attributes a, long input, long output, double scale) =>
        ResampleTable.FromTaps(input, output, TapsOf(a, scale), (o, index, weight) =>
        {
            double x = Source(a.Coordinates, o, input, output, scale);
            double floor = Math.Floor(x), fraction = x - floor;
            var coefficients = Coefficients(a, fraction == 0 ? 1 : fraction, scale);
            int n = coefficients.Length;
            long start = (long)floor + (n % 2 == 0
                ? -(n / 2) + (fraction == 0 ? 0 : 1)
                : -((n - 1) / 2) + (fraction <= 0.5 ? 0 : 1));
            if (a.ExcludeOutside)
            {
                for (int j = 0; j < n; j++)
                    if (start + j < 0 || start + j >= input) coefficients[j] = 0;
                double total = coefficients.Sum();
                if (total != 0) for (int j = 0; j < n; j++) coefficients[j] /= total;
            }
            for (int j = 0; j < n; j++)
            {
                index[j] = Math.Clamp(start + j, 0, input - 1);
                weight[j] = coefficients[j];
            }
        });

    /// <summary>Where output position <paramref name="o"/> falls on the input axis.</summary>
    private static double Source(string coordinates, long o, long input, long output, double scale) => coordinates switch
    {
        "align_corners" => output == 1 ? 0 : o * (double)(input - 1) / (output - 1),
        "asymmetric" => o / scale,
        "pytorch_half_pixel" => output == 1 ? 0 : (o + 0.5) / scale - 0.5,
        "half_pixel_symmetric" => input / 2.0 * (1 - output / (scale * input)) + (o + 0.5) / scale - 0.5,
        _ => (o + 0.5) / scale - 0.5,
    };

    /// <summary>The coefficients of the taps around a source coordinate <paramref name="ratio"/> ∈ (0, 1] past the lower tap.</summary>
    private static double[] Coefficients(Attributes a, double ratio, double scale)
    {
        switch (a.Mode)
        {
            case "nearest":
                bool upper = ratio == 1 || a.Nearest switch
                {
                    "round_prefer_floor" => ratio > 0.5,
                    "round_prefer_ceil" => ratio >= 0.5,
                    "floor" => false,
                    _ => true,
                };
                return upper ? [0, 1] : [1, 0];
            case "linear" when !a.Antialias:
                return [1 - ratio, ratio];
            case "linear":
                return Normalised(Footprint(-1, scale).Select(i => Math.Clamp(1 - Math.Abs((i - ratio) * Math.Min(scale, 1)), 0, 1)));
            case "cubic" when !a.Antialias:
                return [Cubic(a.CubicA, ratio + 1), Cubic(a.CubicA, ratio), Cubic(a.CubicA, 1 - ratio), Cubic(a.CubicA, 2 - ratio)];
            default:
                return Normalised(Footprint(-2, scale).Select(i => Cubic(a.CubicA, (i - ratio) * Math.Min(scale, 1))));
        }
    }

    /// <summary>
    /// The tap offsets of an antialiasing filter of support <paramref name="reach"/> stretched by 1/scale when
    /// downscaling: from ⌊reach/scale⌋ + 1 to one short of its mirror past 1.
    /// </summary>
    private static IEnumerable<int> Footprint(int reach, double scale)
    {
        int start = (int)Math.Floor(reach / Math.Min(scale, 1)) + 1;
        return Enumerable.Range(start, 2 - 2 * start);
    }

    private static double[] Normalised(IEnumerable<double> coefficients)
    {
        var c = coefficients.ToArray();
        double total = c.Sum();
        return c.Select(v => v / total).ToArray();
    }

    /// <summary>Keys' cubic convolution kernel with coefficient <paramref name="a"/> (−0.75 as PyTorch, −0.5 as TensorFlow).</summary>
    private static double Cubic(double a, double x)
    {
        x = Math.Abs(x);
        if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
        if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
        return 0;
    }
}
