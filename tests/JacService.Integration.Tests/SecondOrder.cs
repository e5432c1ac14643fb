using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// What the second-order tests share: requests built from the fixture references, Hessians read as [rows, n, n], and a
/// closeness check against an expected array with an explicit scale.
/// </summary>
internal static class SecondOrder
{
    public static BatchHessianRequest HessianRequest(string model, Reference reference, bool includeJacobian = false, string wrt = "",
        params string[] of)
    {
        var request = new BatchHessianRequest { Model = model, Wrt = wrt, IncludeJacobian = includeJacobian, Of = { of } };
        foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ServingTests.ToProto(t);
        return request;
    }

    public static BatchLaplacianRequest LaplacianRequest(string model, Reference reference, long[]? axes = null, bool includeJacobian = false,
        string wrt = "", params string[] of)
    {
        var request = new BatchLaplacianRequest { Model = model, Wrt = wrt, IncludeJacobian = includeJacobian, Of = { of }, Axes = { axes ?? [] } };
        foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ServingTests.ToProto(t);
        return request;
    }

    public static long Product(IEnumerable<long> dims) => dims.Aggregate(1L, (p, d) => p * d);

    /// <summary>The trace of each [n, n] block of a Hessian over <paramref name="axes"/>: one value per (sample, output element).</summary>
    public static double[] Trace(Tensor hessian, long n, IReadOnlyList<long> axes)
    {
        long rows = hessian.Data.Count / (n * n);
        var trace = new double[rows];
        for (long r = 0; r < rows; r++)
            foreach (var a in axes) trace[r] += hessian.Data[(int)(r * n * n + a * n + a)];
        return trace;
    }

    /// <summary>Max |actual - expected| within tolerance × scale (scale: the size of what is compared, stated by the caller).</summary>
    public static void Close(IReadOnlyList<double> expected, IReadOnlyList<float> actual, double tolerance, double scale, string what)
    {
        Assert.True(expected.Count == actual.Count, $"{what}: {actual.Count} values, expected {expected.Count}");
        double worst = 0;
        int at = 0;
        for (int i = 0; i < actual.Count; i++)
        {
            double e = Math.Abs(actual[i] - expected[i]);
            if (!(e <= worst)) (worst, at) = (e, i);
        }
        Assert.True(worst <= tolerance * scale, $"{what}: max abs error {worst:E3} at flat index {at} > {tolerance} x {scale:E3}");
    }

    public static double MaxAbs(IEnumerable<float> values) => values.Select(v => (double)Math.Abs(v)).DefaultIfEmpty(0).Max();
}
