namespace JacService.Core.Models;

/// <summary>A dense row-major float32 tensor in managed memory: what crosses the boundary of the engine.</summary>
public sealed record HostTensor(long[] Shape, float[] Data)
{
    public long Count => Shape.Aggregate(1L, (p, d) => p * d);

    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// Outputs by name and the derivatives asked for: per output in of, its Jacobian (Jacobian) or its directional
/// derivatives (Jvp); or, keyed by wrt's name, the vector-Jacobian product (Vjp).
/// </summary>
public sealed record EngineResult(
    IReadOnlyDictionary<string, HostTensor> Outputs,
    IReadOnlyDictionary<string, HostTensor> Jacobians)
{
    /// <summary>The mode that computed the derivatives; null for Predict.</summary>
    public Derivatives.DerivativeMode? Mode { get; init; }
}

/// <summary>
/// Reusable result arrays, one per output or Jacobian name, so repeated passes of one static shape write into the
/// same host memory instead of allocating it (large results would otherwise land on the large-object heap each
/// time). Not thread-safe: one owner at a time.
/// </summary>
public sealed class ResultBuffers
{
    private readonly Dictionary<string, float[]> _arrays = [];

    public float[] For(string name, long count)
    {
        if (_arrays.TryGetValue(name, out var array) && array.LongLength == count) return array;
        return _arrays[name] = new float[count];
    }
}
