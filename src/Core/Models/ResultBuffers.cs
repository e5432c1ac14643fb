namespace JacService.Core.Models;

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
