using System.Collections.Concurrent;

namespace JacService.Core.Models;

/// <summary>
/// Exact-length float arrays for the large tensors of a call (its inputs as copied out of the request, its results as
/// copied off the engine), handed back once the response is written. Arrays of that size live on the large object heap,
/// and allocating a fresh one per call kept background gen2 collections running (docs/benchmarks.md, "Large arrays of a
/// call, pooled"). Exact lengths, not <see cref="System.Buffers.ArrayPool{T}"/>'s rounded ones: a
/// <see cref="HostTensor"/>'s array is exactly its shape's length, and responses send the whole array.
/// Bounded in bytes and in distinct lengths; past either bound a returned array is left to the GC.
/// </summary>
public sealed class FloatArrayPool(long capacityBytes, int maxLengths)
{
    /// <summary>The first length that lands on the large object heap (the runtime's default threshold, 85,000 bytes).</summary>
    public const int MinimumLength = 85_000 / sizeof(float);

    public static FloatArrayPool Shared { get; } = new(capacityBytes: 64L << 20, maxLengths: 64);

    private readonly ConcurrentDictionary<int, ConcurrentQueue<float[]>> _free = new();
    private long _bytes;

    /// <summary>Bytes held for reuse now.</summary>
    public long HeldBytes => Interlocked.Read(ref _bytes);

    /// <summary>An array of exactly <paramref name="length"/> elements, with arbitrary contents: the caller writes every element.</summary>
    public float[] Rent(int length)
    {
        if (length < MinimumLength) return new float[length];
        if (_free.TryGetValue(length, out var queue) && queue.TryDequeue(out var array))
        {
            Interlocked.Add(ref _bytes, -Bytes(array));
            return array;
        }
        return GC.AllocateUninitializedArray<float>(length);
    }

    /// <summary>
    /// Takes back arrays nothing reads any more; each at most once (the same array rented twice would be shared by two
    /// calls), which is why a call's arrays go through <see cref="ReturnAll"/>.
    /// </summary>
    public void Return(float[] array)
    {
        if (array.Length < MinimumLength) return;
        var queue = _free.TryGetValue(array.Length, out var known) ? known
            : _free.Count < maxLengths ? _free.GetOrAdd(array.Length, _ => new()) : null;
        if (queue is null) return;
        if (Interlocked.Add(ref _bytes, Bytes(array)) > capacityBytes)
        {
            Interlocked.Add(ref _bytes, -Bytes(array));
            return;
        }
        queue.Enqueue(array);
    }

    /// <summary>Returns each distinct array once: a call's tensors may share one (an input passed through as an output).</summary>
    public void ReturnAll(IEnumerable<float[]> arrays)
    {
        foreach (var array in arrays.Distinct(ReferenceEqualityComparer.Instance).Cast<float[]>()) Return(array);
    }

    private static long Bytes(float[] array) => (long)array.Length * sizeof(float);
}
