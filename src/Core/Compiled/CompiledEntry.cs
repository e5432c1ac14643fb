using JacService.Core.Derivatives;

namespace JacService.Core.Compiled;

/// <summary>Whether the Jacobian of (wrt, of) in a mode runs as a compiled graph in ONNX Runtime, or why the interpreter serves it (<see cref="Note"/>).</summary>
public sealed record CompiledEntry(string Wrt, string[] Of, DerivativeMode Mode, string Note)
{
    internal CompiledJacobian? Unit { get; init; }

    public bool Compiled => Unit is not null;
}
