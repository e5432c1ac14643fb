namespace JacService.Core.Models;

/// <summary>
/// Outputs by name and the derivatives asked for: per output in of, its Jacobian (Jacobian) or its directional
/// derivatives (Jvp); or, keyed by wrt's name, the vector-Jacobian product (Vjp).
/// </summary>
public sealed record EngineResult(
    IReadOnlyDictionary<string, HostTensor> Outputs,
    IReadOnlyDictionary<string, HostTensor> Jacobians)
{
    /// <summary>The mode that computed the derivatives; null for Predict.</summary>
    public Derivatives.DerivativeMode? Mode { get; init; }
}
