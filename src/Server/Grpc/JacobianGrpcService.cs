using Google.Protobuf.Collections;
using Grpc.Core;
using JacService.Core;
using JacService.Core.Models;
using JacService.Protos.V1;
using JacService.Server.Admission;
using JacService.Server.Batching;
using JacService.Server.Models;
using Wire = JacService.Protos.V1.Wire;

namespace JacService.Server.Grpc;

/// <summary>
/// The public API: maps messages to engine calls and back. Validation (the engine's validator) happens here, before
/// queuing, so a bad request costs no executor time; the error interceptor turns exceptions into status codes. AUTO
/// means the model's config.json default, and the engine's measured choice where it sets none.
/// Requests are the public messages; responses that carry tensors are their wire variants (JacService.Protos.V1.Wire:
/// the same bytes on the wire, the floats written from the result arrays without a copy into the message), which is why
/// the class binds itself to the generated service (ParsingServiceMethodProvider) instead of overriding its base.
/// </summary>
[BindServiceMethod(typeof(JacobianService), nameof(JacobianService.BindService))]
public sealed class JacobianGrpcService(ModelRegistry registry, JacobianStreams streams)
{
    public async Task<Wire.PredictResponse> Predict(PredictRequest request, ServerCallContext context)
    {
        using var lease = registry.Acquire(request.Model, request.Version);
        var entry = lease.Entry;
        var model = entry.Model!;
        var inputs = model.ValidateInputs(TensorMapping.FromProto(request.Inputs), batched: true);
        var result = await PredictCall.SubmitAsync(entry, inputs, CallDeadline.Of(context), context.CancellationToken, CallMemory.Of(context));
        CallArrays.ReturnWhenWritten(context, inputs, result);
        var response = new Wire.PredictResponse { Model = model.Name, Version = model.Version.ToString() };
        TensorMapping.Fill(response.Outputs, result.Outputs);
        return response;
    }

    public async Task<Wire.JacobianResponse> Jacobian(JacobianRequest request, ServerCallContext context)
    {
        var (model, result) = await RunJacobian(request.Model, request.Version, request.Inputs, request.Wrt, request.Of,
            request.Mode, batched: false, context);
        return SampleResponse(model, result);
    }

    /// <summary>One sample's answer: the result's batch of one without its batch axis. Also each JacobianStream message's.</summary>
    internal static Wire.JacobianResponse SampleResponse(ModelVersion model, EngineResult result)
    {
        var response = new Wire.JacobianResponse { Model = model.Name, Version = model.Version.ToString(), Mode = ModeMapping.ToWire(result.Mode) };
        TensorMapping.Fill(response.Outputs, result.Outputs, dropBatchAxis: true);
        TensorMapping.Fill(response.Jacobians, result.Jacobians, dropBatchAxis: true);
        return response;
    }

    public async Task<Wire.BatchJacobianResponse> BatchJacobian(BatchJacobianRequest request, ServerCallContext context)
    {
        var (model, result) = await RunJacobian(request.Model, request.Version, request.Inputs, request.Wrt, request.Of,
            request.Mode, batched: true, context);
        var response = new Wire.BatchJacobianResponse { Model = model.Name, Version = model.Version.ToString(), Mode = ModeMapping.ToWire(result.Mode) };
        TensorMapping.Fill(response.Outputs, result.Outputs);
        TensorMapping.Fill(response.Jacobians, result.Jacobians);
        return response;
    }

    public Task JacobianStream(IAsyncStreamReader<JacobianRequest> requestStream,
        IServerStreamWriter<Wire.JacobianStreamResponse> responseStream, ServerCallContext context) =>
        streams.Run(requestStream, responseStream, context);

    /// <summary>
    /// BatchJacobian in chunks of rows, each computed through the batcher like a BatchJacobian of its own and sent
    /// before the next is queued, so the server holds one chunk's result at a time and a cancelled or expired call
    /// stops between chunks. Validation runs once, on the whole request, before any chunk is queued.
    /// </summary>
    public async Task StreamBatchJacobian(BatchJacobianRequest request, IServerStreamWriter<Wire.BatchJacobianChunk> responseStream,
        ServerCallContext context)
    {
        // Resolved once: every chunk comes from the same version even if a reload swaps it meanwhile.
        using var call = JacobianCall.Prepare(registry, request.Model, request.Version, TensorMapping.FromProto(request.Inputs), request.Wrt,
            request.Of, request.Mode, batched: true);
        var model = call.Model;
        long bytesPerRow = model.ResultFloatsPerSample(call.Inputs, call.Wrt, call.Of) * sizeof(float);
        int rowsPerChunk = RowsPerChunk(model, bytesPerRow, request.MaxRowsPerChunk);
        var deadline = CallDeadline.Of(context);
        int batch = (int)call.Inputs[0].Shape[0];
        // One chunk's result at a time, the largest.
        CallMemory.Of(context)?.Hold(Math.Min(rowsPerChunk, batch) * bytesPerRow, "result chunk");
        for (int start = 0; start < batch; start += rowsPerChunk)
        {
            int rows = Math.Min(rowsPerChunk, batch - start);
            var chunkInputs = call.Inputs.Select(t => BatchRows.SliceRows(t, start, rows)).ToArray();
            var result = await call.Entry.Batcher!.SubmitAsync(call.Key, chunkInputs, deadline, context.CancellationToken);
            var chunk = new Wire.BatchJacobianChunk
            {
                Model = model.Name,
                Version = model.Version.ToString(),
                RowOffset = start,
                RowCount = rows,
                TotalRows = batch,
                Mode = ModeMapping.ToWire(result.Mode),
            };
            TensorMapping.Fill(chunk.Outputs, result.Outputs);
            TensorMapping.Fill(chunk.Jacobians, result.Jacobians);
            await responseStream.WriteAsync(chunk, context.CancellationToken);
            // Written: the chunk's message holds its bytes now, and its batch is done with its rows.
            CallArrays.ReturnNow([.. chunkInputs, .. result.Outputs.Values, .. result.Jacobians.Values]);
        }
        CallArrays.ReturnNow(call.Inputs);
    }

    // Map keys, shapes and field tags of one chunk on top of its floats: reserved so that a chunk whose floats fill
    // the result limit still fits a client receive limit of the same size.
    private const long ChunkFramingBytes = 64 << 10;

    /// <summary>As many rows as keep one chunk's message under the result limit (Limits:MaxResponseMiB), at most <paramref name="maxRows"/>.</summary>
    private static int RowsPerChunk(ModelVersion model, long bytesPerRow, int maxRows)
    {
        if (maxRows < 0)
            throw new InvalidRequestException($"max_rows_per_chunk must be 0 (as many as fit) or positive, got {maxRows}");
        long budget = Math.Max(model.Limits.MaxResultBytes - ChunkFramingBytes, 1);
        if (bytesPerRow > budget)
            throw new ResultTooLargeException(
                $"one sample's result would take {bytesPerRow:N0} bytes, over the limit of {budget:N0} per message; " +
                "name fewer outputs in 'of'");
        long rows = budget / bytesPerRow;
        if (maxRows > 0) rows = Math.Min(rows, maxRows);
        return (int)Math.Min(rows, int.MaxValue);
    }

    private async Task<(ModelVersion, EngineResult)> RunJacobian(string name, string version,
        MapField<string, Protos.V1.Tensor> inputs, string wrt, IReadOnlyCollection<string> of, Protos.V1.DerivativeMode mode, bool batched,
        ServerCallContext context)
    {
        using var call = JacobianCall.Prepare(registry, name, version, TensorMapping.FromProto(inputs), wrt, of, mode, batched);
        var result = await call.SubmitAsync(CallDeadline.Of(context), context.CancellationToken, CallMemory.Of(context));
        CallArrays.ReturnWhenWritten(context, call.Inputs, result);
        return (call.Model, result);
    }

    /// <summary>
    /// Validates like BatchJacobian plus the tangents (the engine's rules), refuses an oversized result, and queues
    /// the inputs with the tangents appended, so requests with the same shapes and T share a forward pass.
    /// </summary>
    public async Task<Wire.JvpResponse> Jvp(JvpRequest request, ServerCallContext context)
    {
        using var lease = registry.Acquire(request.Model, request.Version);
        var entry = lease.Entry;
        var model = entry.Model!;
        var inputs = model.ValidateInputs(TensorMapping.FromProto(request.Inputs), batched: true);
        int wrt = model.ResolveWrt(request.Wrt);
        var of = model.ResolveOf(request.Of);
        if (request.Tangents is null)
            throw new InvalidRequestException($"no tangents: give tangents for '{model.Inputs[wrt].Name}' with the batch axis first");
        var tangents = TensorMapping.FromProto(request.Tangents);
        long? directions = model.Requests.ValidateTangents(tangents, inputs, wrt);
        long resultBytes = model.CheckResultSize(inputs, wrt, of, directions ?? 1);
        CallMemory.Of(context)?.Hold(resultBytes, "result");
        HostTensor[] queued = [.. inputs, tangents];
        var key = WorkKey.For(WorkKind.Jvp, queued, wrt, of, Core.Derivatives.DerivativeMode.Forward);
        var result = await entry.Batcher!.SubmitAsync(key, queued, CallDeadline.Of(context), context.CancellationToken);
        CallArrays.ReturnWhenWritten(context, queued, result);
        var response = new Wire.JvpResponse { Model = model.Name, Version = model.Version.ToString(), Mode = ModeMapping.ToWire(result.Mode) };
        TensorMapping.Fill(response.Outputs, result.Outputs);
        TensorMapping.Fill(response.Jvps, result.Jacobians);
        return response;
    }

    /// <summary>
    /// Validates like BatchJacobian plus the cotangents (the engine's rules, which also resolve an empty 'of' to the
    /// outputs given cotangents), refuses an oversized result, and queues the inputs with the cotangents appended in
    /// the order of 'of', so requests with the same shapes and T share a reverse pass.
    /// </summary>
    public async Task<Wire.VjpResponse> Vjp(VjpRequest request, ServerCallContext context)
    {
        using var lease = registry.Acquire(request.Model, request.Version);
        var entry = lease.Entry;
        var model = entry.Model!;
        var inputs = model.ValidateInputs(TensorMapping.FromProto(request.Inputs), batched: true);
        int wrt = model.ResolveWrt(request.Wrt);
        var (cotangents, of, directions) = model.Requests.ValidateCotangents(TensorMapping.FromProto(request.Cotangents), request.Of, inputs,
            o => model.OutputSampleShape(inputs, o));
        long resultBytes = model.CheckResultSize(inputs, wrt, of, directions ?? 1, vjp: true);
        CallMemory.Of(context)?.Hold(resultBytes, "result");
        HostTensor[] queued = [.. inputs, .. cotangents];
        var key = WorkKey.For(WorkKind.Vjp, queued, wrt, of, Core.Derivatives.DerivativeMode.Reverse);
        var result = await entry.Batcher!.SubmitAsync(key, queued, CallDeadline.Of(context), context.CancellationToken);
        CallArrays.ReturnWhenWritten(context, queued, result);
        var response = new Wire.VjpResponse
        {
            Model = model.Name,
            Version = model.Version.ToString(),
            Mode = ModeMapping.ToWire(result.Mode),
            Vjp = TensorMapping.ToWire(result.Jacobians[model.Inputs[wrt].Name]),
        };
        TensorMapping.Fill(response.Outputs, result.Outputs);
        return response;
    }

    /// <summary>Per-sample Hessians of a batch, and the Jacobians when asked for; refused before queuing as SecondOrderCall says.</summary>
    public async Task<Wire.BatchHessianResponse> BatchHessian(BatchHessianRequest request, ServerCallContext context)
    {
        using var call = SecondOrderCall.Prepare(registry, request.Model, request.Version, TensorMapping.FromProto(request.Inputs), request.Wrt, request.Of,
            Core.Derivatives.SecondOrderKind.Hessian, request.IncludeJacobian);
        var result = await call.SubmitAsync(CallDeadline.Of(context), context.CancellationToken, CallMemory.Of(context));
        CallArrays.ReturnWhenWritten(context, call.Inputs, result);
        var response = new Wire.BatchHessianResponse { Model = call.Model.Name, Version = call.Model.Version.ToString() };
        TensorMapping.Fill(response.Outputs, result.Outputs);
        TensorMapping.Fill(response.Hessians, result.SecondOrder);
        if (request.IncludeJacobian) TensorMapping.Fill(response.Jacobians, result.Jacobians);
        return response;
    }

    /// <summary>Per-sample Laplacians over the requested axes of wrt (all when none), and the Jacobians when asked for.</summary>
    public async Task<Wire.BatchLaplacianResponse> BatchLaplacian(BatchLaplacianRequest request, ServerCallContext context)
    {
        using var call = SecondOrderCall.Prepare(registry, request.Model, request.Version, TensorMapping.FromProto(request.Inputs), request.Wrt, request.Of,
            Core.Derivatives.SecondOrderKind.Laplacian, request.IncludeJacobian, request.Axes);
        var result = await call.SubmitAsync(CallDeadline.Of(context), context.CancellationToken, CallMemory.Of(context));
        CallArrays.ReturnWhenWritten(context, call.Inputs, result);
        var response = new Wire.BatchLaplacianResponse { Model = call.Model.Name, Version = call.Model.Version.ToString() };
        TensorMapping.Fill(response.Outputs, result.Outputs);
        TensorMapping.Fill(response.Laplacians, result.SecondOrder);
        if (request.IncludeJacobian) TensorMapping.Fill(response.Jacobians, result.Jacobians);
        return response;
    }

    public Task<ListModelsResponse> ListModels(ListModelsRequest request, ServerCallContext context)
    {
        var response = new ListModelsResponse();
        response.Models.AddRange(registry.Entries.Select(ToInfo));
        return Task.FromResult(response);
    }

    public Task<ModelInfo> GetModel(GetModelRequest request, ServerCallContext context) =>
        Task.FromResult(ToInfo(registry.Find(request.Model, request.Version)));

    private static ModelInfo ToInfo(ModelEntry entry)
    {
        var info = new ModelInfo
        {
            Name = entry.Name,
            Version = entry.Version.ToString(),
            State = entry.State.ToString().ToUpperInvariant(),
            Error = entry.Error,
            DefaultMode = ModeMapping.ToProto(entry.DefaultMode),
            LoadedAt = entry.LoadedAt?.UtcDateTime.ToString("O") ?? "",
            LoadSeconds = entry.LoadSeconds,
            WarmupSeconds = entry.WarmupSeconds,
            CallsInFlight = entry.Lifetime?.Calls ?? 0,
        };
        info.History.AddRange(entry.History.Select(h => new StateChange
        {
            At = h.At.UtcDateTime.ToString("O"),
            State = h.State.ToString().ToUpperInvariant(),
            Note = h.Note,
        }));
        if (entry.Model is { } model)
        {
            info.Inputs.AddRange(model.Inputs.Select(TensorMapping.ToInfo));
            info.Outputs.AddRange(model.Outputs.Select(TensorMapping.ToInfo));
            info.Opset = model.Graph.Opset;
            info.DerivativeChoices.AddRange(model.DerivativeChoices.Select(ToProto));
            info.PredictRuntime = model.PredictRuntime;
            info.PredictRuntimeNote = model.PredictRuntimeNote;
            info.PredictChoices.AddRange(model.PredictChoices.Select(c => new Protos.V1.PredictChoice
            {
                Batch = c.Batch, Runtime = c.Runtime, OnnxruntimeUs = c.OnnxRuntimeMicroseconds, EngineUs = c.EngineMicroseconds, Timed = c.Timed,
            }));
            info.Device = model.Device;
            info.CudaGraphs = ToProto(entry.Lifetime!.Replicas);
            info.CompiledDerivatives = new CompiledDerivatives { Enabled = model.CompiledDerivativesNote.Length == 0, Note = model.CompiledDerivativesNote };
            info.CompiledDerivatives.Graphs.AddRange(model.CompiledDerivatives.Select(ToProto));
        }
        if (entry.Batcher is { } batcher)
        {
            // One read of the per-device counts, so the totals are their sums.
            var on = batcher.ExecutedOn;
            info.Batching = new BatchingStats
            {
                Batches = on.Sum(d => d.Batches),
                Rows = on.Sum(d => d.Rows),
                PaddedRows = batcher.Executed.PaddedRows,
                QueuedRows = batcher.Load.QueuedRows,
                MaxBatchSize = batcher.Options.MaxBatchSize,
                MaxQueueDelayUs = batcher.Options.MaxQueueDelayMicroseconds,
                AdaptiveDelay = batcher.Options.AdaptiveDelay,
                CurrentDelayUs = (long)batcher.CurrentDelay.TotalMicroseconds,
            };
            info.Batching.Devices.AddRange(on.Select(d => new DeviceBatches { Device = d.Device, Batches = d.Batches, Rows = d.Rows }));
        }
        return info;
    }

    private static CudaGraphs ToProto(IReadOnlyList<ModelVersion> replicas)
    {
        var primary = replicas[0];
        bool enabled = primary.Graphs.Enabled;
        var graphs = new CudaGraphs
        {
            Enabled = enabled,
            Note = enabled ? "" : primary.Limits.CudaGraphsNote,
            Recorded = replicas.Sum(r => r.Graphs.Recorded),
        };
        graphs.Fallbacks.AddRange(replicas.SelectMany(r => r.Graphs.Fallbacks.Select(f => new CudaGraphFallback { Pass = f.Pass, Reason = f.Reason, Device = r.Device })));
        return graphs;
    }

    private static CompiledDerivative ToProto(Core.Compiled.CompiledEntry e)
    {
        var graph = new CompiledDerivative { Kind = e.Kind, Wrt = e.Wrt, Mode = ModeMapping.ToProto(e.Mode), Compiled = e.Compiled, Note = e.Note };
        graph.Of.AddRange(e.Of);
        return graph;
    }

    private static Protos.V1.DerivativeChoice ToProto(Core.Derivatives.DerivativeChoice c)
    {
        var choice = new Protos.V1.DerivativeChoice
        {
            Wrt = c.Wrt,
            Batch = c.Batch,
            Mode = ModeMapping.ToProto(c.Mode),
            ForwardUs = c.ForwardMicroseconds,
            ReverseUs = c.ReverseMicroseconds,
            Timed = c.Timed,
        };
        choice.Of.AddRange(c.Of);
        return choice;
    }
}
