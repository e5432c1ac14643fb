using System.Diagnostics;
using JacService.Core.Derivatives;
using JacService.Core.Models;

namespace JacService.Server.Batching;

public enum WorkKind
{
    Predict,
    Jacobian,
    /// <summary>The request's tensors are the model inputs followed by the tangents ([B] or [B, T] ++ in_shape).</summary>
    Jvp,
    /// <summary>The request's tensors are the model inputs followed by one cotangent per output in Of, in Of's order.</summary>
    Vjp,
}

/// <summary>
/// What can share one pass: the same kind of work, the same wrt, of and derivative mode, and the same per-sample
/// shapes of every tensor the request carries (for Jvp and Vjp that includes the directions, so T must match too).
/// </summary>
public sealed record WorkKey(WorkKind Kind, int Wrt, int[] Of, string SampleShapes, DerivativeMode Mode = DerivativeMode.Auto)
{
    public bool Equals(WorkKey? other) =>
        other is not null && Kind == other.Kind && Wrt == other.Wrt && Mode == other.Mode && Of.SequenceEqual(other.Of)
        && SampleShapes == other.SampleShapes;

    // Computed for every queued request and every batch: no strings built for it.
    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(Kind);
        hash.Add(Wrt);
        hash.Add(Mode);
        foreach (var o in Of) hash.Add(o);
        hash.Add(SampleShapes);
        return hash.ToHashCode();
    }

    public static WorkKey For(WorkKind kind, HostTensor[] inputs, int wrt = -1, int[]? of = null, DerivativeMode mode = DerivativeMode.Auto) =>
        new(kind, wrt, of ?? [], string.Join(";", inputs.Select(i => string.Join("x", i.Shape.Skip(1)))), mode);
}

/// <summary>A request waiting for its rows to be computed; completed once every part has come back.</summary>
public sealed class PendingRequest(HostTensor[] inputs, DateTimeOffset enqueuedAt, DateTimeOffset? deadline, CancellationToken cancellation)
{
    private readonly TaskCompletionSource<EngineResult> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private EngineResult[] _parts = [];
    private int _partsLeft;
    private int _partsQueued;
    private Activity? _queueSpan;

    public HostTensor[] Inputs { get; } = inputs;
    public int Rows { get; } = (int)inputs[0].Shape[0];
    public DateTimeOffset EnqueuedAt { get; } = enqueuedAt;
    public DateTimeOffset? Deadline { get; } = deadline;
    public CancellationToken Cancellation { get; } = cancellation;
    public Task<EngineResult> Task => _completion.Task;
    public bool IsCompleted => _completion.Task.IsCompleted;

    /// <summary>The caller's server span, which the batch span that computes this request links to.</summary>
    public ActivityContext Caller { get; init; }

    /// <summary>The span of this request's time in the queue; ended when its last part leaves the queue.</summary>
    public Activity? QueueSpan
    {
        get => _queueSpan;
        init => _queueSpan = value;
    }

    internal void ExpectParts(int count)
    {
        _parts = new EngineResult[count];
        _partsLeft = count;
        _partsQueued = count;
    }

    /// <summary>One part was taken into a batch.</summary>
    public void LeftQueue()
    {
        if (Interlocked.Decrement(ref _partsQueued) == 0) EndQueueSpan(null);
    }

    /// <summary>Records one part's rows; the last one assembles the whole result in row order.</summary>
    public void CompletePart(int index, EngineResult result)
    {
        if (_parts.Length == 1)
        {
            _completion.TrySetResult(result);
            return;
        }
        _parts[index] = result;
        if (Interlocked.Decrement(ref _partsLeft) == 0) _completion.TrySetResult(BatchRows.Concat(_parts));
    }

    public void Fail(Exception e)
    {
        EndQueueSpan(e);
        _completion.TrySetException(e);
    }

    /// <summary>The queue would not take it: only its queue span ends; the caller gets the exception directly.</summary>
    public void Refuse(Exception e) => EndQueueSpan(e);

    public void Cancel()
    {
        EndQueueSpan(null, cancelled: true);
        _completion.TrySetCanceled(Cancellation);
    }

    private void EndQueueSpan(Exception? error, bool cancelled = false)
    {
        if (Interlocked.Exchange(ref _queueSpan, null) is not { } span) return;
        if (error is not null)
        {
            span.AddException(error);
            span.SetStatus(ActivityStatusCode.Error, error.Message);
        }
        else if (cancelled)
        {
            span.AddEvent(new ActivityEvent("cancelled"));
        }
        span.Stop();
    }
}

/// <summary>A slice of rows [RowStart, RowStart + Rows) of one request.</summary>
public sealed record RequestPart(PendingRequest Request, int Index, int RowStart, int Rows);

/// <summary>Parts of requests with one key that run together; Padded ≥ Rows is the bucket size run.</summary>
public sealed record Batch(WorkKey Key, IReadOnlyList<RequestPart> Parts, int Rows, int Padded);

/// <summary>The deadline of a request passed while it waited. Maps to DEADLINE_EXCEEDED.</summary>
public sealed class QueueDeadlineExceededException(string message) : Exception(message);

/// <summary>
/// The batching decisions, free of threads and clocks of its own so they can be tested step by step: requests go
/// in (split into parts no larger than the max batch), batches come out when full or when their oldest part has
/// waited the max delay, expired and cancelled requests are dropped on the way.
/// </summary>
public sealed class BatchQueue(BatchingOptions options, TimeProvider clock)
{
    private readonly Dictionary<WorkKey, LinkedList<RequestPart>> _queues = [];
    private readonly int[] _buckets = options.EffectiveBuckets();

    public int QueuedRows { get; private set; }

    public BatchingOptions Options => options;

    /// <summary>Queues the request; false (and nothing queued) when its rows would exceed the queue capacity.</summary>
    public bool TryEnqueue(WorkKey key, PendingRequest request)
    {
        if (QueuedRows + request.Rows > options.QueueCapacity) return false;
        int max = options.MaxBatchSize;
        int parts = (request.Rows + max - 1) / max;
        request.ExpectParts(parts);
        if (!_queues.TryGetValue(key, out var queue)) _queues[key] = queue = new LinkedList<RequestPart>();
        for (int p = 0; p < parts; p++)
            queue.AddLast(new RequestPart(request, p, p * max, Math.Min(max, request.Rows - p * max)));
        QueuedRows += request.Rows;
        return true;
    }

    /// <summary>When the next batch becomes due by delay alone, or null when nothing waits.</summary>
    public DateTimeOffset? NextDue =>
        _queues.Values.Where(q => q.Count > 0).Select(q => (DateTimeOffset?)(q.First!.Value.Request.EnqueuedAt + options.MaxQueueDelay)).Min();

    /// <summary>
    /// The next due batch (the one whose oldest part waited longest), or null if none is due yet. With
    /// <paramref name="othersRunning"/> (another batch runs, or the batcher is draining), a partial batch is due at
    /// once: waiting longer would only leave a free executor idle.
    /// </summary>
    public Batch? TryTakeBatch(bool othersRunning = false)
    {
        var now = clock.GetUtcNow();
        KeyValuePair<WorkKey, LinkedList<RequestPart>> due = default;
        foreach (var queue in _queues)
        {
            int queued = DropDead(queue.Value, now);
            if (queued == 0) continue;
            var oldest = queue.Value.First!.Value.Request.EnqueuedAt;
            bool isDue = othersRunning || queued >= options.MaxBatchSize || now - oldest >= options.MaxQueueDelay;
            if (isDue && (due.Value is null || oldest < due.Value.First!.Value.Request.EnqueuedAt)) due = queue;
        }
        if (due.Value is null) return null;

        var parts = new List<RequestPart>();
        int rows = 0;
        var list = due.Value;
        while (list.First is { } node && rows + node.Value.Rows <= options.MaxBatchSize)
        {
            parts.Add(node.Value);
            rows += node.Value.Rows;
            list.RemoveFirst();
        }
        QueuedRows -= rows;
        if (list.Count == 0) _queues.Remove(due.Key);
        return new Batch(due.Key, parts, rows, options.PadToBucket ? BucketFor(rows) : rows);
    }

    /// <summary>The smallest bucket holding <paramref name="rows"/> (the bucket list is fixed, so this is thread-safe).</summary>
    public int BucketFor(int rows) => Array.Find(_buckets, b => b >= rows);

    /// <summary>Fails every queued request (shutdown without drain).</summary>
    public void FailAll(Exception e)
    {
        foreach (var part in _queues.Values.SelectMany(q => q)) part.Request.Fail(e);
        _queues.Clear();
        QueuedRows = 0;
    }

    /// <summary>Drops cancelled and expired requests' parts; returns the rows still queued.</summary>
    private int DropDead(LinkedList<RequestPart> queue, DateTimeOffset now)
    {
        int live = 0;
        for (var node = queue.First; node is not null;)
        {
            var next = node.Next;
            var request = node.Value.Request;
            if (request.Cancellation.IsCancellationRequested) request.Cancel();
            else if (request.Deadline is { } deadline && deadline <= now)
                request.Fail(new QueueDeadlineExceededException(
                    $"the deadline passed after {(now - request.EnqueuedAt).TotalMilliseconds:F1} ms in the queue; the request was not computed"));
            if (request.IsCompleted)
            {
                queue.Remove(node);
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
}
