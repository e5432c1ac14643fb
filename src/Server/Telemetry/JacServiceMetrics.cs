using System.Diagnostics;
using System.Diagnostics.Metrics;
using JacService.Core.Derivatives;
using JacService.Server.Batching;
using JacService.Server.Models;

namespace JacService.Server.Telemetry;

/// <summary>
/// The service's own instruments on the Meter "JacService". Prometheus sees them with dots as underscores and
/// unit suffixes: jacservice_requests_total, jacservice_request_duration_seconds, jacservice_batch_size, ...
/// </summary>
public sealed class JacServiceMetrics
{
    // Seconds from 25 µs (a queue hop) to 10 s (a huge batch): the SDK's default boundaries assume milliseconds. Finer
    // below a millisecond, where single-sample calls live: with only 100, 250 and 500 µs, 97 % of the H200's one-row
    // batches fell in one bucket and a p50 of 100 µs could not be told from one of 200.
    private static readonly double[] SecondsBuckets =
    [
        0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.00075,
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ];
    private static readonly int[] RowBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

    private readonly Meter _meter;
    private readonly Counter<long> _requests;
    private readonly Histogram<double> _requestDuration;
    private readonly Histogram<double> _queueWait;
    private readonly Histogram<int> _batchSize;
    private readonly Counter<long> _paddedRows;
    private readonly Histogram<double> _batchDuration;
    private readonly Counter<long> _modelLoads;
    private readonly Histogram<double> _modelLoadDuration;
    private readonly Counter<long> _modelRetirements;
    private readonly Counter<long> _abandonedBatches;
    private readonly Counter<long> _notCompiled;
    private readonly Counter<long> _stalledMessages;
    private ModelRegistry? _registry;

    public JacServiceMetrics(Meter meter)
    {
        _meter = meter;
        _requests = meter.CreateCounter<long>("jacservice.requests", "{request}",
            "RPCs answered, by model, method and gRPC status");
        _requestDuration = meter.CreateHistogram("jacservice.request.duration", "s",
            "Time from receiving an RPC to its answer, by model, method and gRPC status",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });
        _queueWait = meter.CreateHistogram("jacservice.queue.wait", "s",
            "Time a request's rows waited in the queue before their batch ran",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });
        _batchSize = meter.CreateHistogram("jacservice.batch.size", "{row}",
            "Rows of real requests in each executed batch",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = RowBuckets });
        _paddedRows = meter.CreateCounter<long>("jacservice.batch.padded_rows", "{row}",
            "Rows added to batches to fill a bucket: computed and thrown away");
        _batchDuration = meter.CreateHistogram("jacservice.batch.duration", "s",
            "Time one batch took on its executor thread, by model, kind and bucket",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });
        _modelLoads = meter.CreateCounter<long>("jacservice.model.loads", "{load}",
            "Model versions loaded, by model and outcome (ready, failed)");
        _modelLoadDuration = meter.CreateHistogram("jacservice.model.load.duration", "s",
            "Time from reading a version's file to its being ready (warm-up included) or failed",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });
        _modelRetirements = meter.CreateCounter<long>("jacservice.model.retirements", "{retirement}",
            "Model versions taken out of service (folder removed, pushed out of the version policy, replaced by a reload, or unloaded)");
        _abandonedBatches = meter.CreateCounter<long>("jacservice.batch.abandoned", "{batch}",
            "Batches stopped before the end because every caller had cancelled or passed its deadline, by model and kind");
        _notCompiled = meter.CreateCounter<long>("jacservice.derivatives.not_compiled", "{graph}",
            "Derivative graphs (one per model version, kind, wrt, of and input shapes) that could not be compiled, whose derivatives the interpreter serves");
        _stalledMessages = meter.CreateCounter<long>("jacservice.messages.stalled", "{call}",
            "Calls ended because a message took too long to cross the connection, by method and direction: a request message " +
            "that did not arrive within Limits:RequestReadTimeoutSeconds, or a response message that waited " +
            "Limits:ResponseWriteTimeoutSeconds for the client to read it");
    }

    /// <summary>
    /// A call ended because its client sent its request too slowly (<paramref name="direction"/> "request") or stopped
    /// reading its answer ("response"). <paramref name="method"/> is the RPC's name, from a fixed set.
    /// </summary>
    public void RecordStalledMessage(string method, string direction) =>
        _stalledMessages.Add(1, new TagList { { "method", method }, { "direction", direction } });

    /// <summary>A derivative graph of <paramref name="model"/> that could not be compiled (Engine:CompileDerivatives).</summary>
    public void RecordNotCompiled(string model) => _notCompiled.Add(1, new KeyValuePair<string, object?>("model", model));

    /// <summary>
    /// Gauges read from the registry at each collection (rows queued per model version, versions per state); the
    /// registry also says which model names label requests.
    /// </summary>
    public void ObserveRegistry(ModelRegistry registry)
    {
        _registry = registry;
        _meter.CreateObservableGauge("jacservice.queue.depth", () => registry.Entries
                .Where(e => e.Batcher is not null)
                .Select(e => new Measurement<int>(e.Batcher!.Load.QueuedRows,
                    new KeyValuePair<string, object?>("model", e.Name), new KeyValuePair<string, object?>("version", e.Version.ToString()))),
            "{row}", "Rows waiting in the queue of each model version");
        _meter.CreateObservableGauge("jacservice.models.loaded", () => Enum.GetValues<ModelState>()
                .Select(s => new Measurement<int>(registry.Entries.Count(e => e.State == s),
                    new KeyValuePair<string, object?>("state", s.ToString().ToLowerInvariant()))),
            "{model}", "Model versions in the repository, by state (loading, ready, failed)");
        _meter.CreateObservableGauge("jacservice.model.predict_runtime", () => registry.Entries
                .Where(e => e.Model is not null)
                .Select(e => new Measurement<int>(1,
                    new KeyValuePair<string, object?>("model", e.Name), new KeyValuePair<string, object?>("version", e.Version.ToString()),
                    new KeyValuePair<string, object?>("runtime", e.Model!.PredictRuntime))),
            "{model}", "1 per READY model version, labelled with what serves its Predict (onnxruntime, or engine when it falls back)");
        _meter.CreateObservableGauge("jacservice.cuda_graphs", () => registry.Entries
                .Where(e => e.Model is { Graphs.Enabled: true })
                .SelectMany(e => e.Lifetime!.Replicas.SelectMany(replica =>
                {
                    var (_, recorded, fallbacks) = replica.Graphs;
                    KeyValuePair<string, object?>[] version = [new("model", e.Name), new("version", e.Version.ToString()), new("device", replica.Device)];
                    return new[]
                    {
                        new Measurement<int>(recorded, [.. version, new("state", "recorded")]),
                        new Measurement<int>(fallbacks.Count, [.. version, new("state", "eager")]),
                    };
                })),
            "{pass}", "Passes of each model version's replica recorded as CUDA graphs, and passes that could not be recorded and run eagerly (GPU only)");
    }

    /// <summary>
    /// One answered RPC. The model label is the name only where the registry lists it, else "": the name comes from the
    /// caller, and a label per name any caller makes up would grow the series (and /metrics) without bound.
    /// </summary>
    public void RecordRequest(string model, string method, string status, double seconds)
    {
        var label = _registry is { } registry && registry.Lists(model) ? model : "";
        var tags = new TagList { { "model", label }, { "method", method }, { "status", status } };
        _requests.Add(1, tags);
        _requestDuration.Record(seconds, tags);
    }

    /// <summary>
    /// One load, READY or FAILED. A model's failed loads are counted from 0 once it has loaded, so a reload that fails later
    /// is an increase that increase() sees (a series born at 1 has none) and JacServiceModelLoadFailed can fire.
    /// </summary>
    public void RecordModelLoad(string model, ModelState outcome, double seconds)
    {
        var tags = new TagList { { "model", model }, { "outcome", outcome.ToString().ToLowerInvariant() } };
        _modelLoads.Add(1, tags);
        _modelLoadDuration.Record(seconds, tags);
        if (outcome == ModelState.Ready) _modelLoads.Add(0, new TagList { { "model", model }, { "outcome", "failed" } });
    }

    public void RecordRetirement(string model) => _modelRetirements.Add(1, new TagList { { "model", model } });

    public void RecordQueueWait(string model, WorkKind kind, double seconds) =>
        _queueWait.Record(seconds, new TagList { { "model", model }, { "kind", KindName(kind) } });

    /// <summary>One executed batch; <paramref name="mode"/> is the derivative mode it ran in (null for predict).</summary>
    public void RecordBatch(string model, WorkKind kind, DerivativeMode? mode, int bucket, string device, int rows, int paddedRows, double seconds)
    {
        var tags = new TagList { { "model", model }, { "kind", KindName(kind) }, { "mode", ModeName(mode) } };
        _batchSize.Record(rows, tags);
        if (paddedRows > 0) _paddedRows.Add(paddedRows, tags);
        tags.Add("bucket", bucket);
        // Which replica ran it: how the batches spread over several GPUs.
        tags.Add("device", device);
        _batchDuration.Record(seconds, tags);
    }

    public void RecordAbandonedBatch(string model, WorkKind kind) =>
        _abandonedBatches.Add(1, new TagList { { "model", model }, { "kind", KindName(kind) } });

    public static string KindName(WorkKind kind) => kind switch
    {
        WorkKind.Predict => "predict",
        WorkKind.Jacobian => "jacobian",
        WorkKind.Jvp => "jvp",
        WorkKind.Vjp => "vjp",
        WorkKind.Hessian => "hessian",
        WorkKind.Laplacian => "laplacian",
        _ => kind.ToString().ToLowerInvariant(),
    };

    /// <summary>"forward" or "reverse" for a batch that ran; "auto" for one that failed before choosing; "none" for predict.</summary>
    public static string ModeName(DerivativeMode? mode) => mode switch
    {
        null => "none",
        DerivativeMode.Forward => "forward",
        DerivativeMode.Reverse => "reverse",
        _ => "auto",
    };
}
