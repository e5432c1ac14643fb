using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Testing;
using TorchSharp;

namespace JacService.Core.Tests;

/// <summary>Whole exported models through the engine, against functorch's float64 references.</summary>
public class FixtureModelTests
{
    public static TheoryData<string> Models => new(Fixtures.Names);

    private static ModelVersion Load(string name) =>
        ModelVersion.Load(name, 1, File.ReadAllBytes(Fixtures.ModelPath(name)), new EngineLimits());

    [Theory]
    [MemberData(nameof(Models))]
    public void PredictMatchesTorch(string name)
    {
        var reference = Fixtures.Load(name);
        using var model = Load(name);
        using var scope = torch.NewDisposeScope();
        var inputs = model.ValidateInputs(reference.Inputs.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape, p.Value.Floats)), batched: true);
        var result = model.Predict(inputs);
        foreach (var (output, expected) in reference.Outputs)
            Compare.Close(expected, result.Outputs[output].Shape, result.Outputs[output].Data, 1e-4, $"{name}.{output}");
    }

    /// <summary>
    /// Every model reports each output's per-sample shape as its reference has it: torch 1.13 leaves upsampler's open
    /// (it infers no shape through a Resize to computed sizes), and the batch-1 plan fills it in.
    /// </summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void OutputsReportTheirPerSampleShapes(string name)
    {
        var reference = Fixtures.Load(name);
        using var model = Load(name);
        foreach (var output in model.Outputs)
            Assert.Equal([-1, .. reference.Outputs[output.Name].Shape.Skip(1)], output.Shape);
        if (name == "upsampler") Assert.Equal([-1, -1], model.Graph.Outputs[0].Shape);
    }

    public static TheoryData<string, DerivativeMode> ModelsAndModes
    {
        get
        {
            var data = new TheoryData<string, DerivativeMode>();
            foreach (var name in Fixtures.Names)
                foreach (var mode in new[] { DerivativeMode.Forward, DerivativeMode.Reverse, DerivativeMode.Auto }) data.Add(name, mode);
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(ModelsAndModes))]
    public void BatchJacobianMatchesFunctorch(string name, DerivativeMode mode)
    {
        var reference = Fixtures.Load(name);
        using var model = Load(name);
        using var scope = torch.NewDisposeScope();
        var inputs = model.ValidateInputs(reference.Inputs.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape, p.Value.Floats)), batched: true);
        foreach (var (wrt, perOutput) in reference.Jacobians)
        {
            var result = model.Jacobian(inputs, model.ResolveWrt(wrt), model.ResolveOf([]), mode);
            Assert.Equal(perOutput.Keys.Order(), result.Jacobians.Keys.Order());
            Assert.True(mode == DerivativeMode.Auto ? result.Mode is DerivativeMode.Forward or DerivativeMode.Reverse : result.Mode == mode,
                $"asked for {mode}, ran {result.Mode}");
            foreach (var (output, expected) in perOutput)
                Compare.Close(expected, result.Jacobians[output].Shape, result.Jacobians[output].Data, 1e-4, $"{name} d{output}/d{wrt} ({result.Mode})");
        }
    }

    [Theory]
    [MemberData(nameof(ModelsAndModes))]
    public void ChunkedJacobianEqualsUnchunked(string name, DerivativeMode mode)
    {
        // A budget of 256 KiB forces the basis (and the batch) to be split; the stitched result must not change.
        var reference = Fixtures.Load(name);
        using var whole = Load(name);
        using var chunked = ModelVersion.Load(name, 1, File.ReadAllBytes(Fixtures.ModelPath(name)), new EngineLimits { WorkingMemoryBytes = 256 << 10, LargestTemporaryBytes = 16 << 10 });
        using var scope = torch.NewDisposeScope();
        var host = reference.Inputs.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape, p.Value.Floats));
        var wrt = whole.ResolveWrt(reference.Jacobians.Keys.First());
        var a = whole.Jacobian(whole.ValidateInputs(host, true), wrt, whole.ResolveOf([]), mode);
        var b = chunked.Jacobian(chunked.ValidateInputs(host, true), wrt, chunked.ResolveOf([]), mode);
        Assert.Equal(a.Jacobians.Keys.Order(), b.Jacobians.Keys.Order());
        foreach (var (output, jac) in a.Jacobians)
        {
            Assert.Equal(jac.Shape, b.Jacobians[output].Shape);
            for (int i = 0; i < jac.Data.Length; i++) Assert.Equal(jac.Data[i], b.Jacobians[output].Data[i], 1e-5f);
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void JvpAndVjpReproduceJacobianColumnsAndRows(string name)
    {
        // Jvp along basis vector e_j must give column j of every Jacobian; Vjp of e_i at one output row i.
        var reference = Fixtures.Load(name);
        using var model = Load(name);
        using var scope = torch.NewDisposeScope();
        var inputs = model.ValidateInputs(reference.Inputs.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape, p.Value.Floats)), batched: true);
        long batch = inputs[0].Shape[0];
        foreach (var (wrtName, perOutput) in reference.Jacobians)
        {
            int wrt = model.ResolveWrt(wrtName);
            var of = model.ResolveOf([]);
            var inShape = inputs[wrt].Shape[1..];
            long n = inShape.Aggregate(1L, (p, d) => p * d);
            // All n basis directions at once, as T directions per sample.
            var basis = new float[batch * n * n];
            for (long b = 0; b < batch; b++) for (long j = 0; j < n; j++) basis[(b * n + j) * n + j] = 1;
            var tangents = new HostTensor([batch, n, .. inShape], basis);
            Assert.Equal(n, model.Requests.ValidateTangents(tangents, inputs, wrt));
            var jvp = model.Jvp(inputs, wrt, of, tangents);
            foreach (var (output, expected) in perOutput)
            {
                // expected [B, ..out, ..in] -> [B, n, ..out] to match Jvp's [B, T, ..out].
                var outShape = expected.Shape[1..^inShape.Length];
                long m = outShape.Aggregate(1L, (p, d) => p * d);
                var columns = new double[batch * n * m];
                for (long b = 0; b < batch; b++) for (long i = 0; i < m; i++) for (long j = 0; j < n; j++)
                    columns[(b * n + j) * m + i] = expected.Data[(b * m + i) * n + j];
                Compare.Close(new RefTensor([batch, n, .. outShape], columns), jvp.Jacobians[output].Shape, jvp.Jacobians[output].Data, 1e-4,
                    $"{name} Jvp d{output}/d{wrtName}");

                var rows = new float[batch * m * m];
                for (long b = 0; b < batch; b++) for (long i = 0; i < m; i++) rows[(b * m + i) * m + i] = 1;
                var cotangents = new Dictionary<string, HostTensor> { [output] = new([batch, m, .. outShape], rows) };
                var (ordered, vjpOf, t) = model.Requests.ValidateCotangents(cotangents, [output], inputs, o => model.OutputSampleShape(inputs, o));
                Assert.Equal(m, t);
                var vjp = model.Vjp(inputs, wrt, vjpOf, ordered);
                Compare.Close(new RefTensor([batch, m, .. inShape], expected.Data), vjp.Jacobians[wrtName].Shape, vjp.Jacobians[wrtName].Data, 1e-4,
                    $"{name} Vjp d{output}/d{wrtName}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void JvpAndVjpMatchFunctorch(string name)
    {
        // T = 2 directions per sample, and the first direction alone in the one-per-sample layout.
        var reference = Fixtures.Load(name);
        using var model = Load(name);
        using var scope = torch.NewDisposeScope();
        var inputs = model.ValidateInputs(reference.Inputs.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape, p.Value.Floats)), batched: true);
        foreach (var (wrtName, jvp) in reference.Jvp)
        {
            int wrt = model.ResolveWrt(wrtName);
            var of = model.ResolveOf([]);
            var both = model.Jvp(inputs, wrt, of, new HostTensor(jvp.Tangents.Shape, jvp.Tangents.Floats));
            var first = model.Jvp(inputs, wrt, of, FirstDirection(jvp.Tangents));
            Assert.Equal(jvp.Outputs.Keys.Order(), both.Jacobians.Keys.Order());
            foreach (var (output, expected) in jvp.Outputs)
            {
                Compare.Close(expected, both.Jacobians[output].Shape, both.Jacobians[output].Data, 1e-4, $"{name} jvp d{output}/d{wrtName}");
                var one = FirstDirection(expected);
                Compare.Close(new RefTensor(one.Shape, one.Data.Select(v => (double)v).ToArray()), first.Jacobians[output].Shape,
                    first.Jacobians[output].Data, 1e-4, $"{name} jvp (one direction) d{output}/d{wrtName}");
            }
        }
        foreach (var (wrtName, vjp) in reference.Vjp)
        {
            int wrt = model.ResolveWrt(wrtName);
            var cotangents = vjp.Cotangents.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape, p.Value.Floats));
            var (ordered, of, t) = model.Requests.ValidateCotangents(cotangents, [], inputs, o => model.OutputSampleShape(inputs, o));
            Assert.Equal(2, t);
            var result = model.Vjp(inputs, wrt, of, ordered);
            Compare.Close(vjp.Result, result.Jacobians[wrtName].Shape, result.Jacobians[wrtName].Data, 1e-4, $"{name} vjp d/d{wrtName}");
        }
    }

    /// <summary>Direction 0 of a [B, T, ..] tensor as [B, ..].</summary>
    private static HostTensor FirstDirection(RefTensor t)
    {
        long batch = t.Shape[0], directions = t.Shape[1], per = t.Data.Length / (batch * directions);
        var data = new float[batch * per];
        for (long b = 0; b < batch; b++)
            for (long i = 0; i < per; i++) data[b * per + i] = (float)t.Data[(b * directions) * per + i];
        return new HostTensor([batch, .. t.Shape[2..]], data);
    }
}
