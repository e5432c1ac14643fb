using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// A value inside a recurrent cell and the derivatives it carries: its first-order tangent G ([K, ..value], or null where
/// it does not depend on wrt); in a second-order pass its curvature Q ([P, ..value]: what the cell's second derivative
/// adds beyond its Jacobian, null where nothing did); and in a reverse pass its cotangent, summed over the values that
/// read it.
/// </summary>
internal sealed class CellValue(Tensor value, Tensor? g = null, Tensor? q = null)
{
    public Tensor V { get; } = value;
    public Tensor? G { get; } = g;
    public Tensor? Q { get; } = q;
    public Tensor? Cotangent { get; private set; }

    public void AddCotangent(Tensor? ct) => Cotangent = Tangents.Sum(Cotangent, ct);
}
