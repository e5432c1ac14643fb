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
    }
}
