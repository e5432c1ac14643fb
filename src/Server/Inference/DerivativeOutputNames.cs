namespace JacService.Server.Inference;

/// <summary>
/// The names of the extra output tensors that carry derivatives in a ModelInferResponse: the output, the kind and the
/// input, joined by double underscores, so no two results of one request share a name (docs/open-inference.md).
/// </summary>
internal static class DerivativeOutputNames
{
    public static string Of(string output, DerivativeKind kind, string wrt) => $"{output}__{Word(kind)}__{wrt}";

    private static string Word(DerivativeKind kind) => kind switch
    {
        DerivativeKind.Jacobian => "jacobian",
        DerivativeKind.Hessian => "hessian",
        DerivativeKind.Laplacian => "laplacian",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };
}
