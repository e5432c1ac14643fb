using JacService.Core.Derivatives;

namespace JacService.Core.Compiled;

/// <summary>
/// Whether a derivative of (wrt, of) runs as a compiled graph in ONNX Runtime, or why the interpreter serves it
/// (<see cref="Note"/>). <see cref="Kind"/> says which: "jacobian Forward", "jacobian Reverse", "vjp", "vjp of T", "jvp",
/// "jvp of T", "hessian", "laplacian over 0-2" (the flat indices of wrt it sums over), the last two with " and jacobian"
/// where the Jacobians come with them.
/// </summary>
public sealed record CompiledEntry(string Kind, string Wrt, string[] Of, DerivativeMode Mode, string Note)
{
    internal CompiledDerivative? Unit { get; init; }

    public bool Compiled => Unit is not null;
}
