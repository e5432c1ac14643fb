using Grpc.Core;
using JacService.Core.Models;
using JacService.Protos.V1;
using JacService.Server.Execution;
using JacService.Server.Models;

namespace JacService.Server.Grpc;

/// <summary>
/// The public API: maps messages to engine calls and back. Validation happens here, before queuing, so a bad
/// request costs no executor time; the error interceptor turns exceptions into status codes.
/// </summary>
public sealed class JacobianGrpcService(ModelRegistry registry, TorchExecutor executor) : JacobianService.JacobianServiceBase
{
    public override async Task<PredictResponse> Predict(PredictRequest request, ServerCallContext context)
    {
        var model = registry.Resolve(request.Model, request.Version);
        var inputs = model.ValidateInputs(TensorMapping.FromProto(request.Inputs), batched: true);
        var result = await executor.RunAsync(() => model.Predict(inputs), context.CancellationToken);
        var response = new PredictResponse { Model = model.Name, Version = model.Version.ToString() };
        TensorMapping.Fill(response.Outputs, result.Outputs);
        return response;
    }

    public override async Task<JacobianResponse> Jacobian(JacobianRequest request, ServerCallContext context)
    {
        var (model, result) = await RunJacobian(request.Model, request.Version, request.Inputs, request.Wrt, request.Of,
            batched: false, context);
        var response = new JacobianResponse { Model = model.Name, Version = model.Version.ToString() };
        TensorMapping.Fill(response.Outputs, result.Outputs, dropBatchAxis: true);
        TensorMapping.Fill(response.Jacobians, result.Jacobians, dropBatchAxis: true);
        return response;
    }

    public override async Task<BatchJacobianResponse> BatchJacobian(BatchJacobianRequest request, ServerCallContext context)
    {
        var (model, result) = await RunJacobian(request.Model, request.Version, request.Inputs, request.Wrt, request.Of,
            batched: true, context);
        var response = new BatchJacobianResponse { Model = model.Name, Version = model.Version.ToString() };
        TensorMapping.Fill(response.Outputs, result.Outputs);
        TensorMapping.Fill(response.Jacobians, result.Jacobians);
        return response;
    }

    private async Task<(ModelVersion, EngineResult)> RunJacobian(string name, string version,
        Google.Protobuf.Collections.MapField<string, Protos.V1.Tensor> inputs, string wrt, IReadOnlyCollection<string> of,
        bool batched, ServerCallContext context)
    {
        var model = registry.Resolve(name, version);
        var host = model.ValidateInputs(TensorMapping.FromProto(inputs), batched);
        int wrtIndex = model.ResolveWrt(wrt);
        var ofIndices = model.ResolveOf(of);
        var result = await executor.RunAsync(() => model.Jacobian(host, wrtIndex, ofIndices), context.CancellationToken);
        return (model, result);
    }

    public override Task<ListModelsResponse> ListModels(ListModelsRequest request, ServerCallContext context)
    {
        var response = new ListModelsResponse();
        response.Models.AddRange(registry.Entries.Select(ToInfo));
        return Task.FromResult(response);
    }

    public override Task<ModelInfo> GetModel(GetModelRequest request, ServerCallContext context) =>
        Task.FromResult(ToInfo(registry.Find(request.Model, request.Version)));

    private static ModelInfo ToInfo(ModelEntry entry)
    {
        var info = new ModelInfo
        {
            Name = entry.Name,
            Version = entry.Version.ToString(),
            State = entry.State.ToString().ToUpperInvariant(),
            Error = entry.Error,
        };
        if (entry.Model is { } model)
        {
            info.Inputs.AddRange(model.Inputs.Select(TensorMapping.ToInfo));
            info.Outputs.AddRange(model.Outputs.Select(TensorMapping.ToInfo));
            info.Opset = model.Graph.Opset;
        }
        return info;
    }
}
