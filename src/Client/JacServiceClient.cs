using Google.Protobuf.Collections;
using Grpc.Core;
using JacService.Protos.V1;

namespace JacService.Client;

/// <summary>
/// JacService's calls with plain .NET types. Every call carries a deadline (its <c>timeout</c>, else
/// <see cref="JacServiceClientOptions.Timeout"/>); UNAVAILABLE is retried by the channel when it was made by
/// <see cref="JacServiceChannel.Create(JacServiceClientOptions)"/> or <c>AddJacServiceClient</c>.
/// <para>
/// Errors: every status the server or the channel gives surfaces as <see cref="RpcException"/>, its
/// <see cref="RpcException.StatusCode"/> and message unchanged (NOT_FOUND, INVALID_ARGUMENT, RESOURCE_EXHAUSTED,
/// DEADLINE_EXCEEDED, UNAVAILABLE once the retries are spent, ...; see the proto). A stream that ends without
/// error but without all of its rows, or with rows out of order, throws <see cref="InvalidDataException"/>.
/// Cancelling <c>cancellationToken</c> gives <see cref="RpcException"/> with CANCELLED.
/// </para>
/// </summary>
public sealed class JacServiceClient
{
    private readonly TimeSpan _timeout;
    private readonly string? _bearerToken, _apiKey;
    private readonly JacServiceClientOptions _retry;

    public JacServiceClient(JacobianService.JacobianServiceClient stub, JacServiceClientOptions options)
    {
        options.ThrowIfInvalid();
        Stub = stub;
        _timeout = options.Timeout;
        _retry = options;
        (_bearerToken, _apiKey) = (options.BearerToken, options.ApiKey);
    }

    /// <summary>The generated client underneath, for what this class does not wrap (e.g. batching statistics).</summary>
    public JacobianService.JacobianServiceClient Stub { get; }

    /// <summary>Outputs for a batch; every input has the batch axis first.</summary>
    public async Task<PredictResult> PredictAsync(string model, IReadOnlyDictionary<string, FloatTensor> inputs,
        string version = "", TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var request = new PredictRequest { Model = model, Version = version };
        AddInputs(request.Inputs, inputs);
        var response = await Unary(o => Stub.PredictAsync(request, o), timeout, cancellationToken);
        return new PredictResult(response.Model, response.Version, FromProto(response.Outputs));
    }

    /// <summary>
    /// Outputs and Jacobians for ONE sample (inputs without the batch axis). <paramref name="wrt"/>: the input to
    /// differentiate ("" = the only float input); <paramref name="of"/>: the outputs (none = every float output);
    /// <paramref name="mode"/>: forward, reverse, or AUTO (the model's default, else the server's measured choice);
    /// the result says which ran.
    /// </summary>
    public async Task<JacobianResult> JacobianAsync(string model, IReadOnlyDictionary<string, FloatTensor> inputs,
        string wrt = "", IEnumerable<string>? of = null, DerivativeMode mode = DerivativeMode.Auto, string version = "",
        TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var request = new JacobianRequest { Model = model, Version = version, Wrt = wrt, Mode = mode };
        AddInputs(request.Inputs, inputs);
        if (of is not null) request.Of.AddRange(of);
        var response = await Unary(o => Stub.JacobianAsync(request, o), timeout, cancellationToken);
        return new JacobianResult(response.Model, response.Version, FromProto(response.Outputs), FromProto(response.Jacobians)) { Mode = response.Mode };
    }

    /// <summary>
    /// Opens a JacobianStream for one model, <paramref name="wrt"/>, <paramref name="of"/> and mode: a session whose
    /// <see cref="JacobianStreamSession.JacobianAsync"/> sends one sample per message on one long-lived call, for
    /// callers that ask many times a second. <paramref name="timeout"/> bounds the whole session (its call's deadline).
    /// </summary>
    public JacobianStreamSession OpenJacobianStream(string model, string wrt = "", IEnumerable<string>? of = null,
        DerivativeMode mode = DerivativeMode.Auto, string version = "", TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var template = new JacobianRequest { Model = model, Version = version, Wrt = wrt, Mode = mode };
        if (of is not null) template.Of.AddRange(of);
        return new JacobianStreamSession(Stub.JacobianStream(Options(timeout, cancellationToken)), template);
    }

    /// <summary>Outputs and per-sample Jacobians for a batch, as one message (see <see cref="StreamBatchJacobianAsync"/> for larger ones).</summary>
    public async Task<JacobianResult> BatchJacobianAsync(string model, IReadOnlyDictionary<string, FloatTensor> inputs,
        string wrt = "", IEnumerable<string>? of = null, DerivativeMode mode = DerivativeMode.Auto, string version = "",
        TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var request = BatchRequest(model, inputs, wrt, of, version, maxRowsPerChunk: 0, mode);
        var response = await Unary(o => Stub.BatchJacobianAsync(request, o), timeout, cancellationToken);
        return new JacobianResult(response.Model, response.Version, FromProto(response.Outputs), FromProto(response.Jacobians)) { Mode = response.Mode };
    }

    /// <summary>
    /// The result of <see cref="BatchJacobianAsync"/>, received as chunks of rows and reassembled, so it may be larger
    /// than one message. Each chunk is copied once, into the result. <paramref name="maxRowsPerChunk"/>: 0 lets the
    /// server send as many rows per chunk as fit its message limit. gRPC retries a stream only until its first chunk
    /// arrives; a failure after that fails the call.
    /// </summary>
    public async Task<JacobianResult> StreamBatchJacobianAsync(string model, IReadOnlyDictionary<string, FloatTensor> inputs,
        string wrt = "", IEnumerable<string>? of = null, DerivativeMode mode = DerivativeMode.Auto, string version = "",
        int maxRowsPerChunk = 0, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxRowsPerChunk);
        var request = BatchRequest(model, inputs, wrt, of, version, maxRowsPerChunk, mode);
        using var call = Stub.StreamBatchJacobian(request, Options(timeout, cancellationToken));
        ChunkAssembler? assembler = null;
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
        {
            var chunk = call.ResponseStream.Current;
            assembler ??= new ChunkAssembler(chunk);
            assembler.Add(chunk);
        }
        if (assembler is null) throw new InvalidDataException("the stream ended without any chunk");
        return assembler.Result();
    }

    /// <summary>
    /// Outputs and Jacobian-vector products J·v of a batch (forward mode, without forming J). <paramref name="tangents"/>:
    /// directions in the space of <paramref name="wrt"/>, <c>[B] ++ in_shape</c> (one per sample) or <c>[B, T] ++ in_shape</c>
    /// (T per sample); each result has the same layout with the output's shape.
    /// </summary>
    public async Task<JvpResult> JvpAsync(string model, IReadOnlyDictionary<string, FloatTensor> inputs, FloatTensor tangents,
        string wrt = "", IEnumerable<string>? of = null, string version = "", TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
    {
        var request = new JvpRequest { Model = model, Version = version, Wrt = wrt, Tangents = tangents.ToProto() };
        AddInputs(request.Inputs, inputs);
        if (of is not null) request.Of.AddRange(of);
        var response = await Unary(o => Stub.JvpAsync(request, o), timeout, cancellationToken);
        return new JvpResult(response.Model, response.Version, FromProto(response.Outputs), FromProto(response.Jvps), response.Mode);
    }

    /// <summary>
    /// Outputs and the vector-Jacobian product uᵀ·J of a batch (reverse mode, without forming J): the gradient with
    /// respect to <paramref name="wrt"/> of the sum over outputs of cotangent · output. <paramref name="cotangents"/>:
    /// one per output to pull back, all <c>[B] ++ out_shape</c> or all <c>[B, T] ++ out_shape</c> with the same T;
    /// <paramref name="of"/> (none = the outputs given cotangents) must name exactly those outputs.
    /// </summary>
    public async Task<VjpResult> VjpAsync(string model, IReadOnlyDictionary<string, FloatTensor> inputs,
        IReadOnlyDictionary<string, FloatTensor> cotangents, string wrt = "", IEnumerable<string>? of = null, string version = "",
        TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var request = new VjpRequest { Model = model, Version = version, Wrt = wrt };
        AddInputs(request.Inputs, inputs);
        AddInputs(request.Cotangents, cotangents);
        if (of is not null) request.Of.AddRange(of);
        var response = await Unary(o => Stub.VjpAsync(request, o), timeout, cancellationToken);
        return new VjpResult(response.Model, response.Version, FromProto(response.Outputs), FloatTensor.FromProto(response.Vjp), response.Mode);
    }

    /// <summary>
    /// Outputs and per-sample Hessians of a batch: <c>H[b, i…, j…, k…] = ∂²o[b, i…] / ∂wrt[b, j…] ∂wrt[b, k…]</c> for each
    /// output in <paramref name="of"/> (none = every float output). <paramref name="includeJacobian"/> returns the first
    /// derivatives from the same call. A Hessian grows with the square of wrt's size: the server refuses a result over
    /// its limit with RESOURCE_EXHAUSTED, and a model with an op that has no second-order rule with INVALID_ARGUMENT.
    /// </summary>
    public async Task<HessianResult> HessianAsync(string model, IReadOnlyDictionary<string, FloatTensor> inputs,
        string wrt = "", IEnumerable<string>? of = null, bool includeJacobian = false, string version = "",
        TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var request = new BatchHessianRequest { Model = model, Version = version, Wrt = wrt, IncludeJacobian = includeJacobian };
        AddInputs(request.Inputs, inputs);
        if (of is not null) request.Of.AddRange(of);
        var response = await Unary(o => Stub.BatchHessianAsync(request, o), timeout, cancellationToken);
        return new HessianResult(response.Model, response.Version, FromProto(response.Outputs), FromProto(response.Hessians),
            FromProto(response.Jacobians));
    }

    /// <summary>
    /// Outputs and per-sample Laplacians of a batch, <c>[B] ++ out_shape(o)</c>: the sum over <paramref name="axes"/>
    /// (flat indices into one sample of wrt, each at most once; none = every element) of the second derivatives, e.g.
    /// axes [0, 1] for x and y of an input (x, y, t). <paramref name="includeJacobian"/> returns the first derivatives
    /// (over every element of wrt) from the same call.
    /// </summary>
    public async Task<LaplacianResult> LaplacianAsync(string model, IReadOnlyDictionary<string, FloatTensor> inputs,
        string wrt = "", IEnumerable<string>? of = null, IEnumerable<long>? axes = null, bool includeJacobian = false, string version = "",
        TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var request = new BatchLaplacianRequest { Model = model, Version = version, Wrt = wrt, IncludeJacobian = includeJacobian };
        AddInputs(request.Inputs, inputs);
        if (of is not null) request.Of.AddRange(of);
        if (axes is not null) request.Axes.AddRange(axes);
        var response = await Unary(o => Stub.BatchLaplacianAsync(request, o), timeout, cancellationToken);
        return new LaplacianResult(response.Model, response.Version, FromProto(response.Outputs), FromProto(response.Laplacians),
            FromProto(response.Jacobians));
    }

    public async Task<IReadOnlyList<ModelDescription>> ListModelsAsync(TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var response = await Unary(o => Stub.ListModelsAsync(new ListModelsRequest(), o), timeout, cancellationToken);
        return response.Models.Select(Describe).ToList();
    }

    /// <summary>One version of a model ("" = the highest READY one, else the highest found).</summary>
    public async Task<ModelDescription> GetModelAsync(string model, string version = "", TimeSpan? timeout = null,
        CancellationToken cancellationToken = default) =>
        Describe(await Unary(o => Stub.GetModelAsync(new GetModelRequest { Model = model, Version = version }, o), timeout, cancellationToken));

    /// <summary>
    /// A unary call. gRPC's retry policy (the channel's service config) retries UNAVAILABLE up to MaxAttempts times;
    /// with <see cref="JacServiceClientOptions.RetryUntilDeadline"/> the call is then tried again, after the policy's
    /// longest backoff, for as long as its deadline leaves room: a restart that outlasts the policy's few hundred
    /// milliseconds to seconds of backoff becomes latency instead of an error. Every JacService call is idempotent.
    /// Retrying until the deadline also covers a stream the connection reset (<see cref="ResetInTransit"/>).
    /// </summary>
    private async Task<T> Unary<T>(Func<CallOptions, AsyncUnaryCall<T>> call, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        var options = Options(timeout, cancellationToken);
        while (true)
        {
            try
            {
                return await call(options);
            }
            catch (RpcException e) when ((e.StatusCode == StatusCode.Unavailable || ResetInTransit(e)) && _retry.RetryUntilDeadline && _retry.MaxAttempts > 1)
            {
                // Jittered, so that the callers of a restarted server do not all arrive at once.
                var wait = _retry.MaxBackoff * (0.5 + Random.Shared.NextDouble() / 2);
                if (DateTime.UtcNow + wait >= options.Deadline) throw;
                await Task.Delay(wait, cancellationToken);
            }
        }
    }

    /// <summary>
    /// INTERNAL that no server sent: the HTTP/2 connection reset the stream or failed, and Grpc.Net.Client maps the
    /// HTTP/2 error code as the gRPC spec says (NO_ERROR, PROTOCOL_ERROR and INTERNAL_ERROR become INTERNAL). A server
    /// that is killed, or a proxy in front of one, can end a call that way where it usually ends it UNAVAILABLE. A
    /// status the server sent has no exception behind it.
    /// </summary>
    private static bool ResetInTransit(RpcException e)
    {
        if (e.StatusCode != StatusCode.Internal) return false;
        for (var inner = e.Status.DebugException; inner is not null; inner = inner.InnerException)
            if (inner is HttpProtocolException) return true;
        return false;
    }

    private CallOptions Options(TimeSpan? timeout, CancellationToken cancellationToken)
    {
        var t = timeout ?? _timeout;
        if (t <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(timeout), t, "a call's timeout must be positive");
        return new CallOptions(Credentials(), DateTime.UtcNow + t, cancellationToken);
    }

    // Plain metadata rather than call credentials, which Grpc.Net.Client sends only over TLS: servers are often
    // reached over h2c inside a private network or behind a mesh that terminates TLS.
    private Metadata? Credentials()
    {
        if (_bearerToken is null && _apiKey is null) return null;
        var headers = new Metadata();
        if (_bearerToken is not null) headers.Add("authorization", "Bearer " + _bearerToken);
        if (_apiKey is not null) headers.Add("x-api-key", _apiKey);
        return headers;
    }

    private static BatchJacobianRequest BatchRequest(string model, IReadOnlyDictionary<string, FloatTensor> inputs, string wrt,
        IEnumerable<string>? of, string version, int maxRowsPerChunk, DerivativeMode mode)
    {
        var request = new BatchJacobianRequest { Model = model, Version = version, Wrt = wrt, MaxRowsPerChunk = maxRowsPerChunk, Mode = mode };
        AddInputs(request.Inputs, inputs);
        if (of is not null) request.Of.AddRange(of);
        return request;
    }

    private static void AddInputs(MapField<string, Tensor> target, IReadOnlyDictionary<string, FloatTensor> inputs)
    {
        foreach (var (name, t) in inputs) target[name] = t.ToProto();
    }

    internal static Dictionary<string, FloatTensor> FromProto(MapField<string, Tensor> tensors) =>
        tensors.ToDictionary(p => p.Key, p => FloatTensor.FromProto(p.Value));

    private static ModelDescription Describe(ModelInfo m) => new(m.Name, m.Version, m.State, m.Error,
        m.Inputs.Select(Describe).ToList(), m.Outputs.Select(Describe).ToList(), m.Opset);

    private static TensorDescription Describe(TensorInfo t) => new(t.Name, t.Shape.ToArray(), t.Dtype);

    /// <summary>Copies each chunk's rows into tensors sized for the whole batch from the first chunk.</summary>
    private sealed class ChunkAssembler
    {
        private readonly string _model, _version;
        private readonly DerivativeMode _mode;
        private readonly long _totalRows;
        private readonly Dictionary<string, (long[] Shape, float[] Data)> _outputs, _jacobians;
        private long _nextRow;

        public ChunkAssembler(BatchJacobianChunk first)
        {
            if (first.TotalRows <= 0 || first.RowCount <= 0)
                throw new InvalidDataException($"the first chunk has total_rows {first.TotalRows} and row_count {first.RowCount}; both must be positive");
            _model = first.Model;
            _version = first.Version;
            _mode = first.Mode;
            _totalRows = first.TotalRows;
            _outputs = Allocate(first.Outputs, first.RowCount, _totalRows);
            _jacobians = Allocate(first.Jacobians, first.RowCount, _totalRows);
        }

        public void Add(BatchJacobianChunk chunk)
        {
            if (chunk.RowOffset != _nextRow || chunk.RowCount <= 0 || chunk.RowOffset + chunk.RowCount > _totalRows || chunk.TotalRows != _totalRows)
                throw new InvalidDataException(
                    $"chunk rows [{chunk.RowOffset}, {chunk.RowOffset + chunk.RowCount}) of {chunk.TotalRows} do not follow row {_nextRow} of {_totalRows}");
            if (chunk.Model != _model || chunk.Version != _version)
                throw new InvalidDataException($"a chunk from {chunk.Model} version {chunk.Version} in a stream from {_model} version {_version}");
            Copy(chunk.Outputs, _outputs, chunk);
            Copy(chunk.Jacobians, _jacobians, chunk);
            _nextRow += chunk.RowCount;
        }

        public JacobianResult Result()
        {
            if (_nextRow != _totalRows) throw new InvalidDataException($"the stream ended after {_nextRow} of {_totalRows} rows");
            return new JacobianResult(_model, _version, ToTensors(_outputs), ToTensors(_jacobians)) { Mode = _mode };
        }

        private static Dictionary<string, (long[], float[])> Allocate(MapField<string, Tensor> tensors, long rows, long totalRows) =>
            tensors.ToDictionary(p => p.Key, p =>
            {
                long perRow = p.Value.Data.Count / rows;
                return ((long[])[totalRows, .. p.Value.Shape.Skip(1)], new float[checked(perRow * totalRows)]);
            });

        private static void Copy(MapField<string, Tensor> from, Dictionary<string, (long[] Shape, float[] Data)> to, BatchJacobianChunk chunk)
        {
            if (from.Count != to.Count || from.Keys.Any(k => !to.ContainsKey(k)))
                throw new InvalidDataException(
                    $"chunk at row {chunk.RowOffset} has tensors {string.Join(", ", from.Keys)}, the first had {string.Join(", ", to.Keys)}");
            foreach (var (name, t) in from)
            {
                var (shape, data) = to[name];
                long perRow = data.Length / shape[0];
                if (t.Shape.Count != shape.Length || t.Shape[0] != chunk.RowCount || !t.Shape.Skip(1).SequenceEqual(shape.Skip(1)) ||
                    t.Data.Count != chunk.RowCount * perRow)
                    throw new InvalidDataException(
                        $"'{name}' at row {chunk.RowOffset} has shape [{string.Join(", ", t.Shape)}] and {t.Data.Count} values; " +
                        $"expected [{chunk.RowCount}, {string.Join(", ", shape.Skip(1))}]");
                t.Data.CopyTo(data, checked((int)(chunk.RowOffset * perRow)));
            }
        }

        private static Dictionary<string, FloatTensor> ToTensors(Dictionary<string, (long[] Shape, float[] Data)> tensors) =>
            tensors.ToDictionary(p => p.Key, p => new FloatTensor(p.Value.Data, p.Value.Shape));
    }
}
