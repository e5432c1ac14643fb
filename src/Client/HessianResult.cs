namespace JacService.Client;

/// <summary>
/// Outputs and per-sample Hessians of a BatchHessian call, by output name, batch axis first:
/// <c>Hessians[o].Shape</c> is <c>[B] ++ out_shape(o) ++ in_shape(wrt) ++ in_shape(wrt)</c>, symmetric in its last two
/// groups of axes. <see cref="Jacobians"/> (<c>[B] ++ out_shape(o) ++ in_shape(wrt)</c>) is empty unless the call asked
/// for them.
/// </summary>
public sealed record HessianResult(
    string Model,
    string Version,
    IReadOnlyDictionary<string, FloatTensor> Outputs,
    IReadOnlyDictionary<string, FloatTensor> Hessians,
    IReadOnlyDictionary<string, FloatTensor> Jacobians);
