namespace JacService.Testing;

/// <summary>
/// One <c>vjp</c> entry of a reference file, for one wrt input: <see cref="Cotangents"/> maps each output to [B, T] +
/// output shape (float32 values), <see cref="Result"/> is the float64 sum over outputs of cᵀ·J, [B, T] + input shape.
/// </summary>
public sealed record VjpReference(Dictionary<string, RefTensor> Cotangents, RefTensor Result);
