using JacService.Client;
using JacService.Protos.V1;
using JacService.Testing;
using static JacService.Integration.Tests.SecondOrder;

namespace JacService.Integration.Tests;

/// <summary>
/// BatchHessian and BatchLaplacian over gRPC on the fixtures' reference inputs, checked against what they must equal
/// without a second-order reference: the Hessian is symmetric and equals central differences of BatchJacobian, the
/// Laplacian is the Hessian's trace, the Jacobians that come with them are BatchJacobian's; and against the fixtures'
/// functorch references when the reference files have them.
/// </summary>
[Collection(ServerCollection.Name)]
public class SecondOrderTests(ServerProcess server)
{
    public static TheoryData<string> SmoothModels => new() { "pinn", "mlp_tanh" };

    // Float32 on both sides of a comparison of derivatives that should agree to rounding.
    private const double Tolerance = 1e-4;

    [Theory]
    [MemberData(nameof(SmoothModels))]
    public async Task TheHessianIsSymmetricAndComesWithTheOutputs(string name)
    {
        var reference = Fixtures.Load(name);
        var (wrt, x) = reference.Inputs.Single();
        var (output, y) = reference.Outputs.Single();
        var response = await server.Client.BatchHessianAsync(HessianRequest(name, reference));

        long n = Product(x.Shape[1..]);
        var h = response.Hessians[output];
        Assert.Equal([.. y.Shape, .. x.Shape[1..], .. x.Shape[1..]], h.Shape);
        Assert.Empty(response.Jacobians);
        Compare.Close(y, response.Outputs[output].Shape.ToArray(), response.Outputs[output].Data, Tolerance, $"{name}.{output}");

        var transposed = new double[h.Data.Count];
        for (long r = 0; r < h.Data.Count / (n * n); r++)
            for (long j = 0; j < n; j++)
                for (long k = 0; k < n; k++) transposed[r * n * n + j * n + k] = h.Data[(int)(r * n * n + k * n + j)];
        Close(transposed, h.Data, Tolerance, MaxAbs(h.Data), $"{name} d²{output}/d{wrt}² against its transpose");
        Assert.True(MaxAbs(h.Data) > 0, $"{name}: the Hessian of a smooth nonlinear model is all zeros");
    }

    /// <summary>
    /// H[b, i, j, k] = ∂J[b, i, j]/∂x[b, k] ≈ (J(x + h·e_k) − J(x − h·e_k)) / 2h, every sample stepped at once. The step
    /// is measured in float32 (x ± h rounds), so the quotient uses the step that was taken. Central differences err by
    /// about h²/6 · (third derivative): with torch in float32 and h = 1e-2 that was 8e-4 (pinn) and 4e-4 (mlp_tanh) of
    /// the largest |H| entry, so 5e-3 of it leaves room for the server's own rounding while a wrong rule (a missing
    /// term, a wrong sign) is off by a large part of the entry.
    /// </summary>
    [Theory]
    [MemberData(nameof(SmoothModels))]
    public async Task TheHessianEqualsCentralDifferencesOfBatchJacobian(string name)
    {
        const float step = 1e-2f;
        var reference = Fixtures.Load(name);
        var (wrt, x) = reference.Inputs.Single();
        var output = reference.Outputs.Keys.Single();
        var hessian = (await server.Client.BatchHessianAsync(HessianRequest(name, reference))).Hessians[output];

        long batch = x.Shape[0], n = Product(x.Shape[1..]), m = Product(reference.Outputs[output].Shape[1..]);
        var differences = new double[batch * m * n * n];
        var xs = x.Floats;
        for (long k = 0; k < n; k++)
        {
            float[] plus = (float[])xs.Clone(), minus = (float[])xs.Clone();
            for (long b = 0; b < batch; b++)
            {
                plus[b * n + k] += step;
                minus[b * n + k] -= step;
            }
            var jPlus = await Jacobian(name, wrt, plus, x.Shape, output);
            var jMinus = await Jacobian(name, wrt, minus, x.Shape, output);
            for (long b = 0; b < batch; b++)
            {
                double taken = (double)plus[b * n + k] - minus[b * n + k];
                for (long i = 0; i < m; i++)
                    for (long j = 0; j < n; j++)
                    {
                        long at = (b * m + i) * n + j;
                        differences[at * n + k] = (jPlus[(int)at] - (double)jMinus[(int)at]) / taken;
                    }
            }
        }
        Close(differences, hessian.Data, 5e-3, MaxAbs(hessian.Data), $"{name} d²{output}/d{wrt}² against differences of BatchJacobian");
    }

    private async Task<IList<float>> Jacobian(string name, string wrt, float[] x, long[] shape, string output)
    {
        var request = new BatchJacobianRequest { Model = name, Wrt = wrt, Inputs = { [wrt] = Tensors.Create(x, shape) } };
        return (await server.Client.BatchJacobianAsync(request)).Jacobians[output].Data;
    }

    public static TheoryData<string, long[]> LaplacianCases => new()
    {
        { "pinn", [] },
        { "pinn", [0] },        // x of (x, t): the heat equation's u_xx
        { "mlp_tanh", [] },
        { "mlp_tanh", [30, 1, 5] }, // in any order: the sum does not care
    };

    [Theory]
    [MemberData(nameof(LaplacianCases))]
    public async Task TheLaplacianIsTheTraceOfTheHessian(string name, long[] axes)
    {
        var reference = Fixtures.Load(name);
        var (wrt, x) = reference.Inputs.Single();
        var (output, y) = reference.Outputs.Single();
        long n = Product(x.Shape[1..]);
        var hessian = (await server.Client.BatchHessianAsync(HessianRequest(name, reference))).Hessians[output];
        var response = await server.Client.BatchLaplacianAsync(LaplacianRequest(name, reference, axes));

        var laplacian = response.Laplacians[output];
        Assert.Equal(y.Shape, laplacian.Shape);
        Assert.Empty(response.Jacobians);
        var summed = axes.Length == 0 ? Enumerable.Range(0, (int)n).Select(i => (long)i).ToArray() : axes;
        // A sum of |axes| entries, each good to rounding of the largest entry.
        Close(Trace(hessian, n, summed), laplacian.Data, Tolerance * summed.Length, MaxAbs(hessian.Data),
            $"{name} Laplacian over [{string.Join(", ", axes)}] against the Hessian's trace");
        Compare.Close(y, response.Outputs[output].Shape.ToArray(), response.Outputs[output].Data, Tolerance, $"{name}.{output}");
    }

    [Theory]
    [MemberData(nameof(SmoothModels))]
    public async Task IncludeJacobianGivesBatchJacobiansJacobians(string name)
    {
        var reference = Fixtures.Load(name);
        var (wrt, perOutput) = reference.Jacobians.Single();
        var (output, expected) = perOutput.Single();
        var hessian = await server.Client.BatchHessianAsync(HessianRequest(name, reference, includeJacobian: true));
        var laplacian = await server.Client.BatchLaplacianAsync(LaplacianRequest(name, reference, axes: [0], includeJacobian: true));
        var jacobianRequest = new BatchJacobianRequest { Model = name };
        foreach (var (input, t) in reference.Inputs) jacobianRequest.Inputs[input] = ServingTests.ToProto(t);
        var jacobian = await server.Client.BatchJacobianAsync(jacobianRequest);

        foreach (var (what, got) in new[] { ("BatchHessian", hessian.Jacobians), ("BatchLaplacian", laplacian.Jacobians) })
        {
            Assert.Equal([output], got.Keys);
            Compare.Close(expected, got[output].Shape.ToArray(), got[output].Data, Tolerance, $"{name} {what} d{output}/d{wrt}");
            Close(jacobian.Jacobians[output].Data.Select(v => (double)v).ToList(), got[output].Data, Tolerance,
                MaxAbs(jacobian.Jacobians[output].Data), $"{name} {what}'s Jacobian against BatchJacobian's");
        }
        // Asking for the Jacobians changes nothing else (beyond rounding: the pass carries more directions).
        var without = await server.Client.BatchHessianAsync(HessianRequest(name, reference));
        Close(without.Hessians[output].Data.Select(v => (double)v).ToList(), hessian.Hessians[output].Data, Tolerance,
            MaxAbs(without.Hessians[output].Data), $"{name} Hessian with the Jacobians against without");
    }

    /// <summary>A network of Gemm and Relu only is piecewise linear: away from the kinks every second derivative is zero.</summary>
    [Fact]
    public async Task APiecewiseLinearModelHasAZeroHessianAndLaplacian()
    {
        // wide_classifier (Gemm, Relu, raw logits). relu_classifier would not do: its LogSoftmax is smooth and curved.
        var reference = Fixtures.Load("wide_classifier");
        var hessian = await server.Client.BatchHessianAsync(HessianRequest("wide_classifier", reference, includeJacobian: true));
        var laplacian = await server.Client.BatchLaplacianAsync(LaplacianRequest("wide_classifier", reference));

        Assert.Equal([3L, 10, 128, 128], hessian.Hessians["logits"].Shape);
        double slope = MaxAbs(hessian.Jacobians["logits"].Data);
        Assert.True(slope > 0);
        Assert.True(MaxAbs(hessian.Hessians["logits"].Data) <= 1e-6 * slope, $"max |H| {MaxAbs(hessian.Hessians["logits"].Data):E3}");
        Assert.Equal([3L, 10], laplacian.Laplacians["logits"].Shape);
        Assert.True(MaxAbs(laplacian.Laplacians["logits"].Data) <= 1e-6 * slope, $"max |Δ| {MaxAbs(laplacian.Laplacians["logits"].Data):E3}");
    }

    /// <summary>relu_classifier mixes piecewise-linear layers with a curved LogSoftmax: its Laplacian is still the Hessian's trace.</summary>
    [Fact]
    public async Task AReluModelWithLogSoftmaxHasASymmetricHessianWhoseTraceIsTheLaplacian()
    {
        var reference = Fixtures.Load("relu_classifier");
        var hessian = (await server.Client.BatchHessianAsync(HessianRequest("relu_classifier", reference))).Hessians["logp"];
        var laplacian = (await server.Client.BatchLaplacianAsync(LaplacianRequest("relu_classifier", reference))).Laplacians["logp"];

        const long n = 20;
        double scale = MaxAbs(hessian.Data);
        Assert.True(scale > 0, "LogSoftmax's curvature is missing: the Hessian is all zeros");
        var transposed = new double[hessian.Data.Count];
        for (long r = 0; r < hessian.Data.Count / (n * n); r++)
            for (long j = 0; j < n; j++)
                for (long k = 0; k < n; k++) transposed[r * n * n + j * n + k] = hessian.Data[(int)(r * n * n + k * n + j)];
        Close(transposed, hessian.Data, Tolerance, scale, "relu_classifier Hessian against its transpose");
        Close(Trace(hessian, n, Enumerable.Range(0, (int)n).Select(i => (long)i).ToArray()), laplacian.Data, Tolerance * n, scale,
            "relu_classifier Laplacian against the Hessian's trace");
    }

    [Fact]
    public async Task OfPicksTheOutputsThatGetSecondDerivatives()
    {
        var reference = Fixtures.Load("two_outputs");
        var hessian = await server.Client.BatchHessianAsync(HessianRequest("two_outputs", reference, of: "log_var"));
        var laplacian = await server.Client.BatchLaplacianAsync(LaplacianRequest("two_outputs", reference, of: "log_var"));

        Assert.Equal(["log_var"], hessian.Hessians.Keys);
        Assert.Equal([3L, 3, 6, 6], hessian.Hessians["log_var"].Shape);
        Assert.Equal(["log_var"], laplacian.Laplacians.Keys);
        // Every output still comes back, as for BatchJacobian.
        Assert.Equal(["log_var", "mean"], hessian.Outputs.Keys.Order());
        Close(Trace(hessian.Hessians["log_var"], 6, [0, 1, 2, 3, 4, 5]), laplacian.Laplacians["log_var"].Data, Tolerance * 6,
            MaxAbs(hessian.Hessians["log_var"].Data), "two_outputs Laplacian of log_var against its Hessian's trace");
    }

    [Fact]
    public async Task WithSeveralInputsWrtPicksTheOneDifferentiated()
    {
        var reference = Fixtures.Load("two_inputs");
        var byX = await server.Client.BatchHessianAsync(HessianRequest("two_inputs", reference, wrt: "x"));
        var byZ = await server.Client.BatchHessianAsync(HessianRequest("two_inputs", reference, wrt: "z"));
        Assert.Equal([3L, 5, 8, 8], byX.Hessians["y"].Shape);
        Assert.Equal([3L, 5, 4, 4], byZ.Hessians["y"].Shape);
        var laplacian = await server.Client.BatchLaplacianAsync(LaplacianRequest("two_inputs", reference, wrt: "z"));
        Close(Trace(byZ.Hessians["y"], 4, [0, 1, 2, 3]), laplacian.Laplacians["y"].Data, Tolerance * 4, MaxAbs(byZ.Hessians["y"].Data),
            "two_inputs Laplacian in z against the Hessian's trace");
    }

    public static TheoryData<string> ModelsWithSecondOrderReferences => new(Fixtures.SecondOrderNames);

    /// <summary>The fixtures' functorch references (float64): every model but small_cnn, whose Hessian would be ~120 MB of JSON, and conv_decoder.</summary>
    [Theory]
    [MemberData(nameof(ModelsWithSecondOrderReferences))]
    public async Task MatchesTheReferences(string name)
    {
        var reference = Fixtures.Load(name);
        Assert.True(reference.Hessians is not null && reference.Laplacians is not null && reference.LaplaciansAxes is not null, $"{name}: no second-order references");
        foreach (var wrt in reference.Jacobians.Keys)
        {
            var hessian = await server.Client.BatchHessianAsync(HessianRequest(name, reference, wrt: wrt));
            var laplacian = await server.Client.BatchLaplacianAsync(LaplacianRequest(name, reference, wrt: wrt));
            var axes = reference.LaplaciansAxes.Axes[wrt].Select(a => (long)a).ToArray();
            var subset = await server.Client.BatchLaplacianAsync(LaplacianRequest(name, reference, axes, wrt: wrt));
            foreach (var output in reference.Outputs.Keys)
            {
                // The file may hold Hessians for fewer samples than the batch (wide_classifier: 2 of 3).
                var h = reference.Hessians[wrt][output];
                int samples = (int)h.Shape[0];
                var served = hessian.Hessians[output];
                long perSample = served.Data.Count / served.Shape[0];
                Compare.Close(h, [samples, .. served.Shape.Skip(1)], served.Data.Take((int)(samples * perSample)).ToList(), Tolerance,
                    $"{name} d²{output}/d{wrt}²");
                Compare.Close(reference.Laplacians[wrt][output], laplacian.Laplacians[output].Shape.ToArray(), laplacian.Laplacians[output].Data,
                    Tolerance, $"{name} Δ{output} in {wrt}");
                Compare.Close(reference.LaplaciansAxes.Values[wrt][output], subset.Laplacians[output].Shape.ToArray(), subset.Laplacians[output].Data,
                    Tolerance, $"{name} Δ{output} in {wrt} over axes [{string.Join(", ", axes)}]");
            }
        }
    }

    [Fact]
    public async Task TheClientLibraryCallsBoth()
    {
        var client = ClientTesting.ClientFor(server);
        var reference = Fixtures.Load("pinn");
        var inputs = ClientTesting.Inputs(reference);

        var hessian = await client.HessianAsync("pinn", inputs, includeJacobian: true);
        var laplacian = await client.LaplacianAsync("pinn", inputs, axes: [0], includeJacobian: true);
        var plain = await client.LaplacianAsync("pinn", inputs, of: ["u"]);

        Assert.Equal("pinn", hessian.Model);
        Assert.Equal([3L, 1, 2, 2], hessian.Hessians["u"].Shape);
        ClientTesting.Close(reference.Jacobians["xt"]["u"], hessian.Jacobians["u"], "HessianAsync's Jacobian");
        ClientTesting.Close(reference.Jacobians["xt"]["u"], laplacian.Jacobians["u"], "LaplacianAsync's Jacobian");
        ClientTesting.Close(reference.Outputs["u"], laplacian.Outputs["u"], "LaplacianAsync's output");
        var h = hessian.Hessians["u"].ToArray();
        // u_xx alone: entry [b, 0, 0, 0] of each sample's Hessian.
        Close(Enumerable.Range(0, 3).Select(b => (double)h[b * 4]).ToList(), laplacian.Laplacians["u"].ToArray(), Tolerance, MaxAbs(h), "u_xx");
        Close(Enumerable.Range(0, 3).Select(b => (double)h[b * 4] + h[b * 4 + 3]).ToList(), plain.Laplacians["u"].ToArray(), Tolerance * 2, MaxAbs(h),
            "u_xx + u_tt");
        Assert.Empty(plain.Jacobians);
    }
}
