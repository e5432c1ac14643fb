namespace JacService.Testing;

/// <summary>
/// One <c>jvp</c> entry of a reference file, for one wrt input: <see cref="Tangents"/> is [B, T] + input shape (float32
/// values), <see cref="Outputs"/> maps each output to its float64 J·t, [B, T] + output shape.
/// </summary>
public sealed record JvpReference(RefTensor Tangents, Dictionary<string, RefTensor> Outputs);
