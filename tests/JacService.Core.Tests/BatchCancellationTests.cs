using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Planning;
using JacService.Testing;
using Xunit;

namespace JacService.Core.Tests;

/// <summary>A pass stops at its next op once the running batch's token is cancelled, in every mode, and only inside the scope.</summary>
public sealed class BatchCancellationTests
{
    [Theory]
    [InlineData(DerivativeMode.Forward)]
    [InlineData(DerivativeMode.Reverse)]
    public void ACancelledBatchStopsAndTheThreadServesOnAfterwards(DerivativeMode mode)
    {
        using var model = ModelVersion.Load("mlp_tanh", 1, File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh")), new EngineLimits());
        var rng = new Random(3);
        var x = new[] { new HostTensor([4, 32], Enumerable.Range(0, 4 * 32).Select(_ => (float)rng.NextDouble()).ToArray()) };
        using var gone = new CancellationTokenSource();
        gone.Cancel();
        using (BatchCancellation.Enter(gone.Token))
        {
            Assert.Throws<OperationCanceledException>(() => model.Jacobian(x, 0, [0], mode));
            Assert.Throws<OperationCanceledException>(() => model.Hessian(x, 0, [0], includeJacobian: false));
        }
        using (BatchCancellation.Enter(CancellationToken.None))
            Assert.Equal(4 * 16 * 32, model.Jacobian(x, 0, [0], mode).Jacobians.Values.Single().Data.Length);
        Assert.Equal(4 * 16 * 32, model.Jacobian(x, 0, [0], mode).Jacobians.Values.Single().Data.Length);
        // A stop is no reason a derivative graph cannot be compiled: the graphs the cancelled calls began serve afterwards.
        Assert.All(model.CompiledDerivatives, e => Assert.True(e.Compiled, $"{e.Kind} {e.Mode}: {e.Note}"));
    }

    /// <summary>
    /// ONNX Runtime runs a whole graph in one native call; an abandoned batch stops it between nodes too. Forty products
    /// of [2048, 1024] by [1024, 1024] take seconds in one Predict, abandoned 100 ms in: a run that went on to the end
    /// would return instead of throwing.
    /// </summary>
    [Fact]
    public void AnOnnxRuntimeRunStopsPartWayWhenItsBatchIsAbandoned()
    {
        const int Products = 40;
        var nodes = Enumerable.Range(0, Products)
            .Select(i => HostileModels.Node("MatMul", $"m{i}", [i == 0 ? "x" : $"v{i - 1}", "w"], i == Products - 1 ? "y" : $"v{i}")).ToArray();
        var bytes = HostileModels.Model(nodes, inputShape: [-1, 1024], initializers: [HostileModels.Floats("w", 1024, 1024)]);
        using var model = ModelVersion.Load("products", 1, bytes, new EngineLimits());
        Assert.Equal("onnxruntime", model.PredictRuntime);
        using var gone = new CancellationTokenSource();
        // A thread of its own, not CancelAfter's timer: on the thread pool, which the suite's parallel tests can keep busy,
        // the timer once fired only after the run had ended.
        var canceller = new Thread(() =>
        {
            Thread.Sleep(100);
            gone.Cancel();
        });
        using (BatchCancellation.Enter(gone.Token))
        {
            canceller.Start();
            Assert.Throws<OperationCanceledException>(() => model.Predict([new HostTensor([2048, 1024], new float[2048 * 1024])]));
        }
        canceller.Join();
        // The session serves on, with its shared options untouched.
        using (BatchCancellation.Enter(CancellationToken.None))
            Assert.Equal(2 * 1024, model.Predict([new HostTensor([2, 1024], new float[2 * 1024])]).Outputs["y"].Data.Length);
    }
}
