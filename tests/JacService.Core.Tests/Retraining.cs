using Google.Protobuf;
using JacService.Core.Onnx.Proto;

namespace JacService.Core.Tests;

/// <summary>A model as retraining leaves it: the same graph, other weights.</summary>
internal static class Retraining
{
    /// <summary>Every float initializer's values doubled plus a quarter (raw or typed storage).</summary>
    public static ModelProto Of(ModelProto model)
    {
        var copy = model.Clone();
        foreach (var t in copy.Graph.Initializer.Where(t => t.DataType == (int)TensorProto.Types.DataType.Float))
        {
            if (t.HasRawData)
            {
                var values = t.RawData.ToByteArray();
                var floats = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(values.AsSpan());
                for (int i = 0; i < floats.Length; i++) floats[i] = floats[i] * 2 + 0.25f;
                t.RawData = ByteString.CopyFrom(values);
            }
            for (int i = 0; i < t.FloatData.Count; i++) t.FloatData[i] = t.FloatData[i] * 2 + 0.25f;
        }
        copy.DocString = "retrained";
        return copy;
    }
}
