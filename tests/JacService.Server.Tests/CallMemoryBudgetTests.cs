using System.Diagnostics.Metrics;
using JacService.Core;
using JacService.Core.Models;
using JacService.Server.Admission;
using JacService.Server.Batching;
using JacService.Server.Execution;
using JacService.Server.Grpc;
using JacService.Server.Models;
using JacService.Server.Telemetry;
using JacService.Testing;
using Microsoft.Extensions.Options;
using ProtoMode = JacService.Protos.V1.DerivativeMode;

namespace JacService.Server.Tests;

public class CallMemoryBudgetTests
{
    private const long MiB = 1 << 20;

    private static CallMemoryBudget Budget(int mib) => new(Options.Create(new LimitsOptions { MaxInFlightMiB = mib }), new Meter("JacService.Tests"));

    [Fact]
    public void HoldsUpToTheLimitAndRefusesWhatWouldPassIt()
    {
        var budget = Budget(8);
        using var first = budget.Open();
        Assert.True(first.TryHold(5 * MiB));
        var second = budget.Open();
        Assert.True(second.TryHold(2 * MiB));
        using var third = budget.Open();
        Assert.False(third.TryHold(MiB + 1));
        Assert.Equal(7 * MiB, budget.Held);
        second.Dispose();
        Assert.Equal(5 * MiB, budget.Held);
        Assert.True(third.TryHold(MiB + 1));
    }

    [Fact]
    public void ACallTakesWhatItNeedsWhenNoOtherCallHoldsAnything()
    {
        var budget = Budget(8);
        using (var call = budget.Open())
        {
            // Its request message, then a result over the whole budget: refused always, it could never be served.
            Assert.True(call.TryHold(2 * MiB));
            Assert.True(call.TryHold(20 * MiB));
            using var other = budget.Open();
            Assert.False(other.TryHold(2 * MiB));
        }
        Assert.Equal(0, budget.Held);
    }

    [Fact]
    public void AlwaysTakesUpTo1MiBAtATime()
    {
        // Held by large messages whose bodies trickle in, the budget still lets single samples and ordinary batches through.
        var budget = Budget(8);
        using var trickling = budget.Open();
        Assert.True(trickling.TryHold(64 * MiB));
        using var small = budget.Open();
        Assert.True(small.TryHold(MiB));
        Assert.True(small.TryHold(100));
        Assert.False(small.TryHold(MiB + 1));
        Assert.Equal(65 * MiB + 100, budget.Held);
    }

    [Fact]
    public async Task AJacobianHoldsItsResultSizedByValidationAndTheSizeLimitHoldsWithoutAHold()
    {
        // mlp_tanh: 32 inputs, 16 outputs; a row's result is 16 outputs and 16 x 32 Jacobian entries, 2,112 bytes.
        var limits = new EngineLimits { MaxResultBytes = 100_000 };
        var model = ModelVersion.Load("mlp_tanh", 1, File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh")), limits);
        var registry = new ModelRegistry(TimeProvider.System);
        await using var batcher = new ModelBatcher(model, new BatchingOptions { ExecutorThreads = 1 }, TimeProvider.System,
            new JacServiceMetrics(new Meter("JacService.Tests.CallMemory")));
        registry.Set(new ModelEntry("mlp_tanh", 1, ModelState.Ready, "", new VersionLifetime(model, batcher)));
        JacobianCall Call(int rows) => JacobianCall.Prepare(registry, "mlp_tanh", "",
            new Dictionary<string, HostTensor> { ["x"] = new([rows, 32], new float[rows * 32]) }, "", [], ProtoMode.Auto, batched: true);

        var budget = Budget(8);
        using (var memory = budget.Open())
        using (var call = Call(10))
        {
            var result = await call.SubmitAsync(null, CancellationToken.None, memory);
            Assert.Equal([10, 16, 32], result.Jacobians["y"].Shape);
            Assert.Equal(10 * 2112, budget.Held);
        }
        Assert.Equal(0, budget.Held);
        // Over MaxResultBytes, with a hold and without one (a call made in-process has none).
        using var large = Call(100);
        Assert.Throws<ResultTooLargeException>(() => { _ = large.SubmitAsync(null, CancellationToken.None, budget.Open()); });
        Assert.Throws<ResultTooLargeException>(() => { _ = large.SubmitAsync(null, CancellationToken.None, null); });
    }

    [Fact]
    public void HoldRefusesTheCallWithWhatItWouldHaveTaken()
    {
        var budget = Budget(8);
        using var first = budget.Open();
        first.Hold(6 * MiB, "request message");
        using var second = budget.Open();
        var refused = Assert.Throws<CallMemoryExceededException>(() => second.Hold(3 * MiB, "result"));
        Assert.Equal("the server holds 6.0 MiB for calls in progress, and this call's result of 3.0 MiB would pass " +
            "Limits:MaxInFlightMiB (8.0 MiB); retry when calls in progress have answered", refused.Message);
    }
}
