using JacService.Core.Models;
using JacService.Server.Batching;
using JacService.Server.Grpc;
using Microsoft.Extensions.Time.Testing;

namespace JacService.Server.Tests;

/// <summary>The adaptive batching delay, step by step on a fake clock.</summary>
public class AdaptiveDelayTests
{
    private static readonly TimeSpan Max = TimeSpan.FromMicroseconds(500);
    private static readonly WorkKey Key = new(WorkKind.Jacobian, 0, [0], "3");

    private readonly FakeTimeProvider _clock = new(DateTimeOffset.Parse("2026-01-01T00:00:00Z"));

    private BatchQueue Queue(int max = 64) =>
        new(new BatchingOptions { MaxBatchSize = max, MaxQueueDelayMicroseconds = (int)Max.TotalMicroseconds, AdaptiveDelay = true }, _clock);

    private PendingRequest Request() => new([new HostTensor([1, 3], new float[3])], _clock.GetUtcNow(), null, CancellationToken.None);

    private void Micros(double us) => _clock.Advance(TimeSpan.FromMicroseconds(us));

    /// <summary>Advances the clock to each due time the queue names until it gives a batch; never past the max delay.</summary>
    private Batch TakeWhenDue(BatchQueue queue)
    {
        var start = _clock.GetUtcNow();
        while (true)
        {
            if (queue.TryTakeBatch() is { } batch) return batch;
            var due = queue.NextDue!.Value;
            Assert.True(due - start <= Max, $"due {(due - start).TotalMicroseconds} µs after the last arrival");
            _clock.Advance(due - _clock.GetUtcNow());
        }
    }

    [Fact]
    public void ALoneRequestLeavesAtOnce()
    {
        var queue = Queue();
        queue.TryEnqueue(Key, Request());
        Assert.NotNull(queue.TryTakeBatch());
    }

    [Fact]
    public void ACallerInALoopNeverWaits()
    {
        var queue = Queue();
        for (int call = 0; call < 1000; call++)
        {
            queue.TryEnqueue(Key, Request());
            Assert.Equal(TimeSpan.Zero, queue.Delay(1, _clock.GetUtcNow()));
            Assert.NotNull(queue.TryTakeBatch());
            Micros(400);   // computing
            queue.Done();
            Micros(150);   // the answer travels back, the next request comes
        }
    }

    [Fact]
    public void ABurstFormsBatchesAndMakesTheNextIdleRequestWaitForCompany()
    {
        var queue = Queue(max: 8);
        queue.TryEnqueue(Key, Request());
        var first = queue.TryTakeBatch();
        Assert.Single(first!.Parts);
        // 16 more arrive 5 µs apart while the first runs (one executor thread: nothing else is taken meanwhile).
        for (int i = 0; i < 16; i++)
        {
            Micros(5);
            queue.TryEnqueue(Key, Request());
        }
        Micros(300);
        queue.Done();
        Assert.Equal(8, queue.TryTakeBatch()!.Parts.Count);
        Micros(300);
        queue.Done();
        Assert.Equal(8, queue.TryTakeBatch()!.Parts.Count);
        Micros(300);
        queue.Done();
        Assert.Equal(0, queue.Running);

        // Idle again, but requests have been coming at ~1 per 60 µs of busy time: a lone request now waits for
        // company, no longer than the batch needs to fill at that rate (7 more rows ≈ 420 µs, under the 500 µs max).
        Micros(50);
        queue.TryEnqueue(Key, Request());
        var delay = queue.Delay(1, _clock.GetUtcNow());
        Assert.InRange(delay, TimeSpan.FromMicroseconds(100), Max);
        Assert.Null(queue.TryTakeBatch());
        Micros(40);
        queue.TryEnqueue(Key, Request());
        Assert.Equal(2, TakeWhenDue(queue).Parts.Count);
    }

    [Fact]
    public void WaitingStopsOnceTheLoadHasGone()
    {
        var queue = Queue(max: 8);
        queue.TryEnqueue(Key, Request());
        queue.TryTakeBatch();
        for (int i = 0; i < 50; i++)
        {
            Micros(10);
            queue.TryEnqueue(Key, Request());
        }
        queue.Done();
        while (queue.TryTakeBatch() is not null) queue.Done();
        Micros(100);
        Assert.True(queue.Delay(1, _clock.GetUtcNow()) > TimeSpan.Zero);

        // Lone requests: each keeps the model busy 400 µs and nothing joins it.
        int waited = 0;
        for (int call = 0; call < 1000 && queue.Delay(1, _clock.GetUtcNow()) > TimeSpan.Zero; call++, waited++)
        {
            queue.TryEnqueue(Key, Request());
            TakeWhenDue(queue);
            Micros(400);
            queue.Done();
            Micros(150);
        }
        Assert.InRange(waited, 1, 999);
    }

    [Fact]
    public void TheDelayNeverExceedsTheMaximum()
    {
        var queue = Queue(max: 16);
        var rng = new Random(12);
        var waiting = new List<PendingRequest>();
        for (int step = 0; step < 20_000; step++)
        {
            Micros(rng.NextDouble() * (step % 2000 < 1000 ? 20 : 400));   // busy phases and quiet phases
            if (rng.NextDouble() < 0.6)
            {
                var r = Request();
                queue.TryEnqueue(Key, r);
                waiting.Add(r);
            }
            var now = _clock.GetUtcNow();
            Assert.InRange(queue.Delay(1, now), TimeSpan.Zero, Max);
            if (queue.NextDue is { } due) Assert.True(due - waiting.Where(w => !w.IsCompleted).Min(w => w.EnqueuedAt) <= Max);
            if (queue.Running > 0 && rng.NextDouble() < 0.5) queue.Done();
            if (queue.Running < 2 && queue.TryTakeBatch() is { } batch)
                foreach (var part in batch.Parts) part.Request.CompletePart(part.Index, new EngineResult(new Dictionary<string, HostTensor>(), new Dictionary<string, HostTensor>()));
        }
    }

    [Fact]
    public void AFixedDelayWaitsTheMaximumForALoneRequest()
    {
        var queue = new BatchQueue(new BatchingOptions { MaxBatchSize = 64, MaxQueueDelayMicroseconds = 500, AdaptiveDelay = false }, _clock);
        queue.TryEnqueue(Key, Request());
        Assert.Null(queue.TryTakeBatch());
        Micros(500);
        Assert.NotNull(queue.TryTakeBatch());
    }
}
