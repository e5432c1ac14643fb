namespace JacService.Core.Models;

/// <summary>
/// Outputs by name and the derivatives asked for: per output in of, its Jacobian (Jacobian) or its directional
/// derivatives (Jvp); or, keyed by wrt's name, the vector-Jacobian product (Vjp). Hessians and Laplacians, per output
/// in of, are in <see cref="SecondOrder"/> (and Jacobians then only when asked for).
/// </summary>
public sealed record EngineResult(
    IReadOnlyDictionary<string, HostTensor> Outputs,
    IReadOnlyDictionary<string, HostTensor> Jacobians)
{
    /// <summary>The mode that computed the derivatives; null for Predict.</summary>
    public Derivatives.DerivativeMode? Mode { get; init; }

    /// <summary>The derivatives came from a compiled derivative graph in ONNX Runtime (Jacobians, Vjp) rather than the interpreter.</summary>
    public bool Compiled { get; init; }

    /// <summary>Per output in of, its Hessians or Laplacians; empty for first-order work.</summary>
    public IReadOnlyDictionary<string, HostTensor> SecondOrder { get; init; } = new Dictionary<string, HostTensor>();
}
