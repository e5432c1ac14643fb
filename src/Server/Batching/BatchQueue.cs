using JacService.Server.Grpc;

namespace JacService.Server.Batching;

/// <summary>
/// The batching decisions, free of threads and clocks of its own so they can be tested step by step: requests go
/// in (split into parts no larger than the max batch), batches come out when full, when another batch is running
/// (an executor is free and waiting would leave it idle), or when their oldest part has waited the delay; expired and
/// cancelled requests are dropped on the way.
/// The delay adapts (unless <see cref="BatchingOptions.AdaptiveDelay"/> is off): a partial batch waits only when
/// company is likely, judged by how often requests arrived while the model was busy, and at most
/// <see cref="BatchingOptions.MaxQueueDelay"/>. A lone caller in a loop never finds the model busy, so its requests
/// leave at once.
/// </summary>
public sealed class BatchQueue(BatchingOptions options, TimeProvider clock)
{
    /// <summary>How much busy time the arrival rate remembers: long enough to smooth bursts, short enough that a
    /// model whose load has gone stops waiting after a few hundred lone requests.</summary>
    public static readonly TimeSpan RateMemory = TimeSpan.FromMilliseconds(50);

    private readonly Dictionary<WorkKey, KeyQueue> _queues = [];
    private readonly int[] _buckets = options.EffectiveBuckets();
    private readonly BusyArrivalRate _rate = new(RateMemory);

    public int QueuedRows { get; private set; }

    /// <summary>Batches taken and not yet reported <see cref="Done"/>.</summary>
    public int Running { get; private set; }

    public BatchingOptions Options => options;

    /// <summary>Queues the request; false (and nothing queued) when its rows would exceed the queue capacity.</summary>
    public bool TryEnqueue(WorkKey key, PendingRequest request)
    {
        // A request over the whole capacity is taken when nothing waits: refused always, it could never succeed, and the
        // rows are in memory already (Limits:MaxRequestMiB bounds them).
        if (QueuedRows > 0 && QueuedRows + request.Rows > options.QueueCapacity) return false;
        var now = clock.GetUtcNow();
        _rate.Arrived(now);
        _rate.BecameBusy(now);
        int max = options.MaxBatchSize;
        int parts = (request.Rows + max - 1) / max;
        request.ExpectParts(parts);
        if (!_queues.TryGetValue(key, out var queue)) _queues[key] = queue = new KeyQueue();
        for (int p = 0; p < parts; p++)
            queue.Parts.AddLast(new RequestPart(request, p, p * max, Math.Min(max, request.Rows - p * max)));
        queue.Rows += request.Rows;
        QueuedRows += request.Rows;
        return true;
    }

    /// <summary>When the next batch becomes due by delay alone, or null when nothing waits.</summary>
    public DateTimeOffset? NextDue
    {
        get
        {
            var now = clock.GetUtcNow();
            return _queues.Values.Where(q => q.Parts.Count > 0).Select(q => (DateTimeOffset?)DueByDelay(q, now)).Min();
        }
    }

    /// <summary>
    /// When <paramref name="key"/>'s queue can give a batch: now when it can at once (another batch runs, or it holds a
    /// full batch), else when its oldest part has waited its delay; null when it is empty. Dead parts are not dropped
    /// here, so this may be early, never late.
    /// </summary>
    public DateTimeOffset? DueOf(WorkKey key) =>
        _queues.TryGetValue(key, out var queue) && queue.Parts.Count > 0 ? Due(queue, clock.GetUtcNow()) : null;

    /// <summary>The one rule for when a non-empty queue can give a batch; see <see cref="DueOf"/>.</summary>
    private DateTimeOffset Due(KeyQueue queue, DateTimeOffset now) =>
        Running > 0 || queue.Rows >= options.MaxBatchSize ? now : DueByDelay(queue, now);

    private DateTimeOffset DueByDelay(KeyQueue queue, DateTimeOffset now) =>
        queue.Parts.First!.Value.Request.EnqueuedAt + Delay(queue.Rows, now);

    /// <summary>
    /// How long a partial batch of <paramref name="queuedRows"/> may wait for company now: the max delay when the
    /// delay is fixed; otherwise nothing when fewer than one arrival is expected within the max delay, else the time
    /// the batch needs to fill at the recent rate, capped at the max delay.
    /// </summary>
    public TimeSpan Delay(int queuedRows, DateTimeOffset now)
    {
        var max = options.MaxQueueDelay;
        if (!options.AdaptiveDelay) return max;
        double perSecond = _rate.PerSecond(now);
        if (perSecond * max.TotalSeconds < 1) return TimeSpan.Zero;
        double fillSeconds = Math.Max(0, options.MaxBatchSize - queuedRows) / perSecond;
        return fillSeconds < max.TotalSeconds ? TimeSpan.FromSeconds(fillSeconds) : max;
    }

    /// <summary>
    /// The next due batch (the one whose oldest part waited longest), or null if none is due yet; it counts as
    /// running until <see cref="Done"/>. While another batch runs, or while <paramref name="draining"/>, a partial
    /// batch is due at once: waiting longer would only leave a free executor idle.
    /// </summary>
    public Batch? TryTakeBatch(bool draining = false)
    {
        var now = clock.GetUtcNow();
        KeyValuePair<WorkKey, KeyQueue> due = default;
        foreach (var queue in _queues)
        {
            if (DropDead(queue.Value, now) == 0) continue;
            var oldest = queue.Value.Parts.First!.Value.Request.EnqueuedAt;
            bool isDue = draining || Due(queue.Value, now) <= now;
            if (isDue && (due.Value is null || oldest < due.Value.Parts.First!.Value.Request.EnqueuedAt)) due = queue;
        }
        if (due.Value is null)
        {
            NoteIfIdle(now);
            return null;
        }

        var parts = new List<RequestPart>();
        int rows = 0;
        var list = due.Value.Parts;
        while (list.First is { } node && rows + node.Value.Rows <= options.MaxBatchSize)
        {
            parts.Add(node.Value);
            rows += node.Value.Rows;
            list.RemoveFirst();
        }
        due.Value.Rows -= rows;
        QueuedRows -= rows;
        if (list.Count == 0) _queues.Remove(due.Key);
        Running++;
        return new Batch(due.Key, parts);
    }

    /// <summary>A batch taken from this queue has finished running.</summary>
    public void Done()
    {
        Running--;
        NoteIfIdle(clock.GetUtcNow());
    }

    private void NoteIfIdle(DateTimeOffset now)
    {
        if (QueuedRows == 0 && Running == 0) _rate.BecameIdle(now);
    }

    /// <summary>The smallest bucket holding <paramref name="rows"/> (the bucket list is fixed, so this is thread-safe).</summary>
    public int BucketFor(int rows) => Array.Find(_buckets, b => b >= rows);

    /// <summary>Fails every queued request (shutdown without drain).</summary>
    public void FailAll(Exception e)
    {
        foreach (var part in _queues.Values.SelectMany(q => q.Parts)) part.Request.Fail(e);
        _queues.Clear();
        QueuedRows = 0;
        NoteIfIdle(clock.GetUtcNow());
    }

    /// <summary>Drops cancelled and expired requests' parts; returns the rows still queued.</summary>
    private int DropDead(KeyQueue queue, DateTimeOffset now)
    {
        int live = 0;
        for (var node = queue.Parts.First; node is not null;)
        {
            var next = node.Next;
            var request = node.Value.Request;
            if (request.Cancellation.IsCancellationRequested) request.Cancel();
            else if (request.Deadline is { } deadline && deadline <= now)
                request.Fail(new QueueDeadlineExceededException(
                    $"the deadline passed after {(now - request.EnqueuedAt).TotalMilliseconds:F1} ms in the queue; the request was not computed"));
            if (request.IsCompleted)
            {
                queue.Parts.Remove(node);
                queue.Rows -= node.Value.Rows;
                QueuedRows -= node.Value.Rows;
            }
            else
            {
                live += node.Value.Rows;
            }
            node = next;
        }
        return live;
    }

    /// <summary>One key's parts in arrival order, and their rows: read on every arrival, so kept rather than summed.</summary>
    private sealed class KeyQueue
    {
        public LinkedList<RequestPart> Parts { get; } = new();

        public int Rows { get; set; }
    }
}
