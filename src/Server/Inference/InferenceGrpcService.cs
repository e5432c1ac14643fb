using Grpc.Core;
using JacService.Protos.Inference;
using JacService.Server.Admission;
using JacService.Server.Grpc;

namespace JacService.Server.Inference;

/// <summary>
/// The Open Inference Protocol's gRPC binding: <see cref="OpenInferenceCalls"/> as the service its .proto declares. Errors
/// take the same status codes as JacobianService's (the error interceptor), which are the protocol's conventions too.
/// </summary>
public sealed class InferenceGrpcService(OpenInferenceCalls calls) : GRPCInferenceService.GRPCInferenceServiceBase
{
    public override Task<ServerLiveResponse> ServerLive(ServerLiveRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerLiveResponse { Live = true });

    public override Task<ServerReadyResponse> ServerReady(ServerReadyRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerReadyResponse { Ready = calls.ServerReady() });

    public override Task<ModelReadyResponse> ModelReady(ModelReadyRequest request, ServerCallContext context) =>
        Task.FromResult(new ModelReadyResponse { Ready = calls.ModelReady(request.Name, request.Version) });

    public override Task<ServerMetadataResponse> ServerMetadata(ServerMetadataRequest request, ServerCallContext context) =>
        Task.FromResult(calls.ServerMetadata());

    public override Task<ModelMetadataResponse> ModelMetadata(ModelMetadataRequest request, ServerCallContext context) =>
        Task.FromResult(calls.ModelMetadata(request.Name, request.Version));

    public override Task<ModelInferResponse> ModelInfer(ModelInferRequest request, ServerCallContext context) =>
        // A caller that sends raw contents reads raw contents.
        calls.ModelInfer(request, CallDeadline.Of(context), context.CancellationToken, CallMemory.Of(context), rawOutputs: request.RawInputContents.Count > 0);
}
