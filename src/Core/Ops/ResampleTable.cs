using System.Collections.Concurrent;
using TorchSharp;
using static JacService.Core.Ops.Scalars;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// One axis of a Resize as the fixed linear map it is: out[o] = Σⱼ Weight[j][o] · in[Index[j][o]], j over the taps.
/// Its transpose, which the cotangent takes, is a map of the same form from the output axis back to the input axis,
/// so the forward pass, the tangent and the cotangent all run as a few gathers, products and sums.
/// </summary>
internal sealed class ResampleTable
{
    private readonly long[][] _index;
    private readonly double[][] _weight;
    private readonly Lazy<ResampleTable> _transposed;
    private readonly ConcurrentDictionary<(int Trailing, ScalarType Type, DeviceType Device, int Ordinal), DeviceTaps> _onDevice = new();

    private ResampleTable(long input, long output, long[][] index, double[][] weight)
    {
        Input = input;
        Output = output;
        _index = index;
        _weight = weight;
        Unweighted = weight.All(w => w.All(v => v == 1));
        _transposed = new Lazy<ResampleTable>(Transpose);
    }

    public long Input { get; }
    public long Output { get; }
    public int Taps => _index.Length;

    /// <summary>Every weight is 1: each output element is one input element (nearest-neighbour maps).</summary>
    public bool Unweighted { get; }

    public IReadOnlyList<long> IndexOf(int tap) => _index[tap];
    public IReadOnlyList<double> WeightOf(int tap) => _weight[tap];

    /// <summary>The transpose: each input position gathers the weighted output positions that read it.</summary>
    public ResampleTable Transposed => _transposed.Value;

    /// <summary>
    /// A table from each output position's contributions (input position, weight): repeated positions (the edge read
    /// twice) merged, zero weights dropped, and rows with fewer taps padded with weight 0 at position 0.
    /// </summary>
    public static ResampleTable FromRows(long input, long output, IReadOnlyList<(long Index, double Weight)>[] rows)
    {
        var merged = rows.Select(row => row.GroupBy(r => r.Index).Select(g => (Index: g.Key, Weight: g.Sum(r => r.Weight)))
            .Where(r => r.Weight != 0).ToArray()).ToArray();
        int taps = merged.Length == 0 ? 0 : merged.Max(r => r.Length);
        var index = new long[taps][];
        var weight = new double[taps][];
        for (int j = 0; j < taps; j++)
        {
            index[j] = merged.Select(r => j < r.Length ? r[j].Index : 0).ToArray();
            weight[j] = merged.Select(r => j < r.Length ? r[j].Weight : 0).ToArray();
        }
        return new ResampleTable(input, output, index, weight);
    }

    private ResampleTable Transpose()
    {
        var rows = Enumerable.Range(0, (int)Input).Select(_ => new List<(long, double)>()).ToArray();
        for (int j = 0; j < Taps; j++)
            for (int o = 0; o < Output; o++)
                if (_weight[j][o] != 0) rows[_index[j][o]].Add((o, _weight[j][o]));
        return FromRows(Output, Input, rows);
    }

    /// <summary><paramref name="v"/> mapped along <paramref name="axis"/>: its length there goes from Input to Output.</summary>
    public Tensor Apply(Tensor v, long axis)
    {
        var dims = v.Dims();
        Shapes.Require(dims[axis] == Input, () => $"Resize expected {Input} elements along axis {axis} of {Shapes.Text(dims)}");
        if (Taps == 0)
        {
            dims[axis] = Output;
            return zeros(dims, v.dtype, v.device);
        }
        var taps = On(v, (int)(dims.Length - axis - 1));
        Tensor? sum = null;
        for (int j = 0; j < Taps; j++)
        {
            var term = v.index_select(axis, taps.Index[j]);
            if (taps.Weight is { } w) term = term.mul_(w[j]);
            sum = sum is null ? term : sum.add_(term, S(1));
        }
        return sum!;
    }

    /// <summary>The taps as tensors where <paramref name="like"/> lives, kept per device, type and trailing axes.</summary>
    private DeviceTaps On(Tensor like, int trailing) =>
        _onDevice.GetOrAdd((trailing, like.dtype, like.device_type, like.device_index), key =>
        {
            long[] shape = [Output, .. Enumerable.Repeat(1L, key.Trailing)];
            var index = _index.Select(i => tensor(i, ScalarType.Int64).to(like.device).DetachFromDisposeScope()).ToArray();
            var weight = Unweighted ? null
                : _weight.Select(w => tensor(w, ScalarType.Float64).reshape(shape).to(key.Type, like.device).DetachFromDisposeScope()).ToArray();
            return new DeviceTaps(index, weight);
        });

    private sealed record DeviceTaps(Tensor[] Index, Tensor[]? Weight);
}
