using System.Collections.Concurrent;
using TorchSharp;

namespace JacService.Core.Ops;

/// <summary>
/// Scalars that live for the life of the process. TorchSharp's ops pass a Scalar's native handle to libtorch without
/// keeping the managed Scalar alive, and a Scalar's finalizer frees the native one: the temporary an implicit
/// conversion makes (x * 0.5) can be finalized by a garbage collection on another thread while libtorch still reads
/// it. Under load that showed as "INTERNAL ASSERT FAILED at c10/core/Scalar.h" from LayerNormalization. A cached
/// Scalar stays reachable, so it is never finalized; the values are constants and attribute values, a bounded set.
/// </summary>
internal static class Scalars
{
    private static readonly ConcurrentDictionary<double, Scalar> Doubles = new();
    private static readonly ConcurrentDictionary<long, Scalar> Longs = new();

    /// <summary>A floating-point Scalar (it keeps a float tensor's dtype).</summary>
    public static Scalar S(double value) => Doubles.GetOrAdd(value, v => v.ToScalar());

    /// <summary>An integer Scalar, for integer tensors: a floating one would promote them to float.</summary>
    public static Scalar L(long value) => Longs.GetOrAdd(value, v => v.ToScalar());
}
