using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Ops;
using JacService.Testing;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// The second-order engine on the exported fixtures, in float64: per-sample Hessians against finite differences of
/// the forward-mode Jacobian, the same results whatever the working memory splits, Laplacians as traces, and the
/// checks that run before any work.
/// </summary>
public class SecondOrderModeTests
{
    public static TheoryData<string> Smooth => new("pinn", "mlp_tanh", "layernorm_gelu", "two_inputs", "two_outputs");

    // ReLU layers contribute nothing between kinks; the LogSoftmax on top still curves, so the Hessian is not zero.
    // Both ways of computing a Hessian, on every model (the server picks one by size).
    public static TheoryData<string, string> WithFiniteDifferences
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var name in new[] { "pinn", "mlp_tanh", "layernorm_gelu", "two_inputs", "two_outputs", "relu_classifier", "attention" })
                foreach (var method in new[] { nameof(HessianMethod.Forward), nameof(HessianMethod.Contracted) })
                    data.Add(name, method);
            return data;
        }
    }

    // A small working memory also gets a small largest temporary, so both limits split passes.
    private static ModelVersion Load(string name, long workingMemory = 512L << 20) =>
        ModelVersion.Load(name, 1, File.ReadAllBytes(Fixtures.ModelPath(name)),
            new EngineLimits { WorkingMemoryBytes = workingMemory, LargestTemporaryBytes = Math.Min(32L << 20, workingMemory / 8) },
            computeType: ScalarType.Float64);

    private static Tensor[] Inputs(Reference reference, ModelVersion model) =>
        model.Inputs.Select(i => tensor(reference.Inputs[i.Name].Data, reference.Inputs[i.Name].Shape, ScalarType.Float64)).ToArray();

    private static int[] AllOutputs(ModelVersion model) => Enumerable.Range(0, model.Outputs.Count).ToArray();

    [Theory]
    [MemberData(nameof(WithFiniteDifferences))]
    public void HessianMatchesFiniteDifferencesOfTheJacobianPerSample(string name, string methodName)
    {
        var method = Enum.Parse<HessianMethod>(methodName);
        using var model = Load(name);
        using var scope = NewDisposeScope();
        var inputs = Inputs(Fixtures.Load(name), model);
        var of = AllOutputs(model);
        for (int wrt = 0; wrt < inputs.Length; wrt++)
        {
            var hessians = model.SecondOrderTensors(inputs, wrt, of, SecondOrderKind.Hessian, method: method).Derivatives;
            const double h = 1e-5;
            var x = inputs[wrt];
            var sample = x.shape[1..];
            long n = x[0].numel();
            for (long j = 0; j < n; j++)
            {
                // One element of every sample at once: the samples are independent, so each sample's column j moves alone.
                var step = zeros(n, ScalarType.Float64);
                step[j] = h;
                var shift = step.reshape([1, .. sample]);
                var plus = model.JacobianTensors(inputs.Select((t, i) => i == wrt ? t.Plus(shift) : t).ToArray(), wrt, of, DerivativeMode.Forward).Jacobians;
                var minus = model.JacobianTensors(inputs.Select((t, i) => i == wrt ? t - shift : t).ToArray(), wrt, of, DerivativeMode.Forward).Jacobians;
                for (int o = 0; o < of.Length; o++)
                {
                    long batch = x.shape[0];
                    var column = ((plus[o] - minus[o]) / JacService.Core.Ops.Scalars.S(2 * h)).reshape(batch, -1, n);
                    var computed = hessians[o].reshape(batch, -1, n, n).select(3, j);
                    double scale = Math.Max(1, column.abs().max().item<double>());
                    double error = (computed - column).abs().max().item<double>();
                    Assert.True(error <= 1e-6 * scale, $"{name} ({method}) wrt {wrt} output {o} column {j}: max abs error {error:E2} (scale {scale:G3})");
                }
            }
            foreach (var hessian in hessians)
            {
                var flat = hessian.reshape(x.shape[0], -1, n, n);
                Assert.True(flat.allclose(flat.transpose(2, 3), rtol: 0, atol: 0), $"{name}: the Hessian is not exactly symmetric");
            }
        }
    }

    // Budgets small enough to split Hessian entries and Laplacian directions over several passes, and for the small
    // models the batch too (layernorm_gelu's 128 inputs make 8,256 Hessian entries: one per pass would take a minute).
    [Theory]
    [InlineData("pinn", 2 << 10)]
    [InlineData("mlp_tanh", 2 << 10)]
    [InlineData("two_inputs", 2 << 10)]
    [InlineData("two_outputs", 2 << 10)]
    [InlineData("layernorm_gelu", 4 << 20)]
    public void SplittingTheWorkingMemoryChangesNothing(string name, long workingMemory)
    {
        using var whole = Load(name);
        using var split = Load(name, workingMemory);
        using var scope = NewDisposeScope();
        var inputs = Inputs(Fixtures.Load(name), whole);
        var of = AllOutputs(whole);
        for (int wrt = 0; wrt < inputs.Length; wrt++)
        {
            long n = inputs[wrt][0].numel();
            var axes = Enumerable.Range(0, (int)n).Where(i => i % 2 == 0).ToArray();
            foreach (var (kind, subset, method) in new[]
            {
                (SecondOrderKind.Hessian, (int[]?)null, HessianMethod.Forward), (SecondOrderKind.Hessian, null, HessianMethod.Contracted),
                (SecondOrderKind.Laplacian, null, HessianMethod.Auto), (SecondOrderKind.Laplacian, axes, HessianMethod.Auto),
            })
            {
                var a = whole.SecondOrderTensors(inputs, wrt, of, kind, subset, includeJacobian: true, method);
                var b = split.SecondOrderTensors(inputs, wrt, of, kind, subset, includeJacobian: true, method);
                for (int i = 0; i < a.Outputs.Length; i++) Assert.True(a.Outputs[i].allclose(b.Outputs[i], rtol: 1e-12, atol: 1e-12), $"{name} {kind}: output {i}");
                Assert.Equal(a.Derivatives.Length, b.Derivatives.Length);
                for (int d = 0; d < a.Derivatives.Length; d++)
                {
                    Assert.Equal(a.Derivatives[d].shape, b.Derivatives[d].shape);
                    Assert.True(a.Derivatives[d].allclose(b.Derivatives[d], rtol: 1e-10, atol: 1e-10), $"{name} {kind} ({method}) axes {subset?.Length}: derivative {d}");
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Smooth))]
    public void LaplacianIsTheTraceAndTheJacobianIsForwardModes(string name)
    {
        using var model = Load(name);
        using var scope = NewDisposeScope();
        var inputs = Inputs(Fixtures.Load(name), model);
        var of = AllOutputs(model);
        for (int wrt = 0; wrt < inputs.Length; wrt++)
        {
            long batch = inputs[wrt].shape[0], n = inputs[wrt][0].numel();
            var axes = Enumerable.Range(0, (int)n).Where(i => i % 3 != 1).ToArray();
            var hessian = model.SecondOrderTensors(inputs, wrt, of, SecondOrderKind.Hessian, includeJacobian: true).Derivatives;
            var laplacian = model.SecondOrderTensors(inputs, wrt, of, SecondOrderKind.Laplacian, axes, includeJacobian: false).Derivatives;
            var jacobians = model.JacobianTensors(inputs, wrt, of, DerivativeMode.Forward).Jacobians;
            Assert.Equal(of.Length, laplacian.Length);
            for (int o = 0; o < of.Length; o++)
            {
                var diagonal = hessian[o].reshape(batch, -1, n, n).diagonal(dim1: 2, dim2: 3).index_select(2, tensor(axes.Select(a => (long)a).ToArray()));
                Assert.True(laplacian[o].reshape(batch, -1).allclose(diagonal.sum(2), rtol: 1e-10, atol: 1e-10), $"{name} output {o}: Laplacian over axes");
                Assert.True(hessian[of.Length + o].allclose(jacobians[o], rtol: 1e-12, atol: 1e-12), $"{name} output {o}: the Jacobian beside the Hessian");
            }
        }
    }

    [Fact]
    public void AxesOutOfRangeOrRepeatedAreRefusedSayingWhy()
    {
        using var model = Load("pinn");
        var inputs = new[] { new HostTensor([3, 2], new float[6]) };
        var outOfRange = Assert.Throws<InvalidRequestException>(() => model.Requests.ResolveAxes([0, 2], inputs, 0));
        Assert.Contains("axes holds 2, out of range", outOfRange.Message);
        Assert.Contains("[0, 1]", outOfRange.Message);
        var negative = Assert.Throws<InvalidRequestException>(() => model.Requests.ResolveAxes([-1], inputs, 0));
        Assert.Contains("axes holds -1", negative.Message);
        var repeated = Assert.Throws<InvalidRequestException>(() => model.Requests.ResolveAxes([1, 0, 1], inputs, 0));
        Assert.Contains("names 1 more than once", repeated.Message);
        Assert.Equal([0, 1], model.Requests.ResolveAxes([], inputs, 0));
        Assert.Equal([0, 1], model.Requests.ResolveAxes([1, 0], inputs, 0));
    }

    [Fact]
    public void AHessianOverTheResultLimitIsRefusedBeforeAnyWork()
    {
        using var model = ModelVersion.Load("mlp_tanh", 1, File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh")), new EngineLimits { MaxResultBytes = 1 << 20 });
        var inputs = new[] { new HostTensor([32, 32], new float[32 * 32]) };
        // 32 samples x 16 outputs x 32 x 32 floats = 2 MiB of Hessians alone; the Laplacian is 2 KiB.
        var e = Assert.Throws<ResultTooLargeException>(() => model.CheckSecondOrderSize(inputs, 0, [0], SecondOrderKind.Hessian, includeJacobian: false));
        Assert.Contains("Hessian result would take", e.Message);
        Assert.Contains("over the limit of 1,048,576", e.Message);
        model.CheckSecondOrderSize(inputs, 0, [0], SecondOrderKind.Laplacian, includeJacobian: true);
    }

    /// <summary>
    /// Values whose first axis merges the batch with another (torch's attention works on [B·heads, T, d]): the contraction
    /// serves them where each sample's elements stay together, and the forward method where the merge interleaves
    /// samples (heads first), on which the contraction would mix samples up.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AMergedBatchAxisIsContractedOnlyWhereSamplesStayTogether(bool sampleMajor)
    {
        var g = new OnnxBuilder();
        var x = g.X(3, 2, 3);
        var rows = g.Node("Reshape", [sampleMajor ? x : g.Node("Transpose", [x], ("perm", new long[] { 1, 0, 2 })), g.Ints(-1, 3)]);
        var curved = g.Node("Mul", [g.Node("Tanh", [rows]), g.Node("Sin", [rows])]);
        var back = sampleMajor ? curved : g.Node("Transpose", [g.Node("Reshape", [curved, g.Ints(2, -1, 3)])], ("perm", new long[] { 1, 0, 2 }));
        g.Node("Reshape", [back, g.Ints(-1, 6)]);
        // By the count alone (21 entries against 18 directions would otherwise be timed, either method winning).
        using var model = ModelVersion.Load("merged", 1, g.ToBytes(), new EngineLimits { CalibrateAuto = false }, computeType: ScalarType.Float64);
        using var scope = NewDisposeScope();
        var inputs = new[] { tensor(g.Inputs[0].Data, g.Inputs[0].Shape, ScalarType.Float64) };

        Assert.Equal(sampleMajor ? HessianMethod.Contracted : HessianMethod.Forward, model.HessianMethodFor(inputs, 0, [0]));
        var forward = model.SecondOrderTensors(inputs, 0, [0], SecondOrderKind.Hessian, method: HessianMethod.Forward).Derivatives[0];
        var served = model.SecondOrderTensors(inputs, 0, [0], SecondOrderKind.Hessian).Derivatives[0];
        Assert.True(served.allclose(forward, rtol: 1e-10, atol: 1e-12));
        // The contraction forced onto the interleaved layout gives other numbers: the case the check is there for.
        var contracted = model.SecondOrderTensors(inputs, 0, [0], SecondOrderKind.Hessian, method: HessianMethod.Contracted).Derivatives[0];
        Assert.Equal(sampleMajor, contracted.allclose(forward, rtol: 1e-10, atol: 1e-12));
    }

    [Theory]
    [InlineData("two_inputs", 1)]
    [InlineData("boundary_pinn", 0)]
    public void NearTheBalanceTheMethodIsTimedOnceAndEitherGivesTheSameHessian(string name, int wrt)
    {
        // two_inputs' x: 36 entries against 16 directions; boundary_pinn: 6 against 5. Which wins depends on the machine.
        using var model = Load(name);
        using var scope = NewDisposeScope();
        var inputs = Inputs(Fixtures.Load(name), model);
        var of = AllOutputs(model);
        var chosen = model.HessianMethodFor(inputs, wrt, of);
        Assert.Equal(chosen, model.HessianMethodFor(inputs, wrt, of));
        var served = model.SecondOrderTensors(inputs, wrt, of, SecondOrderKind.Hessian).Derivatives;
        foreach (var method in new[] { HessianMethod.Forward, HessianMethod.Contracted })
        {
            var other = model.SecondOrderTensors(inputs, wrt, of, SecondOrderKind.Hessian, method: method).Derivatives;
            for (int o = 0; o < of.Length; o++) Assert.True(served[o].allclose(other[o], rtol: 1e-9, atol: 1e-12), $"{name}: served ({chosen}) against {method}");
        }
    }

    [Fact]
    public void AttentionsMergedHeadsAreContracted()
    {
        using var model = Load("attention");
        using var scope = NewDisposeScope();
        Assert.Equal(HessianMethod.Contracted, model.HessianMethodFor(Inputs(Fixtures.Load("attention"), model), 0, [0]));
    }
}
