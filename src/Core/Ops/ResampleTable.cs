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
    private readonly ConcurrentDictionary<(ScalarType Type, DeviceType Device, int Ordinal), Tensor> _dense = new();

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
    /// A table from each output position's <paramref name="taps"/> contributions, which <paramref name="fill"/> writes for
    /// a row in ascending input position (an edge position repeated past either end): repeats merged, zero weights
    /// dropped, and rows with fewer taps padded with weight 0 at position 0. Flat arrays, no allocation per row.
    /// </summary>
    public static ResampleTable FromTaps(long input, long output, int taps, Action<long, long[], double[]> fill)
    {
        var index = Enumerable.Range(0, taps).Select(_ => new long[output]).ToArray();
        var weight = Enumerable.Range(0, taps).Select(_ => new double[output]).ToArray();
        var rowIndex = new long[taps];
        var rowWeight = new double[taps];
        int widest = 0;
        for (long o = 0; o < output; o++)
        {
            fill(o, rowIndex, rowWeight);
            int count = 0;
            for (int j = 0; j < taps; j++)
            {
                if (rowWeight[j] == 0) continue;
                if (count > 0 && index[count - 1][o] == rowIndex[j]) weight[count - 1][o] += rowWeight[j];
                else
                {
                    index[count][o] = rowIndex[j];
                    weight[count][o] = rowWeight[j];
                    count++;
                }
            }
            widest = Math.Max(widest, count);
        }
        return new ResampleTable(input, output, index[..widest], weight[..widest]);
    }

    private ResampleTable Transpose()
    {
        var counts = new int[Input];
        for (int j = 0; j < Taps; j++)
            for (long o = 0; o < Output; o++)
                if (_weight[j][o] != 0) counts[_index[j][o]]++;
        int widest = Input == 0 ? 0 : counts.Max();
        var index = Enumerable.Range(0, widest).Select(_ => new long[Input]).ToArray();
        var weight = Enumerable.Range(0, widest).Select(_ => new double[Input]).ToArray();
        Array.Clear(counts);
        for (long o = 0; o < Output; o++)
            for (int j = 0; j < Taps; j++)
            {
                if (_weight[j][o] == 0) continue;
                long i = _index[j][o];
                int k = counts[i]++;
                index[k][i] = o;
                weight[k][i] = _weight[j][o];
            }
        return new ResampleTable(Output, Input, index, weight);
    }

    /// <summary>
    /// Up to this many entries (Input × Output), the map runs as one matrix product along its axis instead of a gather per
    /// tap: a product's few calls beat a gather, a product and a sum per tap on the small axes resampling models have
    /// (upsampler's reverse-mode Jacobian of 256 rows took 237 ms through gathers).
    /// </summary>
    public const long MaxDenseEntries = 1 << 14;

    public bool Dense => Sizes.Times(Input, Output) <= MaxDenseEntries;

    /// <summary>The map as a matrix [Input, Output], row-major: entry (i, o) is the weight output o gives input i.</summary>
    public double[] Transposition()
    {
        var m = new double[Input * Output];
        for (int j = 0; j < Taps; j++)
            for (long o = 0; o < Output; o++)
                m[_index[j][o] * Output + o] += _weight[j][o];
        return m;
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
        if (Dense)
        {
            var matrix = _dense.GetOrAdd((v.dtype, v.device_type, v.device_index), key =>
                tensor(Transposition(), [Input, Output], ScalarType.Float64).to(key.Type, v.device).DetachFromDisposeScope());
            long last = dims.Length - 1;
            return axis == last ? v.matmul(matrix) : v.movedim([axis], [last]).matmul(matrix).movedim([last], [axis]);
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
