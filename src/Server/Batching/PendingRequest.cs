using System.Diagnostics;
using JacService.Core.Models;
using JacService.Server.Telemetry;

namespace JacService.Server.Batching;

/// <summary>A request waiting for its rows to be computed; completed once every part has come back.</summary>
public sealed class PendingRequest(HostTensor[] inputs, DateTimeOffset enqueuedAt, DateTimeOffset? deadline, CancellationToken cancellation)
{
    private readonly TaskCompletionSource<EngineResult> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private EngineResult[] _parts = [];
    private int _partsLeft;
    private int _partsQueued;
    private Activity? _queueSpan;
    private CancellationTokenRegistration _cancelled;

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

    /// <summary>Calls <paramref name="onCancel"/> if the caller cancels before the request completes.</summary>
    internal void OnCancelled(Action onCancel)
    {
        if (!Cancellation.CanBeCanceled) return;
        var registration = Cancellation.Register(onCancel);
        lock (_completion)
        {
            if (!IsCompleted)
            {
                _cancelled = registration;
                return;
            }
        }
        // Completed before the registration was stored: nobody else will remove it.
        registration.Unregister();
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
            Finish(_completion.TrySetResult(result));
            return;
        }
        _parts[index] = result;
        if (Interlocked.Decrement(ref _partsLeft) == 0) Finish(_completion.TrySetResult(BatchRows.Concat(_parts)));
    }

    public void Fail(Exception e)
    {
        EndQueueSpan(e);
        Finish(_completion.TrySetException(e));
    }

    /// <summary>The queue would not take it: only its queue span ends; the caller gets the exception directly.</summary>
    public void Refuse(Exception e) => EndQueueSpan(e);

    public void Cancel()
    {
        EndQueueSpan(null, cancelled: true);
        Finish(_completion.TrySetCanceled(Cancellation));
    }

    // Unregister, not Dispose: Dispose waits for a callback that is running, and the callback (Cancel, then the
    // batcher's Wake) takes the batcher's lock, which an executor holds when its queue sweep cancels the same request.
    // Waiting there deadlocked a server in CI. A callback that runs after completion finds nothing left to do.
    private void Finish(bool completed)
    {
        if (!completed) return;
        CancellationTokenRegistration registration;
        lock (_completion) (registration, _cancelled) = (_cancelled, default);
        registration.Unregister();
    }

    private void EndQueueSpan(Exception? error, bool cancelled = false)
    {
        if (Interlocked.Exchange(ref _queueSpan, null) is not { } span) return;
        if (error is not null)
        {
            span.RecordException(error);
            span.SetStatus(ActivityStatusCode.Error, error.Message);
        }
        else if (cancelled)
        {
            span.AddEvent(new ActivityEvent("cancelled"));
        }
        span.Stop();
    }
}
