using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>Small helpers for tensors with a leading basis axis.</summary>
internal static class Tangents
{
    /// <summary>Inserts unit axes after the basis axis so a tangent of a lower-rank value broadcasts like its value.</summary>
    public static Tensor Align(Tensor t, long rank)
    {
        long missing = rank - (t.dim() - 1);
        if (missing <= 0) return t;
        var shape = t.Dims();
        var aligned = new long[shape.Length + missing];
        aligned[0] = shape[0];
        for (int i = 1; i <= missing; i++) aligned[i] = 1;
        Array.Copy(shape, 1, aligned, 1 + missing, shape.Length - 1);
        return t.reshape(aligned);
    }

    /// <summary>Brings a tangent to exactly [K, ..shape] (aligning rank and expanding broadcast axes).</summary>
    public static Tensor Fit(Tensor t, long[] shape)
    {
        t = Align(t, shape.Length);
        var have = t.Dims();
        var want = WithBasis(have[0], shape);
        return have.SequenceEqual(want) ? t : t.expand(want);
    }

    public static long[] WithBasis(long k, long[] shape)
    {
        var r = new long[shape.Length + 1];
        r[0] = k;
        shape.CopyTo(r, 1);
        return r;
    }

    public static Tensor? Sum(Tensor? a, Tensor? b) => a is null ? b : b is null ? a : a.Plus(b);

    /// <summary>
    /// The transpose of broadcasting: sums a cotangent [K, ..broadcast shape] down to [K, ..shape] over the axes that
    /// broadcasting added or stretched.
    /// </summary>
    public static Tensor Unbroadcast(Tensor ct, long[] shape)
    {
        long extra = ct.dim() - 1 - shape.Length;
        if (extra > 0) ct = ct.sum(Enumerable.Range(1, (int)extra).Select(i => (long)i).ToArray());
        var stretched = Enumerable.Range(0, shape.Length).Where(i => shape[i] == 1 && ct.Dims()[i + 1] != 1).Select(i => (long)i + 1).ToArray();
        if (stretched.Length > 0) ct = ct.sum(stretched, keepdim: true);
        return ct.Dims().AsSpan(1).SequenceEqual(shape) ? ct : ct.reshape(WithBasis(ct.size(0), shape));
    }

    public static Tensor Zeros(long k, Tensor like) => zeros(WithBasis(k, like.Dims()), like.dtype, like.device);

    /// <summary>Shifts value axes by one to address the same axes on the tangent.</summary>
    public static long[] Shift(IEnumerable<long> axes) => axes.Select(a => a + 1).ToArray();

    /// <summary>Applies a linear map meant for [N, ...] tensors to a tangent [K, N, ...] by folding K into N.</summary>
    public static Tensor FoldBasis(Tensor t, Func<Tensor, Tensor> f)
    {
        var s = t.Dims();
        var folded = new long[s.Length - 1];
        folded[0] = s[0] * s[1];
        Array.Copy(s, 2, folded, 1, s.Length - 2);
        var r = f(t.reshape(folded));
        var rs = r.Dims();
        var unfolded = new long[rs.Length + 1];
        unfolded[0] = s[0];
        unfolded[1] = s[1];
        Array.Copy(rs, 1, unfolded, 2, rs.Length - 1);
        return r.reshape(unfolded);
    }
}

/// <summary>Shape checks that run before libtorch is called: some native shape errors abort the process.</summary>
internal static class Shapes
{
    public static string Text(long[] shape) => "[" + string.Join(", ", shape) + "]";

    /// <summary>
    /// <paramref name="t"/>'s shape, read one dimension at a time. TorchSharp's <c>Tensor.shape</c> hands libtorch a
    /// fresh delegate to allocate the array through (a reverse P/Invoke thunk per call) and pins it; at batch 1, where
    /// kernels take a few µs, that was a seventh of a served Jacobian's time.
    /// </summary>
    public static long[] Dims(this Tensor t)
    {
        var shape = new long[t.dim()];
        for (int i = 0; i < shape.Length; i++) shape[i] = t.size(i);
        return shape;
    }

    public static void Require(bool condition, Func<string> message)
    {
        if (!condition) throw new ArgumentException(message());
    }

    public static long Axis(long axis, long rank, string what = "axis")
    {
        long a = axis < 0 ? axis + rank : axis;
        Require(a >= 0 && a < rank, () => $"{what} {axis} is out of range for rank {rank}");
        return a;
    }

    public static long Product(IEnumerable<long> dims) => dims.Aggregate(1L, (p, d) => checked(p * d));

    /// <summary>NumPy broadcasting of two shapes, or an error naming both.</summary>
    public static long[] Broadcast(long[] a, long[] b)
    {
        int r = Math.Max(a.Length, b.Length);
        var o = new long[r];
        for (int i = 0; i < r; i++)
        {
            long da = i < r - a.Length ? 1 : a[i - (r - a.Length)];
            long db = i < r - b.Length ? 1 : b[i - (r - b.Length)];
            Require(da == db || da == 1 || db == 1, () => $"shapes {Text(a)} and {Text(b)} do not broadcast");
            o[i] = da == 1 ? db : da;
        }
        return o;
    }
}
