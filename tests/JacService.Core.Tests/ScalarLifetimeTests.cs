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
    [Fact]
    public async Task PassesStayCorrectWhileAnotherThreadCollects()
    {
        var reference = Fixtures.Load("layernorm_gelu");
        using var model = ModelVersion.Load("layernorm_gelu", 1, File.ReadAllBytes(Fixtures.ModelPath("layernorm_gelu")), new EngineLimits());
        var inputs = model.ValidateInputs(reference.Inputs.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape, p.Value.Floats)), batched: true);
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
                var result = model.Predict(inputs);
                Compare.Close(reference.Outputs["y"], result.Outputs["y"].Shape, result.Outputs["y"].Data, 1e-4, "layernorm_gelu.y");
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
