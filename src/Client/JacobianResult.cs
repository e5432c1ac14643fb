using JacService.Protos.V1;

namespace JacService.Client;

/// <summary>
/// Outputs and Jacobians of a Jacobian or BatchJacobian call, by output name. For one sample,
/// <c>Jacobians[o].Shape = out_shape(o) ++ in_shape(wrt)</c>; for a batch the batch axis comes first on both.
/// </summary>
public sealed record JacobianResult(
    string Model,
    string Version,
    IReadOnlyDictionary<string, FloatTensor> Outputs,
    IReadOnlyDictionary<string, FloatTensor> Jacobians)
{
    /// <summary>The mode that computed the Jacobians (FORWARD or REVERSE); for a stream, the first chunk's.</summary>
    public DerivativeMode Mode { get; init; }
}
