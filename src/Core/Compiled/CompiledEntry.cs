using JacService.Core.Derivatives;

namespace JacService.Core.Compiled;

/// <summary>
/// Whether a derivative of (wrt, of) runs as a compiled graph in ONNX Runtime, or why the interpreter serves it
/// (<see cref="Note"/>). <see cref="Kind"/> says which: "jacobian Forward", "jacobian Reverse", "vjp", "vjp of T", "jvp",
/// "jvp of T", "second order" (Hessians, Laplacians over every element of wrt, Jacobians) or "second order, laplacian
/// over 0,2" (Laplacians over those flat indices of wrt).
/// </summary>
public sealed record CompiledEntry(string Kind, string Wrt, string[] Of, DerivativeMode Mode, string Note)
{
    internal CompiledDerivative? Unit { get; init; }

    public bool Compiled => Unit is not null;
}
