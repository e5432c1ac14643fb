using JacService.Core.Models;
using JacService.Core.Ops;
using static JacService.Core.Tests.OpRows;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// Every op's second-order path, one small model per row (the rows of OpRows), in float64: the Hessian that the
/// second-order directions carry must match central finite differences of the first-order (JVP) rule's Jacobian,
/// and a Laplacian (the trace directions, over all elements and over a subset) the trace of that Hessian.
/// </summary>
public class SecondOrderRuleTests
{
    /// <summary>Ops second derivatives are refused through, on purpose. Every other op must have a second-order rule.</summary>
    private static readonly string[] Refused = [];

    [Fact]
    public void EveryOpHasASecondOrderRuleOrIsRefusedOnPurpose()
    {
        var missing = OpTable.Rules.Values.Where(r => r.Curvature is null && !Refused.Contains(r.OpType)).Select(r => r.OpType).Order().ToList();
        Assert.True(missing.Count == 0, $"ops with neither a second-order rule nor a deliberate refusal: {string.Join(", ", missing)}");
        var stale = Refused.Where(op => OpTable.Rules[op].Curvature is not null).ToList();
        Assert.True(stale.Count == 0, $"ops listed as refused that have a second-order rule: {string.Join(", ", stale)}");
    }

    [Theory]
    [MemberData(nameof(RowNames), MemberType = typeof(OpRows))]
    public void HessianMatchesFiniteDifferencesOfTheFirstOrderRule(string row) => ForEachDerivative(row, (what, hessian, reference, _) =>
    {
        double scale = Math.Max(1, reference.abs().max().item<double>());
        double error = (hessian - reference).abs().max().item<double>();
        Assert.True(error <= 1e-6 * scale, $"{what}: Hessian max abs error {error:E2} against finite differences (scale {scale:G4})");
    });

    [Theory]
    [MemberData(nameof(RowNames), MemberType = typeof(OpRows))]
    public void LaplacianIsTheTraceOfTheHessian(string row) => ForEachDerivative(row, (what, hessian, _, laplacians) =>
    {
        var diagonal = hessian.diagonal(dim1: 1, dim2: 2);
        var (all, even) = laplacians();
        double scale = Math.Max(1, diagonal.abs().max().item<double>());
        Assert.True((all - diagonal.sum(1)).abs().max().item<double>() <= 1e-12 * scale * diagonal.shape[1], $"{what}: Laplacian over every element");
        var evens = arange(Scalars.L(0), Scalars.L(diagonal.shape[1]), Scalars.L(2), ScalarType.Int64);
        Assert.True((even - diagonal.index_select(1, evens).sum(1)).abs().max().item<double>() <= 1e-12 * scale * diagonal.shape[1],
            $"{what}: Laplacian over the even elements");
    });

    // ---- Machinery ------------------------------------------------------------------------------------------

    /// <param name="what">names the row, output and input</param>
    /// <param name="check">gets the Hessian [m, n, n] from second-order directions, its reference by finite differences, and
    /// a function that computes the Laplacians [m] over every element and over the even ones</param>
    private delegate void Check(string what, Tensor hessian, Tensor reference, Func<(Tensor All, Tensor Even)> laplacians);

    private static void ForEachDerivative(string row, Check check)
    {
        var g = new OnnxBuilder();
        ByName[row].Build(g);
        using var model = ModelVersion.Load(row, 1, g.ToBytes(), new EngineLimits(), computeType: ScalarType.Float64);
        using var scope = NewDisposeScope();
        var inputs = g.Inputs.Select(i => tensor(i.Data, i.Shape, ScalarType.Float64)).ToArray();
        var types = g.OutputTypes;
        int compared = 0;
        foreach (var wrt in Enumerable.Range(0, g.Inputs.Count).Where(i => g.Inputs[i].Differentiated))
        {
            var hessians = Hessians(model, inputs, wrt);
            var references = FiniteDifferenceHessians(model, inputs, wrt);
            for (int o = 0; o < types.Count; o++)
            {
                if (types[o] != OnnxType.Float) continue;
                int output = o;
                check($"{row}: output {o}, wrt {g.Inputs[wrt].Name}", hessians[o], references[o],
                    () => (Trace(model, inputs, wrt, null)[output], Trace(model, inputs, wrt, EvenIndices(inputs[wrt].numel()))[output]));
                compared++;
            }
        }
        Assert.True(compared > 0 || types.All(t => t != OnnxType.Float), $"{row}: nothing was compared");
    }

    private static long[] EvenIndices(long n) => Enumerable.Range(0, (int)((n + 1) / 2)).Select(i => 2L * i).ToArray();

    /// <summary>Per output, the Hessian [m, n, n] from one pass carrying the identity basis and one second-order direction per entry i ≤ j.</summary>
    private static Tensor[] Hessians(ModelVersion model, Tensor[] inputs, int wrt)
    {
        var x = inputs[wrt];
        long n = x.numel();
        var pairs = Enumerable.Range(0, (int)n).SelectMany(i => Enumerable.Range(i, (int)n - i).Select(j => ((long)i, (long)j))).ToArray();
        var basis = PairBasis.Entries(n, pairs.Select(p => p.Item1).ToArray(), pairs.Select(p => p.Item2).ToArray());
        var seed = cat([eye(n, dtype: ScalarType.Float64), zeros(pairs.Length, n, ScalarType.Float64)]).reshape([n + pairs.Length, .. x.shape]);
        var result = model.Jvp(inputs, wrt, seed, basis);
        return result.Values.Select((value, o) =>
        {
            long m = value.numel();
            var h = zeros(m, n, n, ScalarType.Float64);
            if (result.Tangents[o] is not { } t || !value.is_floating_point()) return h;
            var second = t.narrow(0, n, pairs.Length).reshape(pairs.Length, m);
            for (int p = 0; p < pairs.Length; p++)
            {
                var (i, j) = pairs[p];
                h[.., i, j] = second[p];
                h[.., j, i] = second[p];
            }
            return h;
        }).ToArray();
    }

    /// <summary>Per output, the Laplacian [m] from one pass carrying the identity basis and one trace direction.</summary>
    private static Tensor[] Trace(ModelVersion model, Tensor[] inputs, int wrt, long[]? diagonal)
    {
        var x = inputs[wrt];
        long n = x.numel();
        var seed = cat([eye(n, dtype: ScalarType.Float64), zeros(1, n, ScalarType.Float64)]).reshape([n + 1, .. x.shape]);
        var result = model.Jvp(inputs, wrt, seed, PairBasis.Trace(n, diagonal));
        return result.Values.Select((value, o) =>
            result.Tangents[o] is { } t && value.is_floating_point() ? t.narrow(0, n, 1).reshape(-1) : zeros(value.numel(), ScalarType.Float64)).ToArray();
    }

    /// <summary>Per output, central differences (step 1e-5) of the first-order rule's Jacobian [m, n], one input element at a time: [m, n, n].</summary>
    private static Tensor[] FiniteDifferenceHessians(ModelVersion model, Tensor[] inputs, int wrt)
    {
        const double h = 1e-5;
        var x = inputs[wrt];
        long n = x.numel();
        var basis = eye(n, dtype: ScalarType.Float64).reshape([n, .. x.shape]);
        // Cached Scalars, not implicit ones: ScalarLifetimeTests collects garbage in parallel, and TorchSharp does not
        // keep a temporary Scalar alive while libtorch reads it.
        var columns = new List<Tensor[]>();
        for (long j = 0; j < n; j++)
        {
            var plus = Jacobians(model, inputs.Select((t, i) => i == wrt ? x.Plus(basis[j] * Scalars.S(h)) : t).ToArray(), wrt);
            var minus = Jacobians(model, inputs.Select((t, i) => i == wrt ? x - basis[j] * Scalars.S(h) : t).ToArray(), wrt);
            columns.Add(plus.Zip(minus, (p, q) => (p - q) / Scalars.S(2 * h)).ToArray());
        }
        return Enumerable.Range(0, columns[0].Length).Select(o => stack(columns.Select(c => c[o]), 2)).ToArray();
    }

    /// <summary>Per output, the Jacobian [m, n] the first-order rule pushes through the identity basis (zeros without a tangent).</summary>
    private static Tensor[] Jacobians(ModelVersion model, Tensor[] inputs, int wrt)
    {
        var x = inputs[wrt];
        long n = x.numel();
        var result = model.Jvp(inputs, wrt, eye(n, dtype: ScalarType.Float64).reshape([n, .. x.shape]));
        return result.Values.Select((value, o) =>
            result.Tangents[o] is { } t && value.is_floating_point() ? t.reshape(n, -1).t() : zeros(value.numel(), n, ScalarType.Float64)).ToArray();
    }
}
