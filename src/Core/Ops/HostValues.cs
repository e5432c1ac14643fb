using System.Runtime.CompilerServices;
using TorchSharp;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// Host copies of a plan's small constants: the pads, starts, axes, shapes, indices and bounds rules read as numbers.
/// On a GPU, reading a value off the device stalls the stream until it is done, and during CUDA graph capture it is
/// not allowed at all (the pass then runs eagerly). The planner keeps a copy of each small constant here once, and
/// rules read through it, so a pass over a plan reads nothing back until its results.
/// </summary>
internal static class HostValues
{
    /// <summary>Constants up to this many elements get a host copy: shape-like inputs, not weights.</summary>
    public const long MaxElements = 4096;

    // Keyed by the tensor object itself: the evaluator hands rules the plan's constants, never copies of them.
    private static readonly ConditionalWeakTable<Tensor, Array> Copies = new();

    [ThreadStatic] private static long _deviceReads;

    /// <summary>
    /// Values read off a tensor without a host copy on this thread (the evaluator runs a pass on one thread): what
    /// the tests check stays at zero for a pass over a plan.
    /// </summary>
    public static long DeviceReads => _deviceReads;

    /// <summary>Keeps a host copy of <paramref name="t"/> if it is small; a tensor already kept is left as it is.</summary>
    public static void Keep(Tensor t)
    {
        if (t.numel() > MaxElements || Copies.TryGetValue(t, out _)) return;
        Copies.AddOrUpdate(t, Read(t, t.dtype is ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float32 or ScalarType.Float64));
    }

    /// <summary>The values of an integer (or boolean) tensor as longs.</summary>
    public static long[] Ints(Tensor t) =>
        Copies.TryGetValue(t, out var kept) && kept is long[] ints ? ints : (long[])Counted(t, real: false);

    /// <summary>The values of a tensor as doubles.</summary>
    public static double[] Reals(Tensor t) =>
        Copies.TryGetValue(t, out var kept) ? kept as double[] ?? ((long[])kept).Select(v => (double)v).ToArray()
            : (double[])Counted(t, real: true);

    /// <summary>
    /// The least and greatest of an integer tensor's values (not empty): from its host copy, or else reduced where it
    /// lives and only the two read back (indices can be many).
    /// </summary>
    public static (long Min, long Max) Range(Tensor t)
    {
        if (Copies.TryGetValue(t, out var kept) && kept is long[] ints) return (ints.Min(), ints.Max());
        _deviceReads++;
        using var scope = NewDisposeScope();
        var longs = t.to_type(ScalarType.Int64);
        return (longs.min().item<long>(), longs.max().item<long>());
    }

    private static Array Counted(Tensor t, bool real)
    {
        _deviceReads++;
        return Read(t, real);
    }

    private static Array Read(Tensor t, bool real)
    {
        using var scope = NewDisposeScope();
        var flat = t.reshape(-1).to_type(real ? ScalarType.Float64 : ScalarType.Int64);
        if (flat.device_type != DeviceType.CPU) flat = flat.cpu();
        return real ? flat.data<double>().ToArray() : flat.data<long>().ToArray();
    }
}
