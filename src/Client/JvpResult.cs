using JacService.Protos.V1;

namespace JacService.Client;

/// <summary>
/// Outputs and Jacobian-vector products of a Jvp call, by output name, batch axis first:
/// <c>Jvps[o].Shape</c> is <c>[B] ++ out_shape(o)</c>, or <c>[B, T] ++ out_shape(o)</c> for tangents with a T axis.
/// </summary>
public sealed record JvpResult(
    string Model,
    string Version,
    IReadOnlyDictionary<string, FloatTensor> Outputs,
    IReadOnlyDictionary<string, FloatTensor> Jvps,
    DerivativeMode Mode);
