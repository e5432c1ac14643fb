namespace JacService.Core.Models;

/// <summary>A dense row-major float32 tensor in managed memory: what crosses the boundary of the engine.</summary>
public sealed record HostTensor(long[] Shape, float[] Data)
{
    /// <summary>Elements of <see cref="Shape"/>, at most <see cref="long.MaxValue"/>: see <see cref="Elements"/>.</summary>
    public long Count => Elements(Shape);

    /// <summary>
    /// Elements of a shape as a caller sent it, saturating at <see cref="long.MaxValue"/>: a product that wrapped could
    /// match the values sent ([2^59, 32] wrapped to 0, so no values passed the length check and a request of 2^59 rows was
    /// queued). A negative extent counts as empty; the shape checks refuse it.
    /// </summary>
    public static long Elements(IEnumerable<long> shape) => Ops.Sizes.Elements(shape);

    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}
