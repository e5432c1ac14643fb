using JacService.Core.Derivatives;
using JacService.Core.Models;

namespace JacService.Server.Batching;

/// <summary>
/// What can share one pass: the same kind of work, the same wrt, of and derivative mode, and the same per-sample
/// shapes of every tensor the request carries (for Jvp and Vjp that includes the directions, so T must match too).
/// Second-order work must also agree on whether Jacobians come with it and, for a Laplacian, on the axes summed over.
/// </summary>
public sealed record WorkKey(WorkKind Kind, int Wrt, int[] Of, string SampleShapes, DerivativeMode Mode = DerivativeMode.Auto)
{
    /// <summary>Hessian and Laplacian: the Jacobians are computed and returned as well.</summary>
    public bool IncludeJacobian { get; init; }

    /// <summary>Laplacian: the flat indices of wrt's sample it sums over, resolved (ascending, never empty); empty otherwise.</summary>
    public int[] Axes { get; init; } = [];

    public bool Equals(WorkKey? other) =>
        other is not null && Kind == other.Kind && Wrt == other.Wrt && Mode == other.Mode && IncludeJacobian == other.IncludeJacobian
        && Of.SequenceEqual(other.Of) && Axes.SequenceEqual(other.Axes) && SampleShapes == other.SampleShapes;

    // Computed for every queued request and every batch: no strings built for it.
    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(Kind);
        hash.Add(Wrt);
        hash.Add(Mode);
        hash.Add(IncludeJacobian);
        foreach (var o in Of) hash.Add(o);
        // Axes' length first, so an index moved between Of and Axes changes the hash.
        hash.Add(Axes.Length);
        foreach (var a in Axes) hash.Add(a);
        hash.Add(SampleShapes);
        return hash.ToHashCode();
    }

    public static WorkKey For(WorkKind kind, HostTensor[] inputs, int wrt = -1, int[]? of = null, DerivativeMode mode = DerivativeMode.Auto,
        bool includeJacobian = false, int[]? axes = null) =>
        new(kind, wrt, of ?? [], string.Join(";", inputs.Select(i => string.Join("x", i.Shape.Skip(1)))), mode)
        {
            IncludeJacobian = includeJacobian,
            Axes = axes ?? [],
        };
}
