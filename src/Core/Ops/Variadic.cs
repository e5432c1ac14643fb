using static JacService.Core.Ops.Scalars;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// Sum and Mean of any number of inputs with broadcasting: linear, so each input's tangent is aligned to the output and
/// added (÷ n for Mean), and the cotangent is summed back over the axes each input broadcast along.
/// </summary>
internal static class Variadic
{
    public static Dual[] Sum(OpContext c) => Combine(c, 1);

    public static Dual[] Mean(OpContext c) => Combine(c, 1.0 / c.InputCount);

    public static Tensor?[] SumVjp(VjpContext c) => Spread(c, 1);

    public static Tensor?[] MeanVjp(VjpContext c) => Spread(c, 1.0 / c.InputCount);

    private static Dual[] Combine(OpContext c, double scale)
    {
        var inputs = Enumerable.Range(0, c.InputCount).Select(c.In).ToArray();
        var value = inputs.Skip(1).Aggregate(inputs[0].Value, (sum, x) => sum.Plus(x.Value));
        if (scale != 1) value = value * S(scale);
        if (!c.AnyTangent) return [new Dual(value, null)];
        Tensor? tangent = null;
        foreach (var x in inputs)
            if (x.Tangent is { } t) tangent = Tangents.Sum(tangent, Tangents.Align(t, value.dim()));
        if (scale != 1) tangent = tangent! * S(scale);
        return [new Dual(value, Tangents.Fit(tangent!, value.Dims()))];
    }

    private static Tensor?[] Spread(VjpContext c, double scale)
    {
        var result = new Tensor?[c.InputCount];
        if (c.Cotangent(0) is not { } ct) return result;
        if (scale != 1) ct = ct * S(scale);
        for (int i = 0; i < c.InputCount; i++)
            if (c.Needs(i)) result[i] = Tangents.Unbroadcast(ct, c.In(i).Dims());
        return result;
    }
}
