using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// Where, Max and Min: each output element is one of the inputs' elements, so its derivative is that input's. Ties of
/// Max and Min share the derivative equally among the inputs that attain the extremum, as JAX and PyTorch do.
/// </summary>
internal static class Selection
{
    public static Dual[] Where(OpContext c)
    {
        Tensor condition = c.In(0).Value;
        Dual x = c.In(1), y = c.In(2);
        var value = where(condition, x.Value, y.Value);
        if (x.Tangent is null && y.Tangent is null) return [new Dual(value, null)];
        long rank = value.dim();
        // The condition broadcasts against [K, ..value] from the right like the values do; the basis axis leads.
        var tx = x.Tangent is { } a ? Tangents.Align(a, rank) : value.new_zeros([]);
        var ty = y.Tangent is { } b ? Tangents.Align(b, rank) : value.new_zeros([]);
        return [new Dual(value, Tangents.Fit(where(condition, tx, ty), value.Dims()))];
    }

    public static Tensor?[] WhereVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (c.Cotangent(0) is not { } ct) return result;
        var condition = c.In(0);
        var zero = ct.new_zeros([]);
        if (c.Needs(1)) result[1] = Tangents.Unbroadcast(where(condition, ct, zero), c.In(1).Dims());
        if (c.Needs(2)) result[2] = Tangents.Unbroadcast(where(condition, zero, ct), c.In(2).Dims());
        return result;
    }

    /// <summary>
    /// TopK: the k largest (or smallest) along an axis, sorted, and their indices; each value's derivative is its
    /// element's, gathered by the indices.
    /// </summary>
    public static Dual[] TopK(OpContext c)
    {
        var x = c.In(0);
        long axis = Shapes.Axis(c.Attr.Int("axis", -1), x.Rank);
        var k = HostValues.Ints(c.In(1).Value);
        Shapes.Require(k.Length == 1 && k[0] >= 0 && k[0] <= x.Shape[axis],
            () => $"TopK k {Shapes.Text(k)} is not one count from 0 to the {x.Shape[axis]} elements along axis {axis}");
        var (values, indices) = x.Value.topk((int)k[0], (int)axis, c.Attr.Int("largest", 1) != 0, sorted: true);
        var tangent = x.Tangent is { } t
            ? Tangents.Fit(t, x.Shape).gather(axis + 1, indices.unsqueeze(0).expand(Tangents.WithBasis(t.size(0), indices.Dims())))
            : null;
        return [new Dual(values, tangent), new Dual(indices, null)];
    }

    public static Tensor?[] TopKVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return result;
        var x = c.In(0);
        var indices = c.Out(1);
        long axis = Shapes.Axis(c.Attr.Int("axis", -1), x.dim()), k = ct.size(0);
        var spread = Tangents.WithBasis(k, indices.Dims());
        result[0] = zeros(Tangents.WithBasis(k, x.Dims()), ct.dtype, ct.device).scatter_add_(axis + 1, indices.unsqueeze(0).expand(spread), ct.expand(spread));
        return result;
    }

    public static Dual[] Max(OpContext c) => Extremum(c, max: true);

    public static Dual[] Min(OpContext c) => Extremum(c, max: false);

    private static Dual[] Extremum(OpContext c, bool max)
    {
        var inputs = Enumerable.Range(0, c.InputCount).Select(c.In).ToArray();
        var value = inputs[0].Value;
        foreach (var x in inputs[1..]) value = max ? value.maximum(x.Value) : value.minimum(x.Value);
        if (!c.AnyTangent) return [new Dual(value, null)];
        var shares = Shares(inputs.Select(x => x.Value), value);
        Tensor? tangent = null;
        for (int i = 0; i < inputs.Length; i++)
            if (inputs[i].Tangent is { } t) tangent = Tangents.Sum(tangent, Tangents.Align(t, value.dim()) * shares[i]);
        return [new Dual(value, Tangents.Fit(tangent!, value.Dims()))];
    }

    public static Tensor?[] ExtremumVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (c.Cotangent(0) is not { } ct) return result;
        var inputs = Enumerable.Range(0, c.InputCount).Select(c.In).ToArray();
        var shares = Shares(inputs, c.Out(0));
        for (int i = 0; i < inputs.Length; i++)
            if (c.Needs(i)) result[i] = Tangents.Unbroadcast(ct * shares[i], inputs[i].Dims());
        return result;
    }

    /// <summary>Each input's share of the extremum's derivative: 1 where it alone attains it, 1/n where n inputs tie.</summary>
    private static Tensor[] Shares(IEnumerable<Tensor> inputs, Tensor extremum)
    {
        var attains = inputs.Select(x => x.eq(extremum).to_type(extremum.dtype)).ToArray();
        if (attains.Length == 1) return attains;
        var count = attains.Skip(1).Aggregate(attains[0], (sum, a) => sum.Plus(a));
        return attains.Select(a => a / count).ToArray();
    }

    /// <summary>Every input broadcast together: the elements the output holds.</summary>
    public static long Allocates(OpContext c) =>
        Sizes.Elements(Enumerable.Range(0, c.InputCount).Select(i => c.In(i).Shape).Aggregate(Shapes.Broadcast));
}
