using System.Diagnostics;
using JacService.Core;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Server.Execution;
using JacService.Server.Grpc;
using JacService.Server.Telemetry;
using static JacService.Server.Telemetry.JacServiceTelemetry;

namespace JacService.Server.Batching;

/// <summary>
/// The micro-batcher of one model version: requests queue per work key, a dispatcher forms a batch whenever an
/// executor thread is free and a batch is due (full, its oldest request waited the delay, or another batch is
/// already running), and the executor runs it as one pass and hands each caller its rows. While the executors are
/// busy, requests pile up and the next batches come out larger: the batch size follows the load. The delay is only
/// paid when the model is idle and company is likely (BatchQueue.Delay); a lone caller pays none.
/// </summary>
public sealed class ModelBatcher : IAsyncDisposable
{
    private readonly ModelVersion _model;
    private readonly TimeProvider _clock;
    private readonly JacServiceMetrics _metrics;
    private readonly BatchQueue _queue;
    private readonly TorchExecutor _executor;
    private readonly ThreadLocal<BatchBufferCache> _buffers = new(() => new BatchBufferCache());
    // A wake that arrives between the dispatcher's look at the queue and its sleep is kept, so none is lost.
    private readonly WakeSignal _wake = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _dispatcher;
    private readonly object _lock = new();
    private long _batches, _rows, _paddedRows;
    private volatile bool _accepting = true;

    public ModelBatcher(ModelVersion model, BatchingOptions options, TimeProvider clock, JacServiceMetrics metrics)
    {
        _model = model;
        _clock = clock;
        _metrics = metrics;
        Options = options;
        _queue = new BatchQueue(options, clock);
        _executor = new TorchExecutor(options.ExecutorThreads, options.IntraOpThreads, capacity: options.ExecutorThreads * 2);
        _dispatcher = new Thread(DispatchLoop) { IsBackground = true, Name = $"batcher-{model.Name}-{model.Version}" };
        _dispatcher.Start();
    }

    public BatchingOptions Options { get; }

    /// <summary>Rows waiting, and batches running.</summary>
    public (int QueuedRows, int RunningBatches) Load
    {
        get { lock (_lock) return (_queue.QueuedRows, _queue.Running); }
    }

    /// <summary>How long a lone request arriving now would wait for company.</summary>
    public TimeSpan CurrentDelay
    {
        get { lock (_lock) return _queue.Delay(1, _clock.GetUtcNow()); }
    }

    /// <summary>Batches executed, rows computed for callers, and rows added by padding, since start.</summary>
    public (long Batches, long Rows, long PaddedRows) Executed => (Interlocked.Read(ref _batches), Interlocked.Read(ref _rows), Interlocked.Read(ref _paddedRows));

    /// <summary>Queues the rows of one request and completes with exactly those rows' results.</summary>
    public Task<EngineResult> SubmitAsync(WorkKey key, HostTensor[] inputs, DateTimeOffset? deadline, CancellationToken cancellation)
    {
        if (!_accepting) throw new BatcherStoppedException($"model '{_model.Name}' version {_model.Version} is shutting down");
        var caller = Activity.Current;
        var request = new PendingRequest(inputs, _clock.GetUtcNow(), deadline, cancellation)
        {
            Caller = caller?.Context ?? default,
            QueueSpan = StartQueueSpan(key, (int)inputs[0].Shape[0]),
        };
        // Starting a span makes it current; the caller's own span must stay current for the rest of its call.
        Activity.Current = caller;
        lock (_lock)
        {
            if (!_queue.TryEnqueue(key, request))
            {
                var full = new ExecutorBusyException(
                    $"model '{_model.Name}' has {_queue.QueuedRows} rows queued; {request.Rows} more would exceed its queue capacity of {Options.QueueCapacity}");
                request.Refuse(full);
                throw full;
            }
        }
        // A cancelled caller leaves at once; its parts are dropped when the queue next looks at them.
        if (cancellation.CanBeCanceled)
        {
            var registration = cancellation.Register(() => { request.Cancel(); Wake(); });
            request.Task.ContinueWith(_ => registration.Dispose(), TaskScheduler.Default);
        }
        Wake();
        return request.Task;
    }

    private Activity? StartQueueSpan(WorkKey key, int rows)
    {
        var span = Source.StartActivity(QueueSpan);
        if (span is { IsAllDataRequested: true })
        {
            span.SetTag(Attributes.Model, _model.Name);
            span.SetTag(Attributes.Version, _model.Version);
            span.SetTag(Attributes.Kind, JacServiceMetrics.KindName(key.Kind));
            span.SetTag(Attributes.Rows, rows);
        }
        return span;
    }

    private void Wake() => _wake.Set();

    /// <summary>
    /// The dispatcher, on a thread of its own: whenever an executor thread is free and a batch is due, it hands the
    /// batch over; otherwise it sleeps until woken (a request arrived or left, a batch finished) or until the next
    /// batch falls due. It never spins: a sleeping dispatcher costs no CPU, however short the delay.
    /// </summary>
    private void DispatchLoop()
    {
        var stop = _stop.Token;
        while (!stop.IsCancellationRequested)
        {
            Batch? batch = null;
            DateTimeOffset? due;
            bool executorFree;
            lock (_lock)
            {
                executorFree = _queue.Running < Options.ExecutorThreads;
                // Draining: nothing new will join a partial batch, so waiting out the delay would only stall shutdown.
                if (executorFree) batch = _queue.TryTakeBatch(draining: !_accepting);
                due = _queue.NextDue;
            }
            if (batch is not null)
            {
                _ = RunAsync(batch);
                continue;
            }
            if (!_accepting && due is null) return;
            // With every executor busy only a finished batch can change anything, and it wakes the dispatcher.
            SleepUntil(executorFree ? due : null);
        }
    }

    private void SleepUntil(DateTimeOffset? due)
    {
        var wait = due is { } at ? Max(at - _clock.GetUtcNow(), TimeSpan.Zero) : (TimeSpan?)null;
        if (wait == TimeSpan.Zero) return;
        if (wait is null || ReferenceEquals(_clock, TimeProvider.System))
        {
            _wake.Wait(wait);
            return;
        }
        // Another clock (a test's fake one) decides itself when the delay has passed.
        using var timer = _clock.CreateTimer(_ => _wake.Set(), null, wait.Value, Timeout.InfiniteTimeSpan);
        _wake.Wait(null);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private async Task RunAsync(Batch batch)
    {
        try
        {
            var now = _clock.GetUtcNow();
            foreach (var part in batch.Parts)
            {
                part.Request.LeftQueue();
                _metrics.RecordQueueWait(_model.Name, batch.Key.Kind, (now - part.Request.EnqueuedAt).TotalSeconds);
            }
            var live = batch.Parts.Where(p => !p.Request.IsCompleted).ToList();
            if (live.Count > 0)
            {
                var results = await _executor.RunAsync(() => Execute(batch with { Parts = live }), CancellationToken.None);
                for (int i = 0; i < live.Count; i++) live[i].Request.CompletePart(live[i].Index, results[i]);
            }
        }
        catch (Exception e)
        {
            foreach (var part in batch.Parts) part.Request.Fail(e);
        }
        finally
        {
            lock (_lock) _queue.Done();
            Wake();
        }
    }

    /// <summary>Runs one batch on the calling executor thread and returns each part's rows, copied out of its buffers.</summary>
    private EngineResult[] Execute(Batch batch)
    {
        long started = Stopwatch.GetTimestamp();
        // Sized again here: cancelled parts may have left since the queue formed the batch.
        int rows = batch.Parts.Sum(p => p.Rows);
        int bucket = _queue.BucketFor(rows);
        int padded = Options.PadToBucket ? bucket : rows;
        var buffers = _buffers.Value!.For(batch.Key, padded, batch.Parts[0].Request.Inputs);
        var inputs = BatchRows.Stack(batch.Parts, padded, buffers.Inputs);
        Interlocked.Increment(ref _batches);
        Interlocked.Add(ref _rows, rows);
        Interlocked.Add(ref _paddedRows, padded - rows);
        using var span = StartBatchSpan(batch, inputs, rows, bucket, padded);
        DerivativeMode? ran = batch.Key.Kind == WorkKind.Predict ? null : batch.Key.Mode;
        try
        {
            var result = Run(batch.Key, inputs, buffers.Results);
            ran = result.Mode;
            span?.SetTag(Attributes.Mode, JacServiceMetrics.ModeName(ran));
            // The buffers are this thread's and the next batch of this shape overwrites them: copy the rows out now.
            var parts = new EngineResult[batch.Parts.Count];
            for (int i = 0, row = 0; i < parts.Length; row += batch.Parts[i].Rows, i++)
                parts[i] = BatchRows.Slice(result, row, batch.Parts[i].Rows);
            return parts;
        }
        catch (Exception e) when (span is not null)
        {
            span.AddException(e);
            // Inputs the model cannot evaluate are the callers' to fix, not a fault of the service.
            if (e is not (InvalidRequestException or NodeEvaluationException)) span.SetStatus(ActivityStatusCode.Error, e.Message);
            throw;
        }
        finally
        {
            _metrics.RecordBatch(_model.Name, batch.Key.Kind, ran, bucket, rows, padded - rows,
                Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    /// <summary>
    /// One engine call for the stacked batch. Jvp and Vjp requests carry their directions after the model inputs
    /// (stacked and padded like them); they are split off here. Hessian and Laplacian requests carry the model inputs
    /// only; what else they need (include_jacobian, the axes) is in the key, which every request of the batch shares.
    /// </summary>
    private EngineResult Run(WorkKey key, HostTensor[] stacked, ResultBuffers results)
    {
        int n = _model.Inputs.Count;
        return key.Kind switch
        {
            WorkKind.Predict => _model.Predict(stacked, results),
            WorkKind.Jacobian => _model.Jacobian(stacked, key.Wrt, key.Of, key.Mode, results),
            WorkKind.Jvp => _model.Jvp(stacked[..n], key.Wrt, key.Of, stacked[n], results),
            WorkKind.Vjp => _model.Vjp(stacked[..n], key.Wrt, key.Of, stacked[n..], results),
            WorkKind.Hessian => _model.Hessian(stacked, key.Wrt, key.Of, key.IncludeJacobian, results),
            WorkKind.Laplacian => _model.Laplacian(stacked, key.Wrt, key.Of, key.Axes, key.IncludeJacobian, results),
            _ => throw new ArgumentOutOfRangeException(nameof(key), key.Kind, "unknown kind of work"),
        };
    }

    private Activity? StartBatchSpan(Batch batch, HostTensor[] inputs, int rows, int bucket, int padded)
    {
        if (!Source.HasListeners()) return null;
        // A batch serves many traces, so it starts a trace of its own and links to each caller (fan-in). Executor
        // threads would otherwise inherit whatever span was current when they were created.
        Activity.Current = null;
        var links = batch.Parts.Where(p => p.Request.Caller != default).Select(p => new ActivityLink(p.Request.Caller)).ToList();
        var span = Source.StartActivity(BatchSpan, ActivityKind.Internal, parentContext: default, links: links);
        if (span is { IsAllDataRequested: true })
        {
            span.SetTag(Attributes.Model, _model.Name);
            span.SetTag(Attributes.Version, _model.Version);
            span.SetTag(Attributes.Kind, JacServiceMetrics.KindName(batch.Key.Kind));
            span.SetTag(Attributes.BatchSize, rows);
            span.SetTag(Attributes.Bucket, bucket);
            span.SetTag(Attributes.PaddedRows, padded - rows);
            span.SetTag(Attributes.Requests, batch.Parts.Count);
            // A Hessian differentiates along every element of wrt, like a Jacobian's basis.
            if (batch.Key.Kind is WorkKind.Jacobian or WorkKind.Hessian) span.SetTag(Attributes.TangentWidth, inputs[batch.Key.Wrt].Count / padded);
            if (batch.Key.Kind == WorkKind.Laplacian) span.SetTag(Attributes.LaplacianAxes, batch.Key.Axes.Length);
            if (batch.Key.Kind is WorkKind.Hessian or WorkKind.Laplacian) span.SetTag(Attributes.IncludeJacobian, batch.Key.IncludeJacobian);
            // The caller's directions per sample: T, or 1 without a T axis (the first cotangent stands for all: same T).
            if (batch.Key.Kind is WorkKind.Jvp or WorkKind.Vjp)
            {
                var directions = inputs[_model.Inputs.Count];
                bool many = batch.Key.Kind == WorkKind.Jvp
                    ? directions.Shape.Length == inputs[batch.Key.Wrt].Shape.Length + 1
                    : directions.Shape.Length == _model.OutputSampleShape(inputs[.._model.Inputs.Count], batch.Key.Of[0]).Length + 2;
                span.SetTag(Attributes.TangentWidth, many ? directions.Shape[1] : 1);
            }
            span.SetTag(Attributes.Device, _model.Device);
        }
        return span;
    }

    /// <summary>Stops taking requests; what is queued is dispatched without waiting out the max delay.</summary>
    public void BeginDrain()
    {
        _accepting = false;
        Wake();
    }

    /// <summary>Stops taking requests and lets what is queued finish, up to <paramref name="grace"/>.</summary>
    public async Task DrainAsync(TimeSpan grace)
    {
        BeginDrain();
        var deadline = _clock.GetUtcNow() + grace;
        while (true)
        {
            var (queued, running) = Load;
            if (queued == 0 && running == 0) break;
            if (_clock.GetUtcNow() >= deadline)
            {
                lock (_lock) _queue.FailAll(new BatcherStoppedException("the server shut down before this request ran"));
                break;
            }
            await Task.Delay(TimeSpan.FromMilliseconds(5), _clock);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _accepting = false;
        _stop.Cancel();
        Wake();
        await Task.Run(() => _dispatcher.Join());
        _executor.Dispose();
        _wake.Dispose();
        _buffers.Dispose();
        _stop.Dispose();
    }
}
