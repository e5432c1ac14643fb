using JacService.Protos.V1;

namespace JacService.Client;

/// <summary>
/// Outputs and the vector-Jacobian product of a Vjp call: <see cref="Vjp"/> is the gradient with respect to wrt of
/// the cotangent-weighted outputs, <c>[B] ++ in_shape(wrt)</c>, or <c>[B, T] ++ in_shape(wrt)</c> for cotangents
/// with a T axis.
/// </summary>
public sealed record VjpResult(
    string Model,
    string Version,
    IReadOnlyDictionary<string, FloatTensor> Outputs,
    FloatTensor Vjp,
    DerivativeMode Mode);
