using System.Security.Cryptography;
using Google.Protobuf;
using JacService.Core.Onnx.Proto;

namespace JacService.Core.Onnx;

/// <summary>
/// A key that two model files share when they differ in their floating-point weights only: the same graph, the same
/// attributes, the same shapes, the same integer tensors (shapes, indices, axes). What the engine plans and how long a
/// pass takes depend on these and not on the weights' values, so a version retrained and dropped in beside the last one
/// can take over its predecessor's measured choices instead of timing them again.
/// </summary>
internal static class ModelStructure
{
    public static string Key(ModelProto model)
    {
        var copy = model.Clone();
        copy.ClearDocString();
        copy.ClearProducerVersion();
        copy.ClearModelVersion();
        copy.MetadataProps.Clear();
        if (copy.Graph is { } graph)
        {
            graph.ClearDocString();
            foreach (var initializer in graph.Initializer) ForgetFloatValues(initializer);
            foreach (var attribute in graph.Node.SelectMany(n => n.Attribute))
            {
                if (attribute.T is { } t) ForgetFloatValues(t);
                foreach (var tensor in attribute.Tensors) ForgetFloatValues(tensor);
            }
        }
        return Convert.ToHexString(SHA256.HashData(copy.ToByteArray()));
    }

    private static void ForgetFloatValues(TensorProto tensor)
    {
        if ((TensorProto.Types.DataType)tensor.DataType is not (TensorProto.Types.DataType.Float or TensorProto.Types.DataType.Double
            or TensorProto.Types.DataType.Float16 or TensorProto.Types.DataType.Bfloat16))
            return;
        tensor.ClearRawData();
        tensor.FloatData.Clear();
        tensor.DoubleData.Clear();
        tensor.Int32Data.Clear(); // float16 and bfloat16 values may sit here as bit patterns
        tensor.ClearDocString();
    }
}
