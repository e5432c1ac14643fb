using System.Runtime.InteropServices;
using JacService.Core.Onnx.Proto;
using TorchSharp;

namespace JacService.Core.Onnx;

/// <summary>Turns ONNX TensorProto payloads (initializers, Constant values) into device tensors.</summary>
internal static class TensorProtoReader
{
    public static torch.Tensor ToTensor(TensorProto proto, torch.ScalarType computeType)
    {
        if (proto.DataLocation == TensorProto.Types.DataLocation.External || proto.ExternalData.Count > 0)
            throw new NotSupportedException($"tensor '{proto.Name}' keeps its data in an external file; embed it in model.onnx");

        var dims = proto.Dims.ToArray();
        foreach (var d in dims)
            if (d < 0) throw new InvalidDataException($"tensor '{proto.Name}' has a negative dimension {d}");
        // A zero-length axis makes the tensor empty (and the size limits count it as nothing), but its other axes still
        // shape whatever is computed from it, and their product can overflow: they are bounded as if it were not empty.
        long extent = Ops.Sizes.Elements(dims.Where(d => d != 0));
        if (extent > int.MaxValue)
            throw new InvalidDataException(
                $"tensor '{proto.Name}' has dims [{string.Join(", ", dims)}]: over {int.MaxValue:N0} elements{(dims.Contains(0) ? " without its zero-length axes" : "")}, more than supported");
        int n = dims.Contains(0) ? 0 : (int)extent;

        if (!ElementTypes.TryFromOnnx(proto.DataType, out var type))
            throw new NotSupportedException($"tensor '{proto.Name}' has ONNX element type {proto.DataType}, which is not supported");

        var raw = proto.RawData.Span;
        bool hasRaw = !proto.RawData.IsEmpty || (n == 0);
        torch.Tensor tensor = type switch
        {
            ElementType.Float => hasRaw ? FromRaw<float>(raw, n, dims, torch.ScalarType.Float32, proto) : torch.tensor(Typed(proto.FloatData, n, proto), dims),
            ElementType.Double => hasRaw ? FromRaw<double>(raw, n, dims, torch.ScalarType.Float64, proto) : torch.tensor(Typed(proto.DoubleData, n, proto), dims),
            ElementType.Int64 => hasRaw ? FromRaw<long>(raw, n, dims, torch.ScalarType.Int64, proto) : torch.tensor(Typed(proto.Int64Data, n, proto), dims),
            ElementType.Int32 => torch.tensor(
                (hasRaw ? Raw<int>(raw, n, proto) : Typed(proto.Int32Data, n, proto)).Select(v => (long)v).ToArray(), dims),
            ElementType.Bool => torch.tensor(
                (hasRaw ? Raw<byte>(raw, n, proto).Select(b => b != 0) : Typed(proto.Int32Data, n, proto).Select(v => v != 0)).ToArray(), dims),
            ElementType.Float16 => torch.tensor(
                (hasRaw ? Raw<Half>(raw, n, proto).Select(h => (float)h) : Typed(proto.Int32Data, n, proto).Select(bits => (float)BitConverter.UInt16BitsToHalf((ushort)bits))).ToArray(), dims),
            _ => throw new NotSupportedException($"tensor '{proto.Name}' element type {type}"),
        };
        var target = type.DeviceType(computeType);
        return tensor.dtype == target ? tensor : tensor.to_type(target, disposeAfter: true);
    }

    /// <summary>
    /// A tensor's elements as doubles on the host (the small integers of shape arithmetic read at load), or null where
    /// its type, its data or its location does not read; bool as 0 and 1.
    /// </summary>
    public static double[]? ToDoubles(TensorProto proto)
    {
        if (proto.DataLocation == TensorProto.Types.DataLocation.External || proto.ExternalData.Count > 0
            || proto.Dims.Any(d => d < 0) || !ElementTypes.TryFromOnnx(proto.DataType, out var type))
            return null;
        long extent = Ops.Sizes.Elements(proto.Dims.ToArray());
        if (extent > int.MaxValue) return null;
        int n = (int)extent;
        var raw = proto.RawData.Span;
        bool hasRaw = !proto.RawData.IsEmpty || n == 0;
        try
        {
            return type switch
            {
                ElementType.Float => (hasRaw ? Raw<float>(raw, n, proto) : Typed(proto.FloatData, n, proto)).Select(v => (double)v).ToArray(),
                ElementType.Double => hasRaw ? Raw<double>(raw, n, proto) : Typed(proto.DoubleData, n, proto),
                ElementType.Int64 => (hasRaw ? Raw<long>(raw, n, proto) : Typed(proto.Int64Data, n, proto)).Select(v => (double)v).ToArray(),
                ElementType.Int32 => (hasRaw ? Raw<int>(raw, n, proto) : Typed(proto.Int32Data, n, proto)).Select(v => (double)v).ToArray(),
                ElementType.Bool => hasRaw ? Raw<byte>(raw, n, proto).Select(b => b != 0 ? 1.0 : 0.0).ToArray()
                    : Typed(proto.Int32Data, n, proto).Select(v => v != 0 ? 1.0 : 0.0).ToArray(),
                _ => null,
            };
        }
        catch (InvalidDataException)
        {
            return null;
        }
    }

    private static T[] Raw<T>(ReadOnlySpan<byte> raw, int n, TensorProto proto) where T : struct
    {
        CheckRaw<T>(raw, n, proto);
        return MemoryMarshal.Cast<byte, T>(raw).ToArray();
    }

    /// <summary>
    /// A tensor whose storage takes the raw bytes as they are, with no managed array between: that staging copy was as
    /// large as the model's weights, garbage the collector kept committed after each load (a 108 MB model: 108 MB more).
    /// </summary>
    private static torch.Tensor FromRaw<T>(ReadOnlySpan<byte> raw, int n, long[] dims, torch.ScalarType type, TensorProto proto) where T : struct
    {
        CheckRaw<T>(raw, n, proto);
        var tensor = torch.empty(dims, type);
        if (n > 0) raw.CopyTo(tensor.bytes);
        return tensor;
    }

    private static void CheckRaw<T>(ReadOnlySpan<byte> raw, int n, TensorProto proto) where T : struct
    {
        int size = Marshal.SizeOf<T>();
        if (raw.Length != (long)n * size)
            throw new InvalidDataException($"tensor '{proto.Name}' declares {n} elements ({n * (long)size} bytes) but raw_data holds {raw.Length} bytes");
    }

    private static T[] Typed<T>(IReadOnlyCollection<T> values, int n, TensorProto proto)
    {
        if (values.Count != n)
            throw new InvalidDataException($"tensor '{proto.Name}' declares {n} elements but holds {values.Count}");
        return values.ToArray();
    }
}
