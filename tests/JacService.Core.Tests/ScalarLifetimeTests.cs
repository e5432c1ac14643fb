using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Testing;
using TorchSharp;

namespace JacService.Core.Tests;

/// <summary>
/// Scalar operands survive garbage collection in the middle of a pass. TorchSharp hands libtorch a Scalar's native
/// handle without keeping the managed Scalar alive; a rule that made its Scalars by implicit conversion (x * 0.5) had
/// them finalized under load while libtorch read them, and the pass failed with a c10 Scalar assert.
/// </summary>
public class ScalarLifetimeTests
{
    /// <summary>
    /// Through the engine, not ONNX Runtime (which serves Predict): the forward pass and the reverse rules, layer
    /// normalisation's and the tiled pooling's among them (small_cnn), each pass equal to the first.
    /// </summary>
    [Theory]
    [InlineData("layernorm_gelu")]
    [InlineData("small_cnn")]
    public async Task PassesStayCorrectWhileAnotherThreadCollects(string name)
    {
        var reference = Fixtures.Load(name);
        using var model = ModelVersion.Load(name, 1, File.ReadAllBytes(Fixtures.ModelPath(name)), new EngineLimits());
        var inputs = model.ValidateInputs(reference.Inputs.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape, p.Value.Floats)), batched: true);
        int wrt = model.ResolveWrt(model.Inputs[0].Name);
        var of = model.ResolveOf([]);
        EngineResult Pass() => model.Jacobian(inputs, wrt, of, DerivativeMode.Reverse);
        EngineResult first;
        using (torch.NewDisposeScope()) first = Pass();
        // Workers run for 3 s and at least 50 passes each; the collector runs until they are done.
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        using var done = new CancellationTokenSource();
        var collector = Task.Run(() =>
        {
            while (!done.IsCancellationRequested)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
        });
        var workers = Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
        {
            int passes = 0;
            while (!stop.IsCancellationRequested || passes < 50)
            {
                using var scope = torch.NewDisposeScope();
                var result = Pass();
                foreach (var (key, expected) in first.Jacobians)
                {
                    float scale = expected.Data.Max(MathF.Abs), worst = expected.Data.Zip(result.Jacobians[key].Data, (a, b) => MathF.Abs(a - b)).Max();
                    Assert.True(worst <= 1e-5f * scale, $"{name} {key}: a pass differs from the first by {worst} (largest entry {scale})");
                }
                passes++;
            }
            return passes;
        })).ToArray();
        try
        {
            await Task.WhenAll(workers);
        }
        finally
        {
            done.Cancel();
            await collector;
        }
    }
}
