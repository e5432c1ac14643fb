using System.Diagnostics;
using JacService.Core;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Planning;
using JacService.Server.Execution;
using JacService.Server.Grpc;
using JacService.Server.Telemetry;
using TorchSharp;
using static JacService.Server.Telemetry.JacServiceTelemetry;

namespace JacService.Server.Batching;

/// <summary>
/// The micro-batcher of one model version: requests queue per work key, an executor thread takes a batch whenever it
/// is free and a batch is due (full, its oldest request waited the delay, or another batch is
/// already running), runs it as one pass and hands each caller its rows. While the executors are
/// busy, requests pile up and the next batches come out larger: the batch size follows the load. The delay is only
/// paid when the model is idle and company is likely (BatchQueue.Delay); a lone caller pays none. With a replica of
/// the version on each of several GPUs, every replica has its own executor threads, all taking from the one queue:
/// whichever device is free takes the next batch.
/// </summary>
public sealed class ModelBatcher : IAsyncDisposable
{
    private readonly ModelVersion _model;
    private readonly IReadOnlyList<ModelVersion> _replicas;
    private readonly long[] _replicaBatches, _replicaRows;
    private readonly TimeProvider _clock;
    private readonly JacServiceMetrics _metrics;
    private readonly BatchQueue _queue;
    private readonly Thread[] _threads;
    // Executor threads asleep with nothing due, each on its own signal, with the time it wakes by itself (null: only when
    // woken). A wake that arrives between a thread's look at the queue and its sleep is kept by the signal, so none is lost.
    private readonly List<(WakeSignal Signal, DateTimeOffset? WakeAt)> _sleeping = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly object _lock = new();
    private long _paddedRows;
    private volatile bool _accepting = true;
    private volatile bool _warmingUp;
    private readonly bool _padToBucket;

    public ModelBatcher(ModelVersion model, BatchingOptions options, TimeProvider clock, JacServiceMetrics metrics)
        : this(ModelReplicas.Of([model]), options, clock, metrics)
    {
    }

    /// <summary>
    /// Batches for the version <paramref name="replicas"/> hold: Batching:ExecutorThreads threads per replica, each
    /// bound to its replica's device, interleaved so that the warm-up's calls (sent to the thread asleep longest) reach
    /// every device in turn.
    /// </summary>
    public ModelBatcher(ModelReplicas replicas, BatchingOptions options, TimeProvider clock, JacServiceMetrics metrics)
    {
        _replicas = replicas.All;
        _model = replicas.Primary;
        _replicaBatches = new long[_replicas.Count];
        _replicaRows = new long[_replicas.Count];
        _clock = clock;
        _metrics = metrics;
        Options = options;
        _padToBucket = options.PadToBucket ?? _model.Graphs.Enabled;
        _queue = new BatchQueue(options, clock);
        int count = _replicas.Count;
        _threads = Enumerable.Range(0, options.ExecutorThreads * count)
            .Select(i => new Thread(() => ExecutorLoop(i % count))
            {
                IsBackground = true,
                Name = count == 1 ? $"torch-executor-{i}" : $"torch-executor-{i % count}.{i / count}",
            }).ToArray();
        foreach (var thread in _threads) thread.Start();
    }

    public BatchingOptions Options { get; }

    /// <summary>
    /// While set (the version's own warm-up calls, before it takes callers): batches leave as soon as an executor
    /// thread is free, since nobody else could join them, and they are neither traced, measured nor counted in
    /// <see cref="Executed"/>: they are the server's own calls, not traffic.
    /// </summary>
    public bool WarmingUp
    {
        get => _warmingUp;
        set => _warmingUp = value;
    }

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
    public (long Batches, long Rows, long PaddedRows) Executed
    {
        get
        {
            var on = ExecutedOn;
            return (on.Sum(d => d.Batches), on.Sum(d => d.Rows), Interlocked.Read(ref _paddedRows));
        }
    }

    /// <summary>Batches and caller rows each replica computed (outside the warm-up), in the order of the devices.</summary>
    public IReadOnlyList<(string Device, long Batches, long Rows)> ExecutedOn =>
        _replicas.Select((r, i) => (r.Device, Interlocked.Read(ref _replicaBatches[i]), Interlocked.Read(ref _replicaRows[i]))).ToList();

    /// <summary>Queues the rows of one request and completes with exactly those rows' results.</summary>
    public Task<EngineResult> SubmitAsync(WorkKey key, HostTensor[] inputs, DateTimeOffset? deadline, CancellationToken cancellation)
    {
        if (!_accepting) throw new BatcherStoppedException($"model '{_model.Name}' version {_model.Version} is shutting down");
        var caller = Activity.Current;
        var request = new PendingRequest(inputs, _clock.GetUtcNow(), deadline, cancellation)
        {
            Caller = caller?.Context ?? default,
            QueueSpan = _warmingUp ? null : StartQueueSpan(key, (int)inputs[0].Shape[0]),
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
            WakeIfDueSoonerLocked(_warmingUp ? _clock.GetUtcNow() : _queue.DueOf(key));
        }
        // A cancelled caller leaves at once; its parts are dropped when the queue next looks at them.
        request.OnCancelled(() => { request.Cancel(); Wake(); });
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

    /// <summary>
    /// Wakes one sleeping executor thread, if any, to look at the queue. Caller holds the lock. The one that slept last
    /// (its caches are warm), except during the warm-up: then the one asleep longest, so the warm-up's calls, sent one
    /// after another, reach every thread. A thread's first batch pays for its first use of the kernels; when the warm-up
    /// left the second thread idle, the new version's first batches under load took 11-21 ms against a p99 of 6-13 ms before.
    /// </summary>
    private void WakeOneLocked()
    {
        if (_sleeping.Count == 0) return;
        int index = _warmingUp ? 0 : _sleeping.Count - 1;
        var sleeper = _sleeping[index].Signal;
        _sleeping.RemoveAt(index);
        sleeper.Set();
    }

    /// <summary>
    /// Wakes a sleeping executor thread only when a batch falls due before every sleeper's own wake-up. An arrival that
    /// just joins a batch still waiting for company changes nothing a sleeper would do: waking it would only put it back
    /// to sleep, at the price of a system call and a context switch on each side (under 64 single-sample streams that
    /// was four wasted wakes per batch). Caller holds the lock.
    /// </summary>
    private void WakeIfDueSoonerLocked(DateTimeOffset? due)
    {
        if (due is null) return;
        foreach (var (_, wakeAt) in _sleeping)
        {
            if (wakeAt is null || due < wakeAt)
            {
                WakeOneLocked();
                return;
            }
        }
    }

    private void Wake()
    {
        lock (_lock) WakeOneLocked();
    }

    private void WakeAll()
    {
        lock (_lock) while (_sleeping.Count > 0) WakeOneLocked();
    }

    /// <summary>
    /// One executor thread. TorchSharp's dispose scopes, grad and inference modes are per thread, so every batch runs
    /// synchronously on one of these, inside one dispose scope. Each thread takes its own batches from the queue:
    /// a request travels from the gRPC thread straight to the thread that computes it, with no dispatcher between
    /// them (every hand-over between threads is a futex wake and a context switch, tens of µs on these VMs). A thread
    /// with nothing due sleeps on its own signal until a request arrives or the next batch falls due, never spinning.
    /// </summary>
    private void ExecutorLoop(int replica)
    {
        torch.set_num_threads(Options.IntraOpThreads);
        // Binding worked for the loader on the same device; should it fail here, every batch this thread takes fails
        // with the reason instead of the thread ending the process.
        Exception? unbound = null;
        try
        {
            ComputeDevices.BindThread(_replicas[replica].Device);
        }
        catch (Exception e)
        {
            unbound = e;
        }
        using var noGrad = torch.inference_mode();
        using var wake = new WakeSignal();
        var buffers = new BatchBufferCache();
        var stop = _stop.Token;
        while (!stop.IsCancellationRequested)
        {
            Batch? batch;
            DateTimeOffset? due;
            lock (_lock)
            {
                // Draining: nothing new will join a partial batch, so waiting out the delay would only stall shutdown.
                batch = _queue.TryTakeBatch(draining: !_accepting || _warmingUp);
                due = _queue.NextDue;
                // What is left is due at once now that a batch runs: a sleeping thread can take it.
                if (batch is not null && due is not null) WakeOneLocked();
                // Checked under the lock that WakeAll takes after cancelling: a thread that saw no stop before the loop's
                // test and comes here after DisposeAsync's WakeAll would otherwise sleep with no one left to wake it
                // (found as a fuzz test whose harness hung in Dispose).
                if (batch is null && stop.IsCancellationRequested) break;
                if (batch is null) _sleeping.Add((wake, due));
            }
            if (batch is not null)
            {
                Run(batch, buffers, replica, unbound);
                continue;
            }
            SleepUntil(wake, due);
            lock (_lock) _sleeping.RemoveAll(s => s.Signal == wake);
        }
    }

    private void SleepUntil(WakeSignal wake, DateTimeOffset? due)
    {
        var wait = due is { } at ? Max(at - _clock.GetUtcNow(), TimeSpan.Zero) : (TimeSpan?)null;
        if (wait == TimeSpan.Zero) return;
        if (wait is null || ReferenceEquals(_clock, TimeProvider.System))
        {
            wake.Wait(wait);
            return;
        }
        // Another clock (a test's fake one) decides itself when the delay has passed.
        using var timer = _clock.CreateTimer(_ => wake.Set(), null, wait.Value, Timeout.InfiniteTimeSpan);
        wake.Wait(null);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private void Run(Batch batch, BatchBufferCache buffers, int replica, Exception? unbound)
    {
        Batch live = batch;
        EngineResult[] results = [];
        Exception? error = null;
        try
        {
            if (unbound is not null) throw unbound;
            var now = _clock.GetUtcNow();
            bool anyGone = false;
            foreach (var part in batch.Parts)
            {
                part.Request.LeftQueue();
                if (!_warmingUp) _metrics.RecordQueueWait(_model.Name, batch.Key.Kind, (now - part.Request.EnqueuedAt).TotalSeconds);
                anyGone |= part.Request.IsCompleted;
            }
            if (anyGone) live = batch with { Parts = batch.Parts.Where(p => !p.Request.IsCompleted).ToList() };
            if (live.Parts.Count > 0)
            {
                ComputeActivity.Started();
                try
                {
                    using var scope = torch.NewDisposeScope();
                    results = Execute(live, buffers, replica);
                }
                finally
                {
                    ComputeActivity.Ended();
                }
            }
        }
        catch (Exception e)
        {
            error = e;
        }
        // Done before the callers hear back: a caller's next request must find the model idle, or a lone caller would
        // count as company for itself.
        lock (_lock) _queue.Done();
        if (error is not null)
            foreach (var part in batch.Parts) part.Request.Fail(error);
        else
            for (int i = 0; i < results.Length; i++) live.Parts[i].Request.CompletePart(live.Parts[i].Index, results[i]);
    }

    /// <summary>
    /// Runs one batch on the calling executor thread and returns each part's rows, copied out of its buffers. A batch
    /// that is one whole request, unpadded (a lone caller, a pre-batched call), is computed from the request's own
    /// arrays into fresh result arrays that go to the caller as they are: no stacking and no slicing copies.
    /// </summary>
    private EngineResult[] Execute(Batch batch, BatchBufferCache cache, int replica)
    {
        var model = _replicas[replica];
        long started = Stopwatch.GetTimestamp();
        // Sized again here: cancelled parts may have left since the queue formed the batch.
        int rows = batch.Parts.Sum(p => p.Rows);
        int bucket = _queue.BucketFor(rows);
        int padded = _padToBucket ? bucket : rows;
        var first = batch.Parts[0];
        bool whole = batch.Parts.Count == 1 && first.Rows == first.Request.Rows && padded == rows;
        var buffers = whole ? null : cache.For(batch.Key, padded, first.Request.Inputs);
        var inputs = buffers is null ? first.Request.Inputs : BatchRows.Stack(batch.Parts, padded, buffers.Inputs);
        bool observed = !_warmingUp;
        if (observed)
        {
            Interlocked.Increment(ref _replicaBatches[replica]);
            Interlocked.Add(ref _replicaRows[replica], rows);
            Interlocked.Add(ref _paddedRows, padded - rows);
        }
        using var span = observed ? StartBatchSpan(batch, model, inputs, rows, bucket, padded) : null;
        DerivativeMode? ran = batch.Key.Kind == WorkKind.Predict ? null : batch.Key.Mode;
        using var abandonment = new BatchAbandonment(batch.Parts.Select(p => p.Request));
        try
        {
            EngineResult result;
            using (BatchCancellation.Enter(abandonment.Token)) result = Run(model, batch.Key, inputs, buffers?.Results);
            if (_warmingUp) WarmOtherReplicas(replica, batch.Key, inputs);
            ran = result.Mode;
            span?.SetTag(Attributes.Mode, JacServiceMetrics.ModeName(ran));
            if (ran is not null) span?.SetTag(Attributes.Compiled, result.Compiled);
            if (buffers is null) return [result];
            // The buffers are this thread's and the next batch of this shape overwrites them: copy the rows out now.
            var parts = new EngineResult[batch.Parts.Count];
            for (int i = 0, row = 0; i < parts.Length; row += batch.Parts[i].Rows, i++)
                parts[i] = BatchRows.Slice(result, row, batch.Parts[i].Rows);
            return parts;
        }
        catch (OperationCanceledException) when (abandonment.IsAbandoned)
        {
            // Every caller has its answer already (cancelled); the span says why the batch ended early.
            span?.AddEvent(new ActivityEvent("abandoned: every caller cancelled or past its deadline"));
            if (observed) _metrics.RecordAbandonedBatch(_model.Name, batch.Key.Kind);
            throw;
        }
        catch (Exception e) when (span is not null)
        {
            span.RecordException(e);
            // Inputs the model cannot evaluate are the callers' to fix, not a fault of the service.
            if (e is not (InvalidRequestException or NodeEvaluationException)) span.SetStatus(ActivityStatusCode.Error, e.Message);
            throw;
        }
        finally
        {
            if (observed) _metrics.RecordBatch(_model.Name, batch.Key.Kind, ran, bucket, model.Device, rows, padded - rows,
                Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    /// <summary>
    /// One engine call for the stacked batch. Jvp and Vjp requests carry their directions after the model inputs
    /// (stacked and padded like them); they are split off here. Hessian and Laplacian requests carry the model inputs
    /// only; what else they need (include_jacobian, the axes) is in the key, which every request of the batch shares.
    /// </summary>
    private static EngineResult Run(ModelVersion model, WorkKey key, HostTensor[] stacked, ResultBuffers? results)
    {
        int n = model.Inputs.Count;
        return key.Kind switch
        {
            WorkKind.Predict => model.Predict(stacked, results),
            WorkKind.Jacobian => model.Jacobian(stacked, key.Wrt, key.Of, key.Mode, results),
            WorkKind.Jvp => model.Jvp(stacked[..n], key.Wrt, key.Of, stacked[n], results),
            WorkKind.Vjp => model.Vjp(stacked[..n], key.Wrt, key.Of, stacked[n..], results),
            WorkKind.Hessian => model.Hessian(stacked, key.Wrt, key.Of, key.IncludeJacobian, results),
            WorkKind.Laplacian => model.Laplacian(stacked, key.Wrt, key.Of, key.Axes, key.IncludeJacobian, results),
            _ => throw new ArgumentOutOfRangeException(nameof(key), key.Kind, "unknown kind of work"),
        };
    }

    /// <summary>
    /// A warm-up batch runs on every replica, not only on the one whose thread took it: each device plans, compiles
    /// its kernels and records its graphs before the version takes callers. The thread binds to each device in turn.
    /// </summary>
    private void WarmOtherReplicas(int home, WorkKey key, HostTensor[] inputs)
    {
        for (int r = 0; r < _replicas.Count; r++)
        {
            if (r == home) continue;
            ComputeDevices.BindThread(_replicas[r].Device);
            try
            {
                Run(_replicas[r], key, inputs, results: null);
            }
            finally
            {
                ComputeDevices.BindThread(_replicas[home].Device);
            }
        }
    }

    private Activity? StartBatchSpan(Batch batch, ModelVersion model, HostTensor[] inputs, int rows, int bucket, int padded)
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
                var directions = inputs[model.Inputs.Count];
                bool many = batch.Key.Kind == WorkKind.Jvp
                    ? directions.Shape.Length == inputs[batch.Key.Wrt].Shape.Length + 1
                    : directions.Shape.Length == model.OutputSampleShape(inputs[..model.Inputs.Count], batch.Key.Of[0]).Length + 2;
                span.SetTag(Attributes.TangentWidth, many ? directions.Shape[1] : 1);
            }
            span.SetTag(Attributes.Device, model.Device);
        }
        return span;
    }

    /// <summary>Stops taking requests; what is queued is dispatched without waiting out the max delay.</summary>
    public void BeginDrain()
    {
        _accepting = false;
        WakeAll();
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
        WakeAll();
        await Task.Run(() =>
        {
            foreach (var thread in _threads) thread.Join();
        });
        _stop.Dispose();
    }
}
