using System.Runtime.InteropServices;
using JacService.Protos.V1;

namespace JacService.Client;

/// <summary>
/// A dense row-major float32 tensor: data and shape, as the client library takes and returns them. The data is
/// not copied when a tensor is made or sliced; it is copied once into a request message (protobuf owns its
/// buffers) and once out of a response. Two tensors are equal only when they are the same object: compare
/// contents with <see cref="ContentEquals"/>.
/// </summary>
public sealed class FloatTensor
{
    public FloatTensor(ReadOnlyMemory<float> data, params long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (shape.Any(d => d < 0)) throw new ArgumentException($"shape [{string.Join(", ", shape)}] has a negative axis", nameof(shape));
        long count = ElementCount(shape);
        if (count != data.Length)
            throw new ArgumentException($"shape [{string.Join(", ", shape)}] needs {count} values, got {data.Length}", nameof(data));
        Data = data;
        Shape = shape;
    }

    /// <summary>
    /// Elements of a shape of non-negative axes, saturating at <see cref="long.MaxValue"/>: a product that wrapped
    /// ([2^32, 2^32] to 0) would let a shape from a file or an answer pass for one with no values.
    /// </summary>
    public static long ElementCount(IReadOnlyCollection<long> shape)
    {
        if (shape.Contains(0)) return 0;
        long count = 1;
        foreach (var d in shape) count = count > long.MaxValue / d ? long.MaxValue : count * d;
        return count;
    }

    public ReadOnlyMemory<float> Data { get; }

    public long[] Shape { get; }

    public ReadOnlySpan<float> Span => Data.Span;

    public float[] ToArray() => Data.ToArray();

    /// <summary>Sample <paramref name="b"/> of a tensor with a leading batch axis, without the axis; shares this tensor's data.</summary>
    public FloatTensor Row(int b)
    {
        if (Shape.Length == 0 || b < 0 || b >= Shape[0])
            throw new ArgumentOutOfRangeException(nameof(b), $"row {b} of a tensor of shape [{string.Join(", ", Shape)}]");
        int per = (int)(Data.Length / Shape[0]);
        return new FloatTensor(Data.Slice(b * per, per), Shape[1..]);
    }

    /// <summary>Same shape and the same bits in every element (so NaNs of one payload are equal, and 0 differs from -0).</summary>
    public bool ContentEquals(FloatTensor other) =>
        Shape.AsSpan().SequenceEqual(other.Shape) &&
        MemoryMarshal.Cast<float, int>(Span).SequenceEqual(MemoryMarshal.Cast<float, int>(other.Span));

    public Tensor ToProto()
    {
        var t = new Tensor();
        t.Shape.AddRange(Shape);
        // A whole array goes in with one block copy; a slice element by element into a buffer sized once.
        if (MemoryMarshal.TryGetArray(Data, out var segment) && segment.Offset == 0 && segment.Count == segment.Array!.Length)
        {
            t.Data.AddRange(segment.Array);
        }
        else
        {
            t.Data.Capacity = Data.Length;
            foreach (var v in Span) t.Data.Add(v);
        }
        return t;
    }

    public static FloatTensor FromProto(Tensor t)
    {
        var data = new float[t.Data.Count];
        t.Data.CopyTo(data, 0);
        return new FloatTensor(data, t.Shape.ToArray());
    }

    public override string ToString() => $"FloatTensor [{string.Join(", ", Shape)}]";
}
