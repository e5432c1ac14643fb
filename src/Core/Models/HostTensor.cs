namespace JacService.Core.Models;

/// <summary>A dense row-major float32 tensor in managed memory: what crosses the boundary of the engine.</summary>
public sealed record HostTensor(long[] Shape, float[] Data)
{
    public long Count => Shape.Aggregate(1L, (p, d) => p * d);

    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}
