using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// A value and its tangent. The tangent carries a leading basis axis: a value of shape S travels with a tangent
/// of shape [K, ..S] (K = number of directions pushed through at once), or null when the value does not depend
/// on the input being differentiated. Because the basis axis leads and every sample's directions are the same,
/// primal and tangent broadcast against each other by plain NumPy rules, whatever axis the batch sits on.
/// </summary>
public readonly record struct Dual(Tensor Value, Tensor? Tangent)
{
    public long[] Shape => Value.Dims();
    public long Rank => Value.dim();
}
