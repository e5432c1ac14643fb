using JacService.Core.Models;
using JacService.Server.Batching;
using JacService.Server.Grpc;
using Microsoft.Extensions.Time.Testing;

namespace JacService.Server.Tests;

/// <summary>Batch formation, step by step on a fake clock.</summary>
public class BatchQueueTests
{
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.Parse("2026-01-01T00:00:00Z"));

    private static readonly WorkKey Key = new(WorkKind.Predict, -1, [], "3");

    /// <summary>A queue with a fixed delay unless <paramref name="adaptive"/>: most tests here are about the delay's other rules.</summary>
    private BatchQueue Queue(int max = 4, int delayMicros = 1000, int capacity = 100, bool pad = false, int[]? buckets = null, bool adaptive = false) =>
        new(new BatchingOptions
        {
            MaxBatchSize = max, MaxQueueDelayMicroseconds = delayMicros, QueueCapacity = capacity, PadToBucket = pad, Buckets = buckets ?? [],
            AdaptiveDelay = adaptive,
        }, _clock);

    /// <summary>A request of <paramref name="rows"/> rows whose values are row ids starting at <paramref name="first"/>.</summary>
    private PendingRequest Request(int rows, float first = 0, DateTimeOffset? deadline = null, CancellationToken cancellation = default) =>
        new([new HostTensor([rows, 3], Enumerable.Range(0, rows * 3).Select(i => first + i / 3).ToArray())], _clock.GetUtcNow(), deadline, cancellation);

    /// <summary>The rows a batch holds, counted as the executor counts them.</summary>
    private static int RowsOf(Batch? batch) => batch!.Parts.Sum(p => p.Rows);

    [Fact]
    public void FormsABatchAtMaxSizeWithoutWaiting()
    {
        var queue = Queue(max: 4);
        for (int i = 0; i < 4; i++) Assert.True(queue.TryEnqueue(Key, Request(1)));
        var batch = queue.TryTakeBatch();
        Assert.NotNull(batch);
        Assert.Equal(4, RowsOf(batch));
        Assert.Equal(0, queue.QueuedRows);
    }

    [Fact]
    public void FormsABatchAtMaxDelay()
    {
        var queue = Queue(max: 4, delayMicros: 1000);
        queue.TryEnqueue(Key, Request(1));
        _clock.Advance(TimeSpan.FromMicroseconds(400));
        queue.TryEnqueue(Key, Request(1));
        Assert.Null(queue.TryTakeBatch());
        Assert.Equal(_clock.GetUtcNow() + TimeSpan.FromMicroseconds(600), queue.NextDue);
        _clock.Advance(TimeSpan.FromMicroseconds(599));
        Assert.Null(queue.TryTakeBatch());
        _clock.Advance(TimeSpan.FromMicroseconds(1));
        Assert.Equal(2, RowsOf(queue.TryTakeBatch()));
        Assert.Null(queue.NextDue);
    }

    [Fact]
    public void WhileAnotherBatchRunsAPartialBatchLeavesWithoutWaiting()
    {
        var queue = Queue(max: 4, delayMicros: 1000);
        for (int i = 0; i < 4; i++) queue.TryEnqueue(Key, Request(1));
        Assert.Equal(4, RowsOf(queue.TryTakeBatch()));
        queue.TryEnqueue(Key, Request(1));
        queue.TryEnqueue(Key, Request(1));
        Assert.Equal(2, RowsOf(queue.TryTakeBatch()));
        Assert.Equal(2, queue.Running);
        queue.Done();
        queue.Done();
        queue.TryEnqueue(Key, Request(1));
        Assert.Null(queue.TryTakeBatch());
        Assert.Equal(1, RowsOf(queue.TryTakeBatch(draining: true)));
    }

    [Fact]
    public void BatchSizeOneTurnsBatchingOff()
    {
        var queue = Queue(max: 1, delayMicros: 1_000_000);
        queue.TryEnqueue(Key, Request(1));
        queue.TryEnqueue(Key, Request(1));
        Assert.Equal(1, RowsOf(queue.TryTakeBatch()));
        Assert.Equal(1, RowsOf(queue.TryTakeBatch()));
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 4)]
    [InlineData(5, 8)]
    [InlineData(8, 8)]
    public void PadsToTheNextBucket(int rows, int bucket)
    {
        var queue = Queue(max: 8, delayMicros: 0, pad: true);
        queue.TryEnqueue(Key, Request(rows));
        var batch = queue.TryTakeBatch()!;
        Assert.Equal(rows, RowsOf(batch));
        // What the executor pads the batch to.
        Assert.Equal(bucket, queue.BucketFor(RowsOf(batch)));
    }

    [Fact]
    public void BucketsDefaultToPowersOfTwoAndAlwaysEndAtTheMax()
    {
        Assert.Equal([1, 2, 4, 8, 16, 32, 48], new BatchingOptions { MaxBatchSize = 48 }.EffectiveBuckets());
        Assert.Equal([3, 6, 8], new BatchingOptions { MaxBatchSize = 8, Buckets = [6, 3] }.EffectiveBuckets());
        Assert.Equal(6, new BatchQueue(new BatchingOptions { MaxBatchSize = 8, Buckets = [6, 3] }, TimeProvider.System).BucketFor(4));
    }

    [Fact]
    public async Task SplitsAnOversizedRequestAndReassemblesItInOrder()
    {
        var queue = Queue(max: 4, delayMicros: 0);
        var big = Request(10, first: 100);
        queue.TryEnqueue(Key, big);
        var batches = new List<Batch>();
        while (queue.TryTakeBatch() is { } b) batches.Add(b);
        Assert.Equal([4, 4, 2], batches.Select(RowsOf));

        // Complete the parts out of order, as parallel executors may.
        foreach (var batch in batches.AsEnumerable().Reverse())
        {
            var part = batch.Parts.Single();
            var echo = new EngineResult(new Dictionary<string, HostTensor> { ["y"] = BatchRows.Stack([part], part.Rows)[0] }, new Dictionary<string, HostTensor>());
            part.Request.CompletePart(part.Index, echo);
        }
        var result = (await big.Task).Outputs["y"];
        Assert.Equal([10L, 3], result.Shape);
        Assert.Equal(big.Inputs[0].Data, result.Data);
    }

    [Fact]
    public void StackingAndSlicingGiveEachCallerItsOwnRows()
    {
        var a = Request(2, first: 10);
        var b = Request(3, first: 20);
        var parts = new[] { new RequestPart(a, 0, 0, 2), new RequestPart(b, 0, 0, 3) };
        var stacked = BatchRows.Stack(parts, padded: 8)[0];
        Assert.Equal([8L, 3], stacked.Shape);
        Assert.Equal([10f, 11, 20, 21, 22, 22, 22, 22], stacked.Data.Where((_, i) => i % 3 == 0));
        var result = new EngineResult(new Dictionary<string, HostTensor> { ["y"] = stacked }, new Dictionary<string, HostTensor>());
        Assert.Equal(b.Inputs[0].Data, BatchRows.Slice(result, 2, 3).Outputs["y"].Data);
        Assert.Equal(a.Inputs[0].Data, BatchRows.Slice(result, 0, 2).Outputs["y"].Data);
    }

    [Fact]
    public async Task DropsARequestWhoseDeadlinePassedWithoutDisturbingItsBatch()
    {
        var queue = Queue(max: 4, delayMicros: 1000);
        var late = Request(1, deadline: _clock.GetUtcNow() + TimeSpan.FromMicroseconds(500));
        var onTime = Request(1);
        queue.TryEnqueue(Key, late);
        queue.TryEnqueue(Key, onTime);
        _clock.Advance(TimeSpan.FromMilliseconds(1));
        var batch = queue.TryTakeBatch()!;
        Assert.Same(onTime, batch.Parts.Single().Request);
        await Assert.ThrowsAsync<QueueDeadlineExceededException>(() => late.Task);
        Assert.Equal(0, queue.QueuedRows);
    }

    [Fact]
    public void RemovesACancelledRequest()
    {
        var queue = Queue(max: 2, delayMicros: 1000);
        using var cts = new CancellationTokenSource();
        var cancelled = Request(1, cancellation: cts.Token);
        var kept = Request(1);
        queue.TryEnqueue(Key, cancelled);
        queue.TryEnqueue(Key, kept);
        cts.Cancel();
        Assert.Null(queue.TryTakeBatch()); // one row left: not full, not due
        _clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Same(kept, queue.TryTakeBatch()!.Parts.Single().Request);
        Assert.True(cancelled.Task.IsCanceled);
    }

    [Fact]
    public void RefusesRowsBeyondTheQueueCapacity()
    {
        var queue = Queue(max: 4, capacity: 5);
        Assert.True(queue.TryEnqueue(Key, Request(3)));
        Assert.False(queue.TryEnqueue(Key, Request(3)));
        Assert.True(queue.TryEnqueue(Key, Request(2)));
        Assert.Equal(5, queue.QueuedRows);
    }

    [Fact]
    public void TakesARequestOverTheWholeCapacityWhenNothingWaits()
    {
        // Refused always, a Predict over a 10,000-point grid could never succeed at the default capacity of 8192 rows.
        var queue = Queue(max: 4, delayMicros: 0, capacity: 5);
        Assert.True(queue.TryEnqueue(Key, Request(9)));
        Assert.False(queue.TryEnqueue(Key, Request(1)));
        Assert.Equal(9, queue.QueuedRows);
        while (queue.TryTakeBatch() is not null) { }
        Assert.Equal(0, queue.QueuedRows);
        Assert.True(queue.TryEnqueue(Key, Request(1)));
        Assert.False(queue.TryEnqueue(Key, Request(9)));
    }

    [Fact]
    public void KeepsDifferentWorkApart()
    {
        var queue = Queue(max: 4, delayMicros: 0);
        var jac = new WorkKey(WorkKind.Jacobian, 0, [0], "3");
        queue.TryEnqueue(Key, Request(1));
        queue.TryEnqueue(jac, Request(1));
        queue.TryEnqueue(Key, Request(1));
        var first = queue.TryTakeBatch()!;
        var second = queue.TryTakeBatch()!;
        Assert.Equal((Key, 2), (first.Key, RowsOf(first)));
        Assert.Equal((jac, 1), (second.Key, RowsOf(second)));
    }
}
