using Microsoft.AspNetCore.Http;

namespace JacService.Server.Inference;

/// <summary>
/// Endpoint metadata of a route of the Open Inference Protocol's HTTP/REST binding: the gRPC method it stands for
/// ("/inference.GRPCInferenceService/ModelInfer"), by which authorisation, quotas and metrics treat it as that call.
/// </summary>
public sealed record OpenInferenceRoute(string GrpcMethod)
{
    /// <summary>The method's own name, "ModelInfer", as metrics and logs name methods.</summary>
    public string Name => GrpcMethod[(GrpcMethod.LastIndexOf('/') + 1)..];

    public static OpenInferenceRoute? Of(HttpContext context) => context.GetEndpoint()?.Metadata.GetMetadata<OpenInferenceRoute>();
}
