using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// The second-order directions a pass carries after its first-order ones. A value's tangent is [n + P, ..value]: n
/// first-order directions G (the gradient along each seeded direction) and P second-order ones S. For a Hessian each
/// second-order direction is one pair (i, j) of first-order directions and S holds d²value / dx_i dx_j; for a
/// Laplacian there is one, the sum over a set of diagonal pairs (i, i). Both follow the same rule per op: for
/// y = f(x), S_y = f'(x) S_x + f''(x) [G_x ⊗ G_x], and the bracket, a bilinear form of two gradients, is all a
/// second-order rule has to supply (<see cref="Pairs"/>). Linear ops need nothing: their JVP rule maps S like G.
/// </summary>
public sealed class PairBasis
{
    private readonly Tensor? _left, _right;
    private readonly bool _sum;

    private PairBasis(long firstOrder, long count, long[]? left, long[]? right, bool sum)
    {
        FirstOrder = firstOrder;
        Count = count;
        _left = left is null ? null : tensor(left);
        _right = ReferenceEquals(left, right) ? _left : right is null ? null : tensor(right);
        _sum = sum;
    }

    /// <summary>n: first-order directions carried ahead of the second-order ones.</summary>
    public long FirstOrder { get; }

    /// <summary>P: second-order directions.</summary>
    public long Count { get; }

    /// <summary>One second-order direction per pair (left[p], right[p]) of first-order directions (Hessian entries).</summary>
    public static PairBasis Entries(long firstOrder, long[] left, long[] right) => new(firstOrder, left.Length, left, right, sum: false);

    /// <summary>
    /// One second-order direction: the sum of the diagonal pairs (i, i) over <paramref name="diagonal"/> (a Laplacian);
    /// null means every first-order direction.
    /// </summary>
    public static PairBasis Trace(long firstOrder, long[]? diagonal) => new(firstOrder, 1, diagonal, diagonal, sum: true);

    /// <summary>
    /// [P, ..] the bilinear form applied to each pair of directions of two gradients a, b ([n, ..] each, broadcastable
    /// after their basis axis): b(a_i, b_j) per pair, or the sum of b(a_i, b_i) over the diagonal.
    /// </summary>
    public Tensor Pairs(Tensor a, Tensor b, Func<Tensor, Tensor, Tensor>? bilinear = null)
    {
        var left = _left is null ? a : a.index_select(0, _left);
        var right = _right is null ? b : b.index_select(0, _right);
        var r = bilinear is null ? left * right : bilinear(left, right);
        return _sum ? r.sum(0, keepdim: true) : r;
    }

    /// <summary>The symmetrised form b(a_i, b_j) + b(b_i, a_j): what a product's second derivative pairs up.</summary>
    public Tensor SymmetricPairs(Tensor a, Tensor b, Func<Tensor, Tensor, Tensor>? bilinear = null) =>
        // On the diagonal both terms are the same sum, so a trace needs one of them.
        _sum && ReferenceEquals(_left, _right) && bilinear is null
            ? Pairs(a, b) * Scalars.S(2)
            : Pairs(a, b, bilinear).add(Pairs(b, a, bilinear is null ? null : (u, v) => bilinear(v, u)), Scalars.S(1));
}
