using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Google.Protobuf;
using JacService.Core;
using JacService.Core.Models;
using JacService.Protos.Inference;

namespace JacService.Server.Inference;

/// <summary>
/// A ModelInferRequest's input tensors as the engine takes them: float32 values by name, from typed contents or from
/// raw_input_contents. Any numeric datatype is accepted and converted (the engine computes in float32, as JacobianService's
/// float-only Tensor does); the model's own checks of names and shapes come after, in the engine's validator.
/// </summary>
internal static class InferInputs
{
    public static Dictionary<string, HostTensor> Decode(ModelInferRequest request)
    {
        bool raw = request.RawInputContents.Count > 0;
        if (raw && request.RawInputContents.Count != request.Inputs.Count)
            throw new InvalidRequestException(
                $"raw_input_contents has {request.RawInputContents.Count} entries for {request.Inputs.Count} inputs; give one per input, in the order of inputs");
        var tensors = new Dictionary<string, HostTensor>(request.Inputs.Count, StringComparer.Ordinal);
        for (int i = 0; i < request.Inputs.Count; i++)
        {
            var input = request.Inputs[i];
            long[] shape = [.. input.Shape];
            long count = ElementCount(input.Name, shape);
            if (!InferDatatype.RawSizes.TryGetValue(input.Datatype, out int size))
                throw new InvalidRequestException(
                    $"input '{input.Name}' has datatype '{input.Datatype}'; expected one of {string.Join(", ", InferDatatype.RawSizes.Keys)}");
            float[] data;
            if (raw)
            {
                if (HasContents(input.Contents))
                    throw new InvalidRequestException($"input '{input.Name}' has contents while the request uses raw_input_contents; use one or the other");
                data = FromRaw(input.Name, input.Datatype, size, count, request.RawInputContents[i]);
            }
            else
            {
                data = FromContents(input.Name, input.Datatype, count, input.Contents);
            }
            if (!tensors.TryAdd(input.Name, new HostTensor(shape, data)))
                throw new InvalidRequestException($"input '{input.Name}' is given twice");
        }
        return tensors;
    }

    private static long ElementCount(string name, long[] shape)
    {
        if (shape.Any(d => d < 0)) throw new InvalidRequestException($"input '{name}' has shape [{string.Join(", ", shape)}]; every axis needs a size of 0 or more");
        long count = HostTensor.Elements(shape);
        if (count == long.MaxValue) throw new InvalidRequestException($"input '{name}' has shape [{string.Join(", ", shape)}]: more elements than a tensor can hold");
        return count;
    }

    private static bool HasContents(InferTensorContents? c) => c is not null && (c.BoolContents.Count + c.IntContents.Count + c.Int64Contents.Count
        + c.UintContents.Count + c.Uint64Contents.Count + c.Fp32Contents.Count + c.Fp64Contents.Count + c.BytesContents.Count) > 0;

    private static float[] FromRaw(string name, string datatype, int size, long count, ByteString bytes)
    {
        // Divided, not multiplied: count * size wrapped for counts near 2^62, so empty contents passed for 2^62 values.
        if (bytes.Length % size != 0 || bytes.Length / size != count)
            throw new InvalidRequestException(
                $"input '{name}' has {bytes.Length} bytes of raw contents; its shape takes {count} values of {datatype}, {size} bytes each");
        var span = bytes.Span;
        var data = FloatArrayPool.Shared.Rent((int)count);
        switch (datatype)
        {
            case InferDatatype.Fp32 when BitConverter.IsLittleEndian:
                MemoryMarshal.Cast<byte, float>(span).CopyTo(data);
                break;
            default:
                for (int k = 0; k < data.Length; k++) data[k] = RawElement(datatype, span.Slice(k * size, size));
                break;
        }
        return data;
    }

    private static float RawElement(string datatype, ReadOnlySpan<byte> b) => datatype switch
    {
        "BOOL" => b[0] != 0 ? 1f : 0f,
        "UINT8" => b[0],
        "INT8" => (sbyte)b[0],
        "UINT16" => BinaryPrimitives.ReadUInt16LittleEndian(b),
        "INT16" => BinaryPrimitives.ReadInt16LittleEndian(b),
        "FP16" => (float)BinaryPrimitives.ReadHalfLittleEndian(b),
        "UINT32" => BinaryPrimitives.ReadUInt32LittleEndian(b),
        "INT32" => BinaryPrimitives.ReadInt32LittleEndian(b),
        "FP32" => BinaryPrimitives.ReadSingleLittleEndian(b),
        "UINT64" => BinaryPrimitives.ReadUInt64LittleEndian(b),
        "INT64" => BinaryPrimitives.ReadInt64LittleEndian(b),
        "FP64" => (float)BinaryPrimitives.ReadDoubleLittleEndian(b),
        _ => throw new ArgumentOutOfRangeException(nameof(datatype), datatype, null),
    };

    /// <summary>
    /// Turns a numeric input's typed contents into FP32 and returns them as its raw contents, however many values it has
    /// (the shape is checked when the request is decoded): the REST binding's JSON inputs beside binary ones, since a request
    /// takes raw contents for every input or for none. The engine computes in float32, so nothing is lost.
    /// </summary>
    public static ByteString ToRawFloats(ModelInferRequest.Types.InferInputTensor input)
    {
        var data = FromContents(input.Name, input.Datatype, count: null, input.Contents);
        var raw = ByteString.CopyFrom(MemoryMarshal.AsBytes(data.AsSpan()));
        FloatArrayPool.Shared.Return(data);
        input.Datatype = InferDatatype.Fp32;
        input.Contents = null;
        return raw;
    }

    /// <summary>The values from the contents field the protocol assigns to the datatype (FP16 has none: raw only).</summary>
    private static float[] FromContents(string name, string datatype, long? count, InferTensorContents? contents)
    {
        contents ??= new InferTensorContents();
        (string Field, int Length, Func<int, float>? Element) read = datatype switch
        {
            "FP32" => ("fp32_contents", contents.Fp32Contents.Count, null),
            "FP64" => ("fp64_contents", contents.Fp64Contents.Count, k => (float)contents.Fp64Contents[k]),
            "INT8" or "INT16" or "INT32" => ("int_contents", contents.IntContents.Count, k => contents.IntContents[k]),
            "INT64" => ("int64_contents", contents.Int64Contents.Count, k => contents.Int64Contents[k]),
            "UINT8" or "UINT16" or "UINT32" => ("uint_contents", contents.UintContents.Count, k => contents.UintContents[k]),
            "UINT64" => ("uint64_contents", contents.Uint64Contents.Count, k => contents.Uint64Contents[k]),
            "BOOL" => ("bool_contents", contents.BoolContents.Count, k => contents.BoolContents[k] ? 1f : 0f),
            _ => throw new InvalidRequestException($"input '{name}' has datatype {datatype}, which travels only as raw_input_contents"),
        };
        if (count is { } expected && read.Length != expected)
            throw new InvalidRequestException($"input '{name}' has {read.Length} values in {read.Field}; its shape takes {count}");
        var data = FloatArrayPool.Shared.Rent(read.Length);
        if (read.Element is null) contents.Fp32Contents.CopyTo(data, 0);
        else for (int k = 0; k < data.Length; k++) data[k] = read.Element(k);
        return data;
    }
}
