namespace JacService.Core.Models;

/// <summary>Outputs by name and, for Jacobian requests, the Jacobian of each requested output.</summary>
public sealed record EngineResult(
    IReadOnlyDictionary<string, HostTensor> Outputs,
    IReadOnlyDictionary<string, HostTensor> Jacobians);
