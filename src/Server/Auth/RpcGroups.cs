using JacService.Protos.V1;
using JacService.Server.Inference;
using Microsoft.AspNetCore.Http;

namespace JacService.Server.Auth;

/// <summary>
/// Which group each RPC belongs to, by its full gRPC method name. Every method is listed by name: a method added to
/// the contract and not here belongs to no group, so <see cref="Of"/> answers null and the call is refused to everyone
/// but an authenticated caller, never let through anonymously by accident (a test walks the contract against this table).
/// </summary>
public static class RpcGroups
{
    private const string Jacobian = "/" + "jacservice.v1.JacobianService" + "/";
    private const string Inference = "/" + "inference.GRPCInferenceService" + "/";

    private static readonly Dictionary<string, RpcGroup> Methods = new(StringComparer.Ordinal)
    {
        [Jacobian + "Predict"] = RpcGroup.Inference,
        [Jacobian + "Jacobian"] = RpcGroup.Inference,
        [Jacobian + "BatchJacobian"] = RpcGroup.Inference,
        [Jacobian + "StreamBatchJacobian"] = RpcGroup.Inference,
        [Jacobian + "JacobianStream"] = RpcGroup.Inference,
        [Jacobian + "Jvp"] = RpcGroup.Inference,
        [Jacobian + "Vjp"] = RpcGroup.Inference,
        [Jacobian + "BatchHessian"] = RpcGroup.Inference,
        [Jacobian + "BatchLaplacian"] = RpcGroup.Inference,
        [Jacobian + "ListModels"] = RpcGroup.Metadata,
        [Jacobian + "GetModel"] = RpcGroup.Metadata,
        // The Open Inference Protocol: the same groups as the calls they stand for. ModelReady names a model, as
        // GetModel does; the server's liveness and readiness are probes.
        [Inference + "ModelInfer"] = RpcGroup.Inference,
        [Inference + "ModelMetadata"] = RpcGroup.Metadata,
        [Inference + "ModelReady"] = RpcGroup.Metadata,
        [Inference + "ServerMetadata"] = RpcGroup.Metadata,
        [Inference + "ServerLive"] = RpcGroup.Health,
        [Inference + "ServerReady"] = RpcGroup.Health,
    };

    /// <summary>Whole services that form one group.</summary>
    private static readonly Dictionary<string, RpcGroup> Services = new(StringComparer.Ordinal)
    {
        [ModelControl.Descriptor.FullName] = RpcGroup.Control,
        ["grpc.health.v1.Health"] = RpcGroup.Health,
        ["grpc.reflection.v1alpha.ServerReflection"] = RpcGroup.Reflection,
        ["grpc.reflection.v1.ServerReflection"] = RpcGroup.Reflection,
    };

    /// <summary>
    /// The gRPC method a request calls, "/package.Service/Method": its path, or for a route of the Open Inference Protocol's
    /// HTTP/REST binding the gRPC method that route stands for, so each call has one group and one quota in either binding.
    /// </summary>
    public static string MethodOf(HttpContext context) =>
        OpenInferenceRoute.Of(context)?.GrpcMethod ?? context.Request.Path.Value ?? "";

    /// <summary>The group of "/package.Service/Method" (a request path), or null for a method the table does not know.</summary>
    public static RpcGroup? Of(string path)
    {
        if (Methods.TryGetValue(path, out var group)) return group;
        int slash = path.LastIndexOf('/');
        return slash > 1 && Services.TryGetValue(path[1..slash], out group) ? group : null;
    }
}
