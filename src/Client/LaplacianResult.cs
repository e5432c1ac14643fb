namespace JacService.Client;

/// <summary>
/// Outputs and per-sample Laplacians of a BatchLaplacian call, by output name, batch axis first:
/// <c>Laplacians[o].Shape</c> is <c>[B] ++ out_shape(o)</c>, the sum of the second derivatives over the chosen
/// elements of wrt. <see cref="Jacobians"/> (<c>[B] ++ out_shape(o) ++ in_shape(wrt)</c>, over every element of wrt) is
/// empty unless the call asked for them.
/// </summary>
public sealed record LaplacianResult(
    string Model,
    string Version,
    IReadOnlyDictionary<string, FloatTensor> Outputs,
    IReadOnlyDictionary<string, FloatTensor> Laplacians,
    IReadOnlyDictionary<string, FloatTensor> Jacobians);
