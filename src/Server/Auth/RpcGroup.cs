namespace JacService.Server.Auth;

/// <summary>The groups of RPCs that each get one authorisation rule (<see cref="RpcGroupOptions"/>).</summary>
public enum RpcGroup
{
    /// <summary>Predict and every derivative: the calls that cost executor time.</summary>
    Inference,

    /// <summary>ListModels and GetModel: what is served and its shapes.</summary>
    Metadata,

    /// <summary>The ModelControl service: changes what is served.</summary>
    Control,

    /// <summary>grpc.health.v1.Health: probes.</summary>
    Health,

    /// <summary>gRPC server reflection: what tools like grpcurl ask first.</summary>
    Reflection,
}
