using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Google.Protobuf.Collections;
using Google.Protobuf.Reflection;
using Grpc.Core;
using JacService.Core.Models;
using JacService.Protos.Inference;
using JacService.Protos.V1;
using JacService.Server.Admission;
using JacService.Server.Batching;
using JacService.Server.Grpc;
using JacService.Server.Inference;
using JacService.Server.Execution;
using JacService.Server.Quotas;
using JacService.Server.Models;
using JacService.Server.Telemetry;
using Microsoft.Extensions.Hosting.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Wire = JacService.Protos.V1.Wire;

namespace JacService.Fuzz;

/// <summary>
/// Request validation and the batcher's row slicing on arbitrary requests against loaded models: the fixture models,
/// each with a real <see cref="ModelBatcher"/>, behind the real <see cref="JacobianGrpcService"/> (and the Open Inference
/// Protocol's ModelInfer, <see cref="InferenceGrpcService"/>) and <see cref="ErrorMappingInterceptor"/>. An input is one
/// byte choosing the method (low four bits) and how many copies of the request go in at once (so parts of different
/// requests share batches), then the request message as the wire carries it; for JacobianStream, the stream's
/// messages, each length-delimited.
/// A message that does not parse, and any status but INTERNAL, is the service working as designed; INTERNAL (an
/// exception the interceptor does not map), an answer whose shapes contradict the request, or copies of one request
/// answered differently, is a finding.
/// </summary>
public sealed class RequestHarness : IHarness, IDisposable
{
    /// <summary>
    /// By the input's low four bits. ModelInfer joined after inputs had been found and kept with nine methods taken modulo
    /// nine; 10 to 13 and 15 still name what they named then, so those inputs replay as found (the one kept, 15, among
    /// them). 14, a second Vjp then, is the REST binding's infer: the model's name (and, for a body with binary tensor
    /// data, a space and the JSON's length), a newline, and the body.
    /// </summary>
    private static readonly string[] Methods =
    [
        "Predict", "Jacobian", "BatchJacobian", "StreamBatchJacobian", "Jvp", "Vjp", "BatchHessian", "BatchLaplacian", "JacobianStream",
        "ModelInfer", "Jacobian", "BatchJacobian", "StreamBatchJacobian", "Jvp", RestInfer, "BatchHessian",
    ];

    private const string RestInfer = "RestInfer";

    /// <summary>
    /// Small batches and padding to buckets, so that requests of a few rows are cut into parts, stacked with others'
    /// and padded, and their rows sliced back out; a short fixed delay lets copies sent together meet in a batch.
    /// </summary>
    private static readonly BatchingOptions Batching = new()
    {
        MaxBatchSize = 4,
        PadToBucket = true,
        AdaptiveDelay = false,
        MaxQueueDelayMicroseconds = 200,
        QueueCapacity = 64,
        ExecutorThreads = 1,
    };

    private readonly ModelRegistry _registry = new(TimeProvider.System);
    private readonly JacobianGrpcService _service;
    private readonly InferenceGrpcService _inference;
    private readonly OpenInferenceCalls _calls;
    private readonly ErrorMappingInterceptor _interceptor;
    private readonly InternalErrors _internalErrors = new();

    /// <summary>The deadline each call carries: afl's per-input limit is 10 s, and copies share one executor.</summary>
    public static readonly TimeSpan DefaultCallTimeout = TimeSpan.FromSeconds(4);

    private readonly TimeSpan _callTimeout;

    public RequestHarness() : this(DefaultCallTimeout)
    {
    }

    /// <param name="limits">The engine's limits for the fixtures; <see cref="ModelHarness.Limits"/> where not given.</param>
    public RequestHarness(TimeSpan callTimeout, EngineLimits? limits = null)
    {
        _callTimeout = callTimeout;
        var root = RepositoryRoot.Find();
        var meter = new System.Diagnostics.Metrics.Meter("JacService.Fuzz");
        var metrics = new JacServiceMetrics(meter);
        foreach (var name in FixtureNames(root))
        {
            var model = ModelVersion.LoadFile(name, 1, RepositoryRoot.FixtureModel(root, name), limits ?? ModelHarness.Limits);
            var batcher = new ModelBatcher(model, Batching, TimeProvider.System, metrics);
            _registry.Set(new ModelEntry(name, 1, ModelState.Ready, "", new VersionLifetime(model, batcher)));
        }
        var callerErrors = new CallerErrorLog(Options.Create(new CallerErrorsOptions()), TimeProvider.System, NullLogger<CallerErrorLog>.Instance);
        _interceptor = new ErrorMappingInterceptor(_internalErrors, callerErrors);
        var serverLimits = Options.Create(new LimitsOptions());
        var streams = new JacobianStreams(_registry, serverLimits, _interceptor, metrics, StreamMessageQuota.None, new CallMemoryBudget(serverLimits, meter));
        _service = new JacobianGrpcService(_registry, streams);
        _calls = new OpenInferenceCalls(_registry, new ApplicationLifetime(NullLogger<ApplicationLifetime>.Instance), TimeProvider.System);
        _inference = new InferenceGrpcService(_calls);
    }

    public string Name => "request";

    public string Run(byte[] input)
    {
        if (input.Length == 0) return "empty";
        string method = Methods[input[0] & 0x0F];
        int copies = 1 + (input[0] >> 4) % 3;
        var message = input.AsMemory(1);
        try
        {
            return method switch
            {
                "Predict" => Unary(PredictRequest.Parser, message, copies, _service.Predict, r => CheckBatched(r.Outputs)),
                "Jacobian" => Unary(JacobianRequest.Parser, message, copies, _service.Jacobian, r => CheckAll(r.Outputs, r.Jacobians)),
                "BatchJacobian" => Unary(BatchJacobianRequest.Parser, message, copies, _service.BatchJacobian, r => CheckBatched(r.Outputs, r.Jacobians)),
                "StreamBatchJacobian" => Streaming(BatchJacobianRequest.Parser.ParseFrom(message.Span), copies),
                "Jvp" => Unary(JvpRequest.Parser, message, copies, _service.Jvp, r => CheckBatched(r.Outputs, r.Jvps)),
                "Vjp" => Unary(VjpRequest.Parser, message, copies, _service.Vjp, r => CheckBatched(r.Outputs, Single(r.Vjp))),
                "JacobianStream" => Duplex(message, copies),
                "ModelInfer" => Unary(ModelInferRequest.Parser, message, copies, _inference.ModelInfer, CheckInfer),
                RestInfer => Rest(message, copies),
                "BatchHessian" => Unary(BatchHessianRequest.Parser, message, copies, _service.BatchHessian,
                    r => CheckBatched(r.Outputs, r.Hessians, r.Jacobians)),
                _ => Unary(BatchLaplacianRequest.Parser, message, copies, _service.BatchLaplacian,
                    r => CheckBatched(r.Outputs, r.Laplacians, r.Jacobians)),
            };
        }
        catch (InvalidProtocolBufferException e)
        {
            // The server answers INVALID_ARGUMENT before the service sees the call (ParsingServiceMethodProvider).
            return $"{method}: does not parse: {e.Message}";
        }
    }

    private string Unary<TRequest, TResponse>(MessageParser<TRequest> parser, ReadOnlyMemory<byte> message, int copies,
        Func<TRequest, ServerCallContext, Task<TResponse>> call, Func<TResponse, long> check)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse> =>
        Unary(parser.ParseFrom(message.Span), copies, call, check);

    /// <summary>
    /// The REST binding's infer as its route reads it: a line with the model's name and, for a body with binary data, the
    /// Inference-Header-Content-Length after a space; then the body, translated to the gRPC binding's request, which is
    /// called as the route calls it. An answer's JSON must parse, and name as many bytes for each binary output as it has.
    /// </summary>
    private string Rest(ReadOnlyMemory<byte> message, int copies)
    {
        int newline = message.Span.IndexOf((byte)'\n');
        if (newline < 0) return $"{RestInfer}: no model line";
        string[] line = System.Text.Encoding.UTF8.GetString(message.Span[..newline]).Split(' ', 2);
        long? jsonLength = line.Length == 2 && long.TryParse(line[1], out long parsed) ? parsed : null;
        ModelInferRequest request;
        try
        {
            request = InferRequestJson.Read(message[(newline + 1)..], jsonLength, line[0], "");
        }
        catch (Core.InvalidRequestException e)
        {
            return $"{RestInfer}: InvalidArgument: {e.Message}";
        }
        return Unary<ModelInferRequest, ModelInferResponse>(request, copies,
            (r, c) => _calls.ModelInfer(r, CallDeadline.Of(c), c.CancellationToken, memory: null, rawOutputs: true), response =>
        {
            var binary = InferResponseJson.BinaryOutputs(request, response);
            using var written = new MemoryStream();
            var pipe = System.IO.Pipelines.PipeWriter.Create(written);
            InferResponseJson.WriteAsync(pipe, response, binary, CancellationToken.None).GetAwaiter().GetResult();
            pipe.Complete();
            using var json = JsonDocument.Parse(written.ToArray());
            var outputs = json.RootElement.GetProperty("outputs").EnumerateArray().ToArray();
            for (int i = 0; i < outputs.Length; i++)
                if (binary[i] && outputs[i].GetProperty("parameters").GetProperty(InferRequestJson.BinaryDataSize).GetInt64() != response.RawOutputContents[i].Length)
                    throw new HarnessFindingException($"{RestInfer}: output {i}'s {InferRequestJson.BinaryDataSize} is not its length");
            return CheckInfer(response);
        });
    }

    private string Unary<TRequest, TResponse>(TRequest request, int copies, Func<TRequest, ServerCallContext, Task<TResponse>> call, Func<TResponse, long> check)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        var calls = Enumerable.Range(0, copies)
            .Select(_ => Outcome(_interceptor.UnaryServerHandler(request, new FuzzCallContext(_callTimeout), (r, c) => call(r, c))))
            .ToArray();
        var outcomes = Task.WhenAll(calls).GetAwaiter().GetResult();
        var first = outcomes[0];
        for (int i = 1; i < outcomes.Length; i++)
            if (!Same(first, outcomes[i]))
                throw new HarnessFindingException($"{typeof(TRequest).Name}: copies of one request were answered differently: {Describe(first)} / {Describe(outcomes[i])}");
        if (first.Response is { } response)
        {
            long rows = check(response);
            return $"{typeof(TRequest).Name}: OK, {rows} rows, {copies} copies";
        }
        return $"{typeof(TRequest).Name}: {first.Status!.Value.StatusCode}: {first.Status.Value.Detail}";
    }

    private string Streaming(BatchJacobianRequest request, int copies)
    {
        async Task<CollectingWriter<Wire.BatchJacobianChunk>> Call()
        {
            var writer = new CollectingWriter<Wire.BatchJacobianChunk>();
            await _interceptor.ServerStreamingServerHandler(request, writer, new FuzzCallContext(_callTimeout), (r, w, c) => _service.StreamBatchJacobian(r, w, c));
            return writer;
        }
        var calls = Enumerable.Range(0, copies).Select(_ => Outcome(Call())).ToArray();
        var outcomes = Task.WhenAll(calls).GetAwaiter().GetResult();
        foreach (var outcome in outcomes)
        {
            if (outcome.Response is not { } writer) continue;
            long next = 0;
            foreach (var chunk in writer.Messages)
            {
                if (chunk.RowOffset != next || chunk.RowCount < 1 || chunk.TotalRows != writer.Messages[0].TotalRows)
                    throw new HarnessFindingException($"chunk at row {chunk.RowOffset} of {chunk.RowCount} rows (of {chunk.TotalRows}) after row {next}");
                if (CheckBatched(chunk.Outputs, chunk.Jacobians) != chunk.RowCount)
                    throw new HarnessFindingException($"chunk at row {chunk.RowOffset} claims {chunk.RowCount} rows, its tensors hold a different number");
                next += chunk.RowCount;
            }
            if (writer.Messages.Count == 0 || next != writer.Messages[0].TotalRows)
                throw new HarnessFindingException($"the chunks cover {next} rows of {(writer.Messages.Count == 0 ? "?" : writer.Messages[0].TotalRows)}");
        }
        return outcomes[0].Response is { } first
            ? $"StreamBatchJacobian: OK, {first.Messages.Count} chunks, {copies} copies"
            : $"StreamBatchJacobian: {outcomes[0].Status!.Value.StatusCode}: {outcomes[0].Status!.Value.Detail}";
    }

    /// <summary>
    /// JacobianStream: every copy is one stream of the same messages (read up to the first that does not parse, where the
    /// server would end the stream after answering the ones before). Each message must be answered once, in order, with
    /// a result of consistent shapes or a caller's status (never INTERNAL or UNKNOWN), and alike in every copy.
    /// </summary>
    private string Duplex(ReadOnlyMemory<byte> message, int copies)
    {
        var requests = new List<JacobianRequest>();
        using (var input = new MemoryStream(message.ToArray()))
        {
            try
            {
                while (input.Position < input.Length) requests.Add(JacobianRequest.Parser.ParseDelimitedFrom(input));
            }
            catch (InvalidProtocolBufferException)
            {
                // The stream ends at the message that does not parse; the ones before it are answered.
            }
        }
        async Task<List<Wire.JacobianStreamResponse>> Call()
        {
            var writer = new CollectingWriter<Wire.JacobianStreamResponse>();
            await _interceptor.DuplexStreamingServerHandler(new ListReader<JacobianRequest>(requests), writer, new FuzzCallContext(_callTimeout),
                (r, w, c) => _service.JacobianStream(r, w, c));
            return writer.Messages;
        }
        var outcomes = Task.WhenAll(Enumerable.Range(0, copies).Select(_ => Outcome(Call()))).GetAwaiter().GetResult();
        string? first = null;
        foreach (var outcome in outcomes)
        {
            if (outcome.Response is not { } answers) continue;
            if (answers.Count != requests.Count)
                throw new HarnessFindingException($"JacobianStream: {requests.Count} messages sent, {answers.Count} answered");
            var kinds = new List<string>();
            for (int i = 0; i < answers.Count; i++)
            {
                var answer = answers[i];
                if (answer.Sequence != i) throw new HarnessFindingException($"JacobianStream: answer {i} carries sequence {answer.Sequence}");
                if ((StatusCode)answer.Code is StatusCode.Internal or StatusCode.Unknown)
                    throw new HarnessFindingException($"JacobianStream: message {i}: {(StatusCode)answer.Code}: {answer.Message}", _internalErrors.Last);
                if (answer.Code == 0)
                {
                    if (answer.Result is null) throw new HarnessFindingException($"JacobianStream: message {i} is OK without a result");
                    CheckAll(answer.Result.Outputs, answer.Result.Jacobians);
                    kinds.Add("OK " + Shapes(answer.Result));
                }
                else
                {
                    kinds.Add(((StatusCode)answer.Code).ToString());
                }
            }
            // A full queue may refuse a message in one copy and not another, and a deadline end one copy and not another.
            bool mayDiffer = answers.Any(a => MayDiffer(new Status((StatusCode)a.Code, "")));
            string summary = string.Join("|", kinds);
            if (first is not null && !mayDiffer && summary != first)
                throw new HarnessFindingException($"JacobianStream: copies of one stream were answered differently: {first} / {summary}");
            if (!mayDiffer) first ??= summary;
        }
        return outcomes[0].Response is { } answered
            ? $"JacobianStream: {requests.Count} messages, {answered.Count(a => a.Code == 0)} OK, {copies} copies"
            : $"JacobianStream: {outcomes[0].Status!.Value.StatusCode}: {outcomes[0].Status!.Value.Detail}";
    }

    /// <summary>A call's answer or its status; INTERNAL (and any exception the interceptor let through) escapes.</summary>
    private async Task<Answer<T>> Outcome<T>(Task<T> call) where T : class
    {
        try
        {
            return new Answer<T>(await call, null);
        }
        catch (RpcException e) when (e.StatusCode != StatusCode.Internal && e.StatusCode != StatusCode.Unknown)
        {
            return new Answer<T>(null, e.Status);
        }
        catch (RpcException e)
        {
            throw new HarnessFindingException($"{e.StatusCode}: {e.Status.Detail}", _internalErrors.Last);
        }
    }

    /// <summary>
    /// Whether two copies of one request were answered alike: the same status, or answers with the same shapes. A full
    /// queue (RESOURCE_EXHAUSTED) may refuse one copy and not another, and a deadline end one and not another.
    /// </summary>
    private static bool Same<T>(Answer<T> a, Answer<T> b) where T : class
    {
        if (MayDiffer(a.Status) || MayDiffer(b.Status)) return true;
        if (a.Response is IMessage m && b.Response is IMessage n) return Shapes(m) == Shapes(n);
        return a.Status?.StatusCode == b.Status?.StatusCode;
    }

    /// <summary>A full queue, or a deadline that one copy met and another did not.</summary>
    private static bool MayDiffer(Status? status) =>
        status?.StatusCode is StatusCode.ResourceExhausted or StatusCode.DeadlineExceeded or StatusCode.Cancelled;

    /// <summary>The shapes of every tensor in a response, by field and key: what must agree between copies of a request.</summary>
    private static string Shapes(IMessage message) => message is ModelInferResponse infer
        ? string.Join(";", infer.Outputs.Select(o => $"{o.Name}:{string.Join("x", o.Shape)}"))
        : string.Join(";", message.Descriptor.Fields.InFieldNumberOrder()
        .Where(f => f.IsMap || (f.FieldType == FieldType.Message && f.MessageType == Wire.Tensor.Descriptor))
        .Select(f => f.Name + "=" + (f.Accessor.GetValue(message) switch
        {
            MapField<string, Wire.Tensor> map => string.Join(",", map.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}:{string.Join("x", p.Value.Shape)}")),
            Wire.Tensor t => string.Join("x", t.Shape),
            _ => "",
        })));

    private static string Describe<T>(Answer<T> o) where T : class =>
        o.Response is IMessage m ? "OK " + Shapes(m) : $"{o.Status!.Value.StatusCode} {o.Status.Value.Detail}";

    /// <summary>
    /// Every output of a ModelInfer answer is FP32 with as many values as its shape says (in fp32_contents, or in the
    /// raw_output_contents entry at its index) and the same rows as the others; returns the rows.
    /// </summary>
    private static long CheckInfer(ModelInferResponse response)
    {
        bool raw = response.RawOutputContents.Count > 0;
        if (raw && response.RawOutputContents.Count != response.Outputs.Count)
            throw new HarnessFindingException($"ModelInfer: {response.Outputs.Count} outputs and {response.RawOutputContents.Count} raw contents");
        long rows = -1;
        for (int i = 0; i < response.Outputs.Count; i++)
        {
            var output = response.Outputs[i];
            long count = output.Shape.Aggregate(1L, (p, d) => p * d);
            long bytes = raw ? response.RawOutputContents[i].Length : 4L * (output.Contents?.Fp32Contents.Count ?? 0);
            if (output.Datatype != "FP32" || output.Shape.Any(d => d < 0) || bytes != 4 * count)
                throw new HarnessFindingException($"ModelInfer: '{output.Name}' is {output.Datatype} [{string.Join(", ", output.Shape)}] with {bytes} bytes of values");
            if (output.Shape.Count == 0) throw new HarnessFindingException($"ModelInfer: '{output.Name}' has no batch axis");
            if (rows >= 0 && output.Shape[0] != rows) throw new HarnessFindingException($"ModelInfer: '{output.Name}' has {output.Shape[0]} rows, another output {rows}");
            rows = output.Shape[0];
        }
        return rows;
    }

    private static MapField<string, Wire.Tensor> Single(Wire.Tensor? t)
    {
        var map = new MapField<string, Wire.Tensor>();
        if (t is not null) map["vjp"] = t;
        return map;
    }

    /// <summary>Every tensor holds as many values as its shape says and the same number of rows; returns the rows.</summary>
    private static long CheckBatched(params MapField<string, Wire.Tensor>[] maps)
    {
        long rows = -1;
        foreach (var (name, t) in maps.SelectMany(m => m))
        {
            CheckLength(name, t);
            if (t.Shape.Count == 0) throw new HarnessFindingException($"'{name}' has no batch axis");
            if (rows >= 0 && t.Shape[0] != rows) throw new HarnessFindingException($"'{name}' has {t.Shape[0]} rows, another tensor {rows}");
            rows = t.Shape[0];
        }
        return rows;
    }

    private static long CheckAll(params MapField<string, Wire.Tensor>[] maps)
    {
        foreach (var (name, t) in maps.SelectMany(m => m)) CheckLength(name, t);
        return 1;
    }

    /// <summary>The answer's floats go out as the bytes of a packed repeated float (the server's wire variant): 4 per value.</summary>
    private static void CheckLength(string name, Wire.Tensor t)
    {
        long count = t.Shape.Aggregate(1L, (p, d) => p * d);
        if (t.Shape.Any(d => d < 0) || t.Data.Length % sizeof(float) != 0 || count != t.Data.Length / sizeof(float))
            throw new HarnessFindingException($"'{name}' has shape [{string.Join(", ", t.Shape)}] and {t.Data.Length} bytes of values");
    }

    private static IEnumerable<string> FixtureNames(string root) =>
        Directory.GetFiles(Path.Combine(root, "tests", "fixtures", "reference"), "*.json").Select(f => Path.GetFileNameWithoutExtension(f)!).Order();

    /// <summary>Each fixture's reference inputs as a request of every method, once alone and once as two copies.</summary>
    public void WriteSeeds(string directory)
    {
        Directory.CreateDirectory(directory);
        var root = RepositoryRoot.Find();
        foreach (var name in FixtureNames(root))
        {
            var model = _registry.Acquire(name, "");
            using var lease = model;
            var version = lease.Entry.Model!;
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "tests", "fixtures", "reference", name + ".json")));
            var inputs = doc.RootElement.GetProperty("inputs").EnumerateObject()
                .ToDictionary(p => p.Name, p => new Protos.V1.Tensor
                {
                    Shape = { p.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()) },
                    Data = { p.Value.GetProperty("data").EnumerateArray().Select(d => d.GetSingle()) },
                });
            var wrt = version.Inputs.First(i => Core.Onnx.ElementTypes.IsFloat(i.ElementType)).Name;
            var outputs = version.PredictInEngine(version.ValidateInputs(inputs.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape.ToArray(), p.Value.Data.ToArray())), batched: true)).Outputs;

            var requests = new List<(int Method, object Message, string Variant)>();
            var predict = new PredictRequest { Model = name };
            predict.Inputs.Add(inputs);
            requests.Add((0, predict, ""));
            var single = new JacobianRequest { Model = name, Wrt = wrt };
            foreach (var (key, t) in inputs) single.Inputs[key] = new Protos.V1.Tensor { Shape = { t.Shape.Skip(1) }, Data = { t.Data.Take(t.Data.Count / (int)t.Shape[0]) } };
            requests.Add((1, single, ""));
            var batch = new BatchJacobianRequest { Model = name, Wrt = wrt };
            batch.Inputs.Add(inputs);
            requests.Add((2, batch, ""));
            requests.Add((3, new BatchJacobianRequest(batch) { MaxRowsPerChunk = 2 }, ""));
            var jvp = new JvpRequest { Model = name, Wrt = wrt, Tangents = new Protos.V1.Tensor { Shape = { inputs[wrt].Shape }, Data = { inputs[wrt].Data.Select(_ => 1f) } } };
            jvp.Inputs.Add(inputs);
            requests.Add((4, jvp, ""));
            var vjp = new VjpRequest { Model = name, Wrt = wrt };
            vjp.Inputs.Add(inputs);
            foreach (var (key, t) in outputs.Where(p => version.Outputs.First(o => o.Name == p.Key).ElementType is Core.Onnx.ElementType.Float).Take(1))
                vjp.Cotangents[key] = new Protos.V1.Tensor { Shape = { t.Shape }, Data = { t.Data.Select(_ => 1f) } };
            requests.Add((5, vjp, ""));
            // One row: a wide model's Hessian of the reference batch takes seconds here, against the calls' deadline.
            var firstRow = inputs.ToDictionary(p => p.Key, p => new Protos.V1.Tensor
            {
                Shape = { 1, p.Value.Shape.Skip(1) },
                Data = { p.Value.Data.Take(p.Value.Data.Count / (int)p.Value.Shape[0]) },
            });
            var hessian = new BatchHessianRequest { Model = name, Wrt = wrt, IncludeJacobian = true };
            hessian.Inputs.Add(firstRow);
            requests.Add((6, hessian, ""));
            var laplacian = new BatchLaplacianRequest { Model = name, Wrt = wrt, Axes = { 0 } };
            laplacian.Inputs.Add(inputs);
            requests.Add((7, laplacian, ""));
            // A stream of the single-sample request, the same with an unknown wrt, and the first again.
            var stream = new MemoryStream();
            single.WriteDelimitedTo(stream);
            new JacobianRequest(single) { Wrt = "no-such-input" }.WriteDelimitedTo(stream);
            single.WriteDelimitedTo(stream);
            requests.Add((8, new RawMessage(stream.ToArray()), ""));
            // ModelInfer: a Predict in typed contents, a reverse-mode Jacobian in raw contents, a Laplacian.
            requests.Add((9, Infer(name, inputs, raw: false), ""));
            requests.Add((9, Infer(name, inputs, raw: true, ("derivative", "jacobian"), ("wrt", wrt), ("mode", "reverse")), ".jacobian"));
            requests.Add((9, Infer(name, inputs, raw: false, ("derivative", "laplacian"), ("wrt", wrt), ("axes", "0")), ".laplacian"));
            // The REST binding: a Predict with nested data, a Jacobian with flat data.
            requests.Add((14, new RawMessage(RestBody(name, inputs, nested: true)), ""));
            requests.Add((14, new RawMessage(RestBody(name, inputs, nested: false, ("derivative", "jacobian"), ("wrt", wrt))), ".jacobian"));
            requests.Add((14, new RawMessage(RestBinaryBody(name, inputs, ("derivative", "jacobian"), ("wrt", wrt))), ".jacobian-binary"));

            foreach (var (method, request, variant) in requests)
                for (int copies = 1; copies <= 2; copies++)
                {
                    // Two copies of a few methods only: the corpus stays small, and the fuzzer flips the byte for the rest.
                    if (copies == 2 && (method is not (0 or 2 or 4 or 9) || variant != "")) continue;
                    byte head = (byte)(method + ((copies - 1) << 4));
                    byte[] body = request is RawMessage raw ? raw.Bytes : ((IMessage)request).ToByteArray();
                    File.WriteAllBytes(Path.Combine(directory, $"{name}-{Methods[method]}{variant}-x{copies}.bin"), [head, .. body]);
                }
        }
    }

    /// <summary>The REST binding's infer of FP32 inputs: the model's name, a newline, the JSON body.</summary>
    private static byte[] RestBody(string model, Dictionary<string, Protos.V1.Tensor> inputs, bool nested, params (string Key, string Value)[] parameters)
    {
        static JsonNode Data(IEnumerable<float> values, long[] shape)
        {
            if (shape.Length <= 1) return new JsonArray([.. values.Select(v => (JsonNode)v)]);
            var rows = values.Chunk((int)(shape[1..].Aggregate(1L, (p, d) => p * d)));
            return new JsonArray([.. rows.Select(r => Data(r, shape[1..]))]);
        }
        var body = new JsonObject
        {
            ["inputs"] = new JsonArray([.. inputs.Select(p => (JsonNode)new JsonObject
            {
                ["name"] = p.Key,
                ["shape"] = new JsonArray([.. p.Value.Shape.Select(d => (JsonNode)d)]),
                ["datatype"] = "FP32",
                ["data"] = nested ? Data(p.Value.Data, [.. p.Value.Shape]) : Data(p.Value.Data, []),
            })]),
        };
        if (parameters.Length > 0)
            body["parameters"] = new JsonObject(parameters.Select(p => KeyValuePair.Create("jacservice." + p.Key, (JsonNode?)p.Value)));
        return System.Text.Encoding.UTF8.GetBytes($"{model}\n{body.ToJsonString()}");
    }

    /// <summary>
    /// The REST binding's infer with the binary tensor data extension: the model's name and the JSON's length, a newline,
    /// the JSON, each input's float32 bytes; every output asked for as binary data.
    /// </summary>
    private static byte[] RestBinaryBody(string model, Dictionary<string, Protos.V1.Tensor> inputs, params (string Key, string Value)[] parameters)
    {
        var body = new JsonObject
        {
            ["inputs"] = new JsonArray([.. inputs.Select(p => (JsonNode)new JsonObject
            {
                ["name"] = p.Key,
                ["shape"] = new JsonArray([.. p.Value.Shape.Select(d => (JsonNode)d)]),
                ["datatype"] = "FP32",
                ["parameters"] = new JsonObject { ["binary_data_size"] = 4 * p.Value.Data.Count },
            })]),
            ["parameters"] = new JsonObject([KeyValuePair.Create("binary_data_output", (JsonNode?)true),
                .. parameters.Select(p => KeyValuePair.Create("jacservice." + p.Key, (JsonNode?)p.Value))]),
        };
        byte[] json = System.Text.Encoding.UTF8.GetBytes(body.ToJsonString());
        return [.. System.Text.Encoding.UTF8.GetBytes($"{model} {json.Length}\n"), .. json,
            .. inputs.Values.SelectMany(t => MemoryMarshal.AsBytes(t.Data.ToArray().AsSpan()).ToArray())];
    }

    /// <summary>A ModelInfer request of FP32 inputs, with "jacservice.*" parameters given without their prefix.</summary>
    private static ModelInferRequest Infer(string model, Dictionary<string, Protos.V1.Tensor> inputs, bool raw, params (string Key, string Value)[] parameters)
    {
        var request = new ModelInferRequest { ModelName = model };
        foreach (var (key, t) in inputs)
        {
            var input = new ModelInferRequest.Types.InferInputTensor { Name = key, Datatype = "FP32", Shape = { t.Shape } };
            if (raw) request.RawInputContents.Add(ByteString.CopyFrom(MemoryMarshal.AsBytes(t.Data.ToArray().AsSpan())));
            else input.Contents = new InferTensorContents { Fp32Contents = { t.Data } };
            request.Inputs.Add(input);
        }
        foreach (var (key, value) in parameters)
            request.Parameters["jacservice." + key] = new InferParameter { StringParam = value };
        return request;
    }

    public void Dispose() => _registry.Dispose();

    private sealed record Answer<T>(T? Response, Status? Status) where T : class;

    /// <summary>A seed's body that is not one message: a stream's length-delimited messages.</summary>
    private sealed record RawMessage(byte[] Bytes);

    /// <summary>The interceptor's logger: the exception behind an INTERNAL status is logged, not returned.</summary>
    private sealed class InternalErrors : ILogger<ErrorMappingInterceptor>
    {
        private readonly ConcurrentQueue<Exception> _errors = new();

        public Exception? Last => _errors.TryDequeue(out var e) ? e : null;

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Error;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (exception is not null) _errors.Enqueue(exception);
        }
    }

    private sealed class CollectingWriter<T> : IServerStreamWriter<T> where T : IDeepCloneable<T>
    {
        public List<T> Messages { get; } = [];

        public WriteOptions? WriteOptions { get; set; }

        public Task WriteAsync(T message)
        {
            Messages.Add(message.Clone());
            return Task.CompletedTask;
        }

        // grpc-dotnet's writer takes a token too; the interface's default refuses a cancellable one.
        public Task WriteAsync(T message, CancellationToken cancellationToken) => WriteAsync(message);
    }

    private sealed class ListReader<T>(IReadOnlyList<T> messages) : IAsyncStreamReader<T>
    {
        private int _next = -1;

        public T Current => messages[_next];

        public Task<bool> MoveNext(CancellationToken cancellationToken) => Task.FromResult(++_next < messages.Count);
    }

    /// <summary>
    /// A call with a deadline, as a real caller would set: legitimate but slow work (a wide model's Hessian, several
    /// copies queued behind one executor) ends as DEADLINE_EXCEEDED or CANCELLED, not as a run over afl's per-input
    /// timeout, which would be reported as a hang.
    /// </summary>
    private sealed class FuzzCallContext(TimeSpan timeout) : ServerCallContext
    {
        private readonly DateTime _deadline = DateTime.UtcNow + timeout;
        private readonly CancellationTokenSource _timeout = new(timeout);

        protected override string MethodCore => "/jacservice.v1.JacobianService/Fuzz";
        protected override string HostCore => "127.0.0.1";
        protected override string PeerCore => "ipv4:127.0.0.1:1";
        protected override DateTime DeadlineCore => _deadline;
        protected override Metadata RequestHeadersCore { get; } = [];
        protected override CancellationToken CancellationTokenCore => _timeout.Token;
        protected override Metadata ResponseTrailersCore { get; } = [];
        protected override Status StatusCore { get; set; }
        protected override WriteOptions? WriteOptionsCore { get; set; }
        protected override AuthContext AuthContextCore => new(null, []);

        protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) => throw new NotSupportedException();

        protected override Task WriteResponseHeadersAsyncCore(Metadata responseHeaders) => Task.CompletedTask;
    }
}
