using JacService.Core.Models;
using JacService.Testing;
using TorchSharp;

namespace JacService.Core.Tests;

/// <summary>
/// Hessians and Laplacians of the exported fixture models through the engine, by the interpreter's second-order rules
/// and by compiled graphs, against functorch's float64 references (tests/fixtures/README.md, "Second order"), plus the
/// references' own consistency. Every model but the convolutional ones (small_cnn, conv_decoder) has them.
/// </summary>
public class SecondOrderFixtureTests
{
    // The project's float32 criterion: max abs error <= 1e-4 x max |reference| per tensor. It holds for second
    // derivatives too: functorch's own float32 Hessians and Laplacians are within 6e-7 of the largest reference entry
    // on every fixture (make_fixtures.py checks and prints it), so no looser bound is needed.
    private const double Tolerance = 1e-4;

    // Reference against itself: float64 on both sides, only summation order differs (make_fixtures.py: 1e-12).
    private const double ReferenceTolerance = 1e-9;

    public static TheoryData<string> Models => new(Fixtures.SecondOrderNames);

    /// <summary>Each model through the interpreter's rules, and through compiled graphs (where they compile; see <see cref="Load"/>).</summary>
    public static TheoryData<string, bool> ModelsBothWays
    {
        get
        {
            var data = new TheoryData<string, bool>();
            foreach (var name in Fixtures.SecondOrderNames)
            {
                data.Add(name, false);
                data.Add(name, true);
            }
            return data;
        }
    }

    public static TheoryData<string, bool, bool> ModelsBothWaysWithAndWithoutJacobian
    {
        get
        {
            var data = new TheoryData<string, bool, bool>();
            foreach (var name in Fixtures.SecondOrderNames)
                foreach (bool compiled in new[] { false, true })
                {
                    data.Add(name, compiled, false);
                    data.Add(name, compiled, true);
                }
            return data;
        }
    }

    /// <summary>
    /// Fixtures whose second derivatives the interpreter serves even with compiled graphs on, and why: none at present
    /// (sequences' was, until its Jacobian graph's Scans declared their step counts, which reading it back needs).
    /// </summary>
    private static readonly Dictionary<string, string> NotCompiled = [];

    /// <summary>The fixture with compiled graphs serving wherever they compile, or with the interpreter alone.</summary>
    private static ModelVersion Load(string name, bool compiled) =>
        ModelVersion.Load(name, 1, File.ReadAllBytes(Fixtures.ModelPath(name)),
            compiled ? new EngineLimits { CalibrateAuto = false } : new EngineLimits { CompileDerivatives = false });

    /// <summary>The result, which came from a compiled graph where one was asked for and the fixture has one; else from the interpreter, with the reason on record.</summary>
    private static EngineResult Served(string name, bool compiled, ModelVersion model, EngineResult result)
    {
        bool expected = compiled && !NotCompiled.ContainsKey(name);
        Assert.True(expected == result.Compiled, $"{name}: served by {(result.Compiled ? "a compiled graph" : "the interpreter")}; " +
            string.Join("; ", model.CompiledDerivatives.Select(e => $"{e.Kind}: {e.Note}")));
        if (compiled && !expected) Assert.Contains(model.CompiledDerivatives, e => e.Note.Contains(NotCompiled[name]));
        return result;
    }

    /// <summary>The first <paramref name="samples"/> samples of the reference inputs, as a request would send them.</summary>
    private static HostTensor[] Inputs(ModelVersion model, Reference reference, int samples) =>
        model.ValidateInputs(reference.Inputs.ToDictionary(p => p.Key, p =>
        {
            var first = p.Value.Take(samples);
            return new HostTensor(first.Shape, first.Floats);
        }), batched: true);

    /// <summary>How many samples have stored Hessians (all of the batch but for wide_classifier).</summary>
    private static int HessianSamples(Reference reference) => (int)reference.Hessians!.First().Value.First().Value.Shape[0];

    /// <summary>The convolutional models' Hessians would be too large to store (their inputs are images).</summary>
    private static readonly string[] WithoutSecondOrder = ["conv_decoder", "small_cnn"];

    [Fact]
    public void EveryModelButTheConvolutionalOnesHasSecondOrderReferences()
    {
        Assert.Equal(Fixtures.Names.Except(WithoutSecondOrder), Fixtures.SecondOrderNames);
        foreach (var name in WithoutSecondOrder)
        {
            var reference = Fixtures.Load(name);
            Assert.Null(reference.Hessians);
            Assert.Null(reference.Laplacians);
            Assert.Null(reference.LaplaciansAxes);
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void ReferenceHessiansAreSymmetricAndLaplaciansAreTheirTraces(string name)
    {
        // make_fixtures.py checks the same when it writes the files; this catches a file that was edited, truncated or
        // regenerated by a broken script before an engine test blames the engine for it.
        var r = Fixtures.Load(name);
        Assert.NotNull(r.Hessians);
        Assert.NotNull(r.Laplacians);
        Assert.NotNull(r.LaplaciansAxes);
        var inputs = r.Inputs.Keys.Order().ToArray();
        var outputs = r.Outputs.Keys.Order().ToArray();
        Assert.Equal(inputs, r.Hessians.Keys.Order());
        Assert.Equal(inputs, r.Laplacians.Keys.Order());
        Assert.Equal(inputs, r.LaplaciansAxes.Axes.Keys.Order());
        Assert.Equal(inputs, r.LaplaciansAxes.Values.Keys.Order());
        int samples = HessianSamples(r);
        Assert.InRange(samples, 1, (int)r.Inputs.First().Value.Shape[0]);

        foreach (var wrt in inputs)
        {
            long[] inShape = r.Inputs[wrt].Shape[1..];
            int batch = (int)r.Inputs[wrt].Shape[0], n = Size(inShape);
            int[] axes = r.LaplaciansAxes.Axes[wrt];
            Assert.True(axes.Length > 0 && axes.Length < n, $"{name}: axes for {wrt} are not a proper subset of its {n} elements");
            Assert.Equal(axes.Order().Distinct(), axes);
            Assert.All(axes, a => Assert.InRange(a, 0, n - 1));
            if (name == "pinn") Assert.Equal([0], axes);

            Assert.Equal(outputs, r.Hessians[wrt].Keys.Order());
            foreach (var output in outputs)
            {
                long[] outShape = r.Outputs[output].Shape[1..];
                var hessian = r.Hessians[wrt][output];
                Assert.Equal([samples, .. outShape, .. inShape, .. inShape], hessian.Shape);
                Assert.Equal([batch, .. outShape], r.Laplacians[wrt][output].Shape);
                Assert.Equal([batch, .. outShape], r.LaplaciansAxes.Values[wrt][output].Shape);

                AssertSymmetric(hessian.Data, n, ReferenceTolerance, $"{name} reference d2{output}/d{wrt}2");
                var what = $"{name} reference d2{output}/d{wrt}2";
                CloseDoubles(Trace(hessian.Data, n, null), r.Laplacians[wrt][output].Take(samples).Data, ReferenceTolerance, $"{what}: laplacian vs trace");
                CloseDoubles(Trace(hessian.Data, n, axes), r.LaplaciansAxes.Values[wrt][output].Take(samples).Data, ReferenceTolerance,
                    $"{what}: laplacian over axes [{string.Join(",", axes)}] vs partial trace");
            }
        }
    }

    [Fact]
    public void WideClassifierHessianIsExactlyZero()
    {
        // Gemm + Relu only: no curvature anywhere away from kinks. (relu_classifier's is not zero: its LogSoftmax curves.)
        var r = Fixtures.Load("wide_classifier");
        Assert.All(r.Hessians!["x"]["logits"].Data, v => Assert.Equal(0.0, v));
        Assert.Contains(r.Hessians["x"].Values, h => h.Shape[0] < r.Inputs["x"].Shape[0]);
        Assert.NotEqual(0.0, Fixtures.Load("relu_classifier").Hessians!["x"]["logp"].Data.Max(Math.Abs));
    }

    [Theory]
    [MemberData(nameof(ModelsBothWaysWithAndWithoutJacobian))]
    public void BatchHessianMatchesFunctorch(string name, bool compiled, bool includeJacobian)
    {
        var reference = Fixtures.Load(name);
        int samples = HessianSamples(reference);
        using var model = Load(name, compiled);
        using var scope = torch.NewDisposeScope();
        var inputs = Inputs(model, reference, samples);
        foreach (var (wrtName, perOutput) in reference.Hessians!)
        {
            int wrt = model.ResolveWrt(wrtName);
            var of = model.ResolveOf([]);
            model.CheckSecondOrder(wrt, of);
            int n = Size(inputs[wrt].Shape[1..]);
            var result = Served(name, compiled, model, model.Hessian(inputs, wrt, of, includeJacobian));

            foreach (var (output, expected) in reference.Outputs)
                Compare.Close(expected.Take(samples), result.Outputs[output].Shape, result.Outputs[output].Data, Tolerance, $"{name}.{output}");
            Assert.Equal(perOutput.Keys.Order(), result.SecondOrder.Keys.Order());
            foreach (var (output, expected) in perOutput)
            {
                var hessian = result.SecondOrder[output];
                Compare.Close(expected, hessian.Shape, hessian.Data, Tolerance, $"{name} Hessian d2{output}/d{wrtName}2");
                AssertSymmetric(hessian.Data.Select(v => (double)v).ToArray(), n, Tolerance, $"{name} Hessian d2{output}/d{wrtName}2");
            }
            AssertJacobians(reference, wrtName, samples, includeJacobian, result, $"{name} Hessian");
        }
    }

    [Theory]
    [MemberData(nameof(ModelsBothWaysWithAndWithoutJacobian))]
    public void BatchLaplacianMatchesFunctorch(string name, bool compiled, bool includeJacobian)
    {
        // Every element of wrt (empty axes), every sample of the reference.
        var reference = Fixtures.Load(name);
        int batch = (int)reference.Inputs.First().Value.Shape[0];
        using var model = Load(name, compiled);
        using var scope = torch.NewDisposeScope();
        var inputs = Inputs(model, reference, batch);
        foreach (var (wrtName, perOutput) in reference.Laplacians!)
        {
            int wrt = model.ResolveWrt(wrtName);
            var of = model.ResolveOf([]);
            model.CheckSecondOrder(wrt, of);
            var axes = model.Requests.ResolveAxes([], inputs, wrt);
            Assert.Equal(Enumerable.Range(0, Size(inputs[wrt].Shape[1..])), axes);
            var result = Served(name, compiled, model, model.Laplacian(inputs, wrt, of, axes, includeJacobian));

            foreach (var (output, expected) in reference.Outputs)
                Compare.Close(expected, result.Outputs[output].Shape, result.Outputs[output].Data, Tolerance, $"{name}.{output}");
            Assert.Equal(perOutput.Keys.Order(), result.SecondOrder.Keys.Order());
            foreach (var (output, expected) in perOutput)
                Compare.Close(expected, result.SecondOrder[output].Shape, result.SecondOrder[output].Data, Tolerance, $"{name} Laplacian d2{output}/d{wrtName}2");
            AssertJacobians(reference, wrtName, batch, includeJacobian, result, $"{name} Laplacian");
        }
    }

    [Theory]
    [MemberData(nameof(ModelsBothWays))]
    public void BatchLaplacianOverAxesMatchesFunctorch(string name, bool compiled)
    {
        // A proper subset of wrt's elements: x alone of pinn's xt = (x, t) (u_xx), the even flat indices elsewhere.
        var reference = Fixtures.Load(name);
        int batch = (int)reference.Inputs.First().Value.Shape[0];
        using var model = Load(name, compiled);
        using var scope = torch.NewDisposeScope();
        var inputs = Inputs(model, reference, batch);
        foreach (var (wrtName, perOutput) in reference.LaplaciansAxes!.Values)
        {
            int wrt = model.ResolveWrt(wrtName);
            var of = model.ResolveOf([]);
            var axes = model.Requests.ResolveAxes(reference.LaplaciansAxes.Axes[wrtName].Select(a => (long)a).ToArray(), inputs, wrt);
            Assert.Equal(reference.LaplaciansAxes.Axes[wrtName], axes);
            var result = Served(name, compiled, model, model.Laplacian(inputs, wrt, of, axes, includeJacobian: true));
            foreach (var (output, expected) in perOutput)
                Compare.Close(expected, result.SecondOrder[output].Shape, result.SecondOrder[output].Data, Tolerance,
                    $"{name} Laplacian over axes [{string.Join(",", axes)}] d2{output}/d{wrtName}2");
            AssertJacobians(reference, wrtName, batch, includeJacobian: true, result, $"{name} Laplacian over axes");
        }
    }

    [Theory]
    [MemberData(nameof(ModelsBothWays))]
    public void LaplacianIsTheTraceOfTheHessian(string name, bool compiled)
    {
        // The engine against itself: whatever method computes the Laplacian (e.g. a forward-Laplacian pass), it must be
        // the trace of the engine's own Hessian, over every element and over the reference's axes.
        var reference = Fixtures.Load(name);
        int samples = HessianSamples(reference);
        using var model = Load(name, compiled);
        using var scope = torch.NewDisposeScope();
        var inputs = Inputs(model, reference, samples);
        foreach (var wrtName in reference.Hessians!.Keys)
        {
            int wrt = model.ResolveWrt(wrtName);
            var of = model.ResolveOf([]);
            int n = Size(inputs[wrt].Shape[1..]);
            var hessians = Served(name, compiled, model, model.Hessian(inputs, wrt, of, includeJacobian: false)).SecondOrder;
            foreach (var axes in new[] { model.Requests.ResolveAxes([], inputs, wrt), reference.LaplaciansAxes!.Axes[wrtName] })
            {
                var laplacians = Served(name, compiled, model, model.Laplacian(inputs, wrt, of, axes, includeJacobian: false)).SecondOrder;
                Assert.Equal(hessians.Keys.Order(), laplacians.Keys.Order());
                foreach (var (output, hessian) in hessians)
                {
                    var trace = Trace(hessian.Data.Select(v => (double)v).ToArray(), n, axes);
                    long[] outShape = hessian.Shape[..^(2 * inputs[wrt].Shape[1..].Length)];
                    Compare.Close(new RefTensor(outShape, trace), laplacians[output].Shape, laplacians[output].Data, Tolerance,
                        $"{name} Laplacian over {axes.Length} of {n} elements vs trace of the Hessian d2{output}/d{wrtName}2");
                }
            }
        }
    }

    /// <summary>Jacobians only with includeJacobian, then equal to the reference's (first-order) Jacobians.</summary>
    private static void AssertJacobians(Reference reference, string wrt, int samples, bool includeJacobian, EngineResult result, string what)
    {
        if (!includeJacobian)
        {
            Assert.Empty(result.Jacobians);
            return;
        }
        Assert.Equal(reference.Jacobians[wrt].Keys.Order(), result.Jacobians.Keys.Order());
        foreach (var (output, expected) in reference.Jacobians[wrt])
            Compare.Close(expected.Take(samples), result.Jacobians[output].Shape, result.Jacobians[output].Data, Tolerance,
                $"{what}: Jacobian d{output}/d{wrt}");
    }

    /// <summary>
    /// Sum over j in <paramref name="axes"/> (all n when null) of H[m, j, j], for H = [M, n, n] row-major, M = every
    /// sample and output element: [M].
    /// </summary>
    private static double[] Trace(double[] hessian, int n, int[]? axes)
    {
        int blocks = hessian.Length / (n * n);
        var trace = new double[blocks];
        for (int m = 0; m < blocks; m++)
            foreach (int j in axes ?? Enumerable.Range(0, n))
                trace[m] += hessian[(long)m * n * n + (long)j * n + j];
        return trace;
    }

    /// <summary>max |H[m, j, k] - H[m, k, j]| within <paramref name="tolerance"/> x max |H|.</summary>
    private static void AssertSymmetric(double[] hessian, int n, double tolerance, string what)
    {
        double scale = Math.Max(hessian.Max(Math.Abs), 1e-300), worst = 0;
        for (long m = 0; m < hessian.Length / (n * n); m++)
            for (int j = 0; j < n; j++)
                for (int k = j + 1; k < n; k++)
                    worst = Math.Max(worst, Math.Abs(hessian[m * n * n + j * n + k] - hessian[m * n * n + k * n + j]));
        Assert.True(worst <= tolerance * scale, $"{what}: not symmetric, max |H - Hᵀ| {worst:E3} > {tolerance} x {scale:E3}");
    }

    private static void CloseDoubles(double[] expected, double[] actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = Math.Max(expected.Max(Math.Abs), 1e-300), worst = 0;
        for (int i = 0; i < actual.Length; i++) worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        Assert.True(worst <= tolerance * scale, $"{what}: max abs difference {worst:E3} > {tolerance} x {scale:E3}");
    }

    private static int Size(long[] shape) => (int)shape.Aggregate(1L, (a, d) => a * d);
}
