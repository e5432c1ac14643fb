using JacService.Core.Derivatives;
using JacService.Core.Models;

namespace JacService.Server.Batching;

/// <summary>
/// What can share one pass: the same kind of work, the same wrt, of and derivative mode, and the same per-sample
/// shapes of every tensor the request carries (for Jvp and Vjp that includes the directions, so T must match too).
/// </summary>
public sealed record WorkKey(WorkKind Kind, int Wrt, int[] Of, string SampleShapes, DerivativeMode Mode = DerivativeMode.Auto)
{
    public bool Equals(WorkKey? other) =>
        other is not null && Kind == other.Kind && Wrt == other.Wrt && Mode == other.Mode && Of.SequenceEqual(other.Of)
        && SampleShapes == other.SampleShapes;

    // Computed for every queued request and every batch: no strings built for it.
    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(Kind);
        hash.Add(Wrt);
        hash.Add(Mode);
        foreach (var o in Of) hash.Add(o);
        hash.Add(SampleShapes);
        return hash.ToHashCode();
    }

    public static WorkKey For(WorkKind kind, HostTensor[] inputs, int wrt = -1, int[]? of = null, DerivativeMode mode = DerivativeMode.Auto) =>
        new(kind, wrt, of ?? [], string.Join(";", inputs.Select(i => string.Join("x", i.Shape.Skip(1)))), mode);
}
