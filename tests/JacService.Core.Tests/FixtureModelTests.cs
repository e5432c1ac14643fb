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

    [Theory]
    [MemberData(nameof(Models))]
    public void BatchJacobianMatchesFunctorch(string name)
    {
        var reference = Fixtures.Load(name);
        using var model = Load(name);
        using var scope = torch.NewDisposeScope();
        var inputs = model.ValidateInputs(reference.Inputs.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape, p.Value.Floats)), batched: true);
        foreach (var (wrt, perOutput) in reference.Jacobians)
        {
            var result = model.Jacobian(inputs, model.ResolveWrt(wrt), model.ResolveOf([]));
            foreach (var (output, expected) in perOutput)
                Compare.Close(expected, result.Jacobians[output].Shape, result.Jacobians[output].Data, 1e-4, $"{name} d{output}/d{wrt}");
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void ChunkedJacobianEqualsUnchunked(string name)
    {
        // A budget of 256 KiB forces the basis (and the batch) to be split; the stitched result must not change.
        var reference = Fixtures.Load(name);
        using var whole = Load(name);
        using var chunked = ModelVersion.Load(name, 1, File.ReadAllBytes(Fixtures.ModelPath(name)), new EngineLimits { WorkingMemoryBytes = 256 << 10 });
        using var scope = torch.NewDisposeScope();
        var host = reference.Inputs.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape, p.Value.Floats));
        var wrt = whole.ResolveWrt(reference.Jacobians.Keys.First());
        var a = whole.Jacobian(whole.ValidateInputs(host, true), wrt, whole.ResolveOf([]));
        var b = chunked.Jacobian(chunked.ValidateInputs(host, true), wrt, chunked.ResolveOf([]));
        foreach (var (output, jac) in a.Jacobians)
        {
            Assert.Equal(jac.Shape, b.Jacobians[output].Shape);
            for (int i = 0; i < jac.Data.Length; i++) Assert.Equal(jac.Data[i], b.Jacobians[output].Data[i], 1e-5f);
        }
    }
}
