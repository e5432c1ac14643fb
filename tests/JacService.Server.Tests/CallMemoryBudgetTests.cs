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
using Grpc.Core;
using Microsoft.Extensions.Options;
using ProtoMode = JacService.Protos.V1.DerivativeMode;

namespace JacService.Server.Tests;

public class CallMemoryBudgetTests
{
    private const long MiB = 1 << 20;

    private static readonly JacServiceMetrics Metrics = new(new Meter("JacService.Tests.CallMemory"));

    /// <summary>mlp_tanh served from a registry, as the server holds it; the batcher is the caller's to dispose.</summary>
    private static (ModelRegistry, ModelBatcher) ServedMlp(EngineLimits limits)
    {
        var model = ModelVersion.Load("mlp_tanh", 1, File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh")), limits);
        var registry = new ModelRegistry(TimeProvider.System);
        var batcher = new ModelBatcher(model, new BatchingOptions { ExecutorThreads = 1 }, TimeProvider.System, Metrics);
        registry.Set(new ModelEntry("mlp_tanh", 1, ModelState.Ready, "", new VersionLifetime(model, batcher)));
        return (registry, batcher);
    }

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
        var (registry, batcher) = ServedMlp(new EngineLimits { MaxResultBytes = 100_000 });
        await using var served = batcher;
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
    public async Task APredictHoldsItsOutputsAndTheSizeLimitRefusesThemBeforeAnyWork()
    {
        // mlp_tanh's outputs are 16 floats a row, 64 bytes: 1,562 rows fit under 100,000 bytes, 1,563 do not.
        var (registry, batcher) = ServedMlp(new EngineLimits { MaxResultBytes = 100_000 });
        await using var served = batcher;
        using var lease = registry.Acquire("mlp_tanh", "");
        var entry = lease.Entry;
        HostTensor[] Rows(int rows) => [new([rows, 32], new float[rows * 32])];

        var budget = Budget(8);
        using (var memory = budget.Open())
        {
            var result = await PredictCall.SubmitAsync(entry, Rows(1562), null, CancellationToken.None, memory);
            Assert.Equal([1562, 16], result.Outputs["y"].Shape);
            Assert.Equal(1562 * 64, budget.Held);
        }
        Assert.Equal(0, budget.Held);
        var refused = Assert.Throws<ResultTooLargeException>(() => { _ = PredictCall.SubmitAsync(entry, Rows(1563), null, CancellationToken.None, budget.Open()); });
        Assert.Equal("the outputs would take 100,032 bytes (1563 samples x 16 floats), over the limit of 100,000; send fewer samples per request", refused.Message);
        Assert.Throws<ResultTooLargeException>(() => { _ = PredictCall.SubmitAsync(entry, Rows(1563), null, CancellationToken.None, null); });
        Assert.Equal(0, budget.Held);
        Assert.Equal(0, batcher.Load.QueuedRows);
    }

    [Fact]
    public async Task AStreamHoldsItsAnswersUntilWrittenAndLetsTheUnwrittenGoWhenItEnds()
    {
        var (registry, batcher) = ServedMlp(new EngineLimits());
        await using var served = batcher;
        var budget = Budget(8);
        var limits = Options.Create(new LimitsOptions { MaxStreamRequestsInFlight = 8 });
        var errors = new ErrorMappingInterceptor(new CapturingLogger<ErrorMappingInterceptor>(),
            new CallerErrorLog(Options.Create(new CallerErrorsOptions()), TimeProvider.System, new CapturingLogger<CallerErrorLog>()));
        var streams = new JacobianStreams(registry, limits, errors, Metrics, Quotas.StreamMessageQuota.None, budget);

        var sample = new Protos.V1.JacobianRequest { Model = "mlp_tanh", Inputs = { ["x"] = new Protos.V1.Tensor { Shape = { 32 }, Data = { new float[32] } } } };
        using var cancel = new CancellationTokenSource();
        var writer = new StuckWriter();
        var run = streams.Run(new Requests(Enumerable.Repeat(sample, 20), cancel.Token), writer, new FakeCallContext(cancel.Token));

        // The reader stops at the window: 8 answers computed and held (each its message and 2,112 bytes of result), the first
        // waiting on a writer that never finishes.
        long each = sample.CalculateSize() + 2112;
        for (var deadline = DateTime.UtcNow.AddSeconds(20); (budget.Held < 8 * each || writer.Started == 0) && DateTime.UtcNow < deadline; )
            await Task.Delay(20);
        Assert.Equal(8 * each, budget.Held);
        Assert.Equal(1, writer.Started);
        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
        for (var deadline = DateTime.UtcNow.AddSeconds(20); budget.Held > 0 && DateTime.UtcNow < deadline; ) await Task.Delay(20);
        Assert.Equal(0, budget.Held);
    }

    /// <summary>A reader of the given requests, then a stream that stays open until cancelled.</summary>
    private sealed class Requests(IEnumerable<Protos.V1.JacobianRequest> requests, CancellationToken end) : IAsyncStreamReader<Protos.V1.JacobianRequest>
    {
        private readonly IEnumerator<Protos.V1.JacobianRequest> _next = requests.GetEnumerator();
        public Protos.V1.JacobianRequest Current => _next.Current;

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            if (_next.MoveNext()) return true;
            await Task.Delay(Timeout.Infinite, CancellationTokenSource.CreateLinkedTokenSource(end, cancellationToken).Token);
            return false;
        }
    }

    /// <summary>A client that reads nothing: every write waits until the call is cancelled.</summary>
    private sealed class StuckWriter : IServerStreamWriter<Protos.V1.Wire.JacobianStreamResponse>
    {
        public int Started;
        public WriteOptions? WriteOptions { get; set; }

        public Task WriteAsync(Protos.V1.Wire.JacobianStreamResponse message) => WriteAsync(message, CancellationToken.None);

        public Task WriteAsync(Protos.V1.Wire.JacobianStreamResponse message, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref Started);
            return Task.Delay(Timeout.Infinite, cancellationToken);
        }
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
