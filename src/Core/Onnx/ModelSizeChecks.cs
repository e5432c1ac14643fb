using System.Collections;
using System.Text;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using JacService.Core.Models;
using JacService.Core.Ops;
using JacService.Core.Onnx.Proto;
using TorchSharp;

namespace JacService.Core.Onnx;

/// <summary>
/// Checks a parsed model against <see cref="ModelLimits"/> before anything is built from it: nodes, tensors, strings and
/// attribute lists anywhere in the file (subgraphs included), so a hostile file is refused with the limit it broke
/// instead of the engine allocating what it declares. Walks every field through protobuf reflection, so a field added to
/// onnx.proto is covered without a change here. The parser's nesting limit bounds this walk's recursion.
/// </summary>
internal sealed class ModelSizeChecks(ModelLimits limits, torch.ScalarType computeType)
{
    // Where the walk is, for messages: each message entered, with the field (and index) that holds it.
    private readonly List<(string Field, int Index, IMessage Message)> _path = [];
    private long _nodes;
    private long _tensorBytes;

    public static void Check(ModelProto model, torch.ScalarType computeType, ModelLimits limits) =>
        new ModelSizeChecks(limits, computeType).Walk(model);

    private void Walk(IMessage message)
    {
        switch (message)
        {
            case GraphProto graph:
                CountNodes(graph.Node.Count);
                break;
            case NodeProto node when node.Attribute.Count > limits.MaxAttributeElements:
                throw new ModelLoadException(
                    $"{Where()} has {node.Attribute.Count:N0} attributes, over Limits:MaxAttributeElements {limits.MaxAttributeElements}");
            case TensorProto tensor:
                CountTensor(tensor);
                break;
        }
        foreach (var field in message.Descriptor.Fields.InFieldNumberOrder())
        {
            // Tensor payloads are bounded by the tensor limits, from the dims they declare.
            if (field.FieldType == FieldType.Bytes && field.Name == "raw_data") continue;
            var value = field.Accessor.GetValue(message);
            if (field.IsRepeated)
            {
                var list = (IList)value;
                if (message is AttributeProto && list.Count > limits.MaxAttributeElements)
                    throw new ModelLoadException(
                        $"{Where()}.{field.Name} holds {list.Count:N0} values, over Limits:MaxAttributeElements {limits.MaxAttributeElements}");
                // Numbers (tensor data, dims) need no look each: boxing millions of floats would cost more than the load.
                if (field.FieldType is FieldType.Message or FieldType.String or FieldType.Bytes)
                    for (int i = 0; i < list.Count; i++) Visit(field, i, list[i]);
            }
            else
            {
                Visit(field, -1, value);
            }
        }
    }

    private void Visit(FieldDescriptor field, int index, object? value)
    {
        switch (value)
        {
            case IMessage inner:
                _path.Add((field.Name, index, inner));
                Walk(inner);
                _path.RemoveAt(_path.Count - 1);
                break;
            case string s when s.Length > limits.MaxStringBytes / 3 && Encoding.UTF8.GetByteCount(s) > limits.MaxStringBytes:
                throw TooLong(field, index, Encoding.UTF8.GetByteCount(s));
            case ByteString b when b.Length > limits.MaxStringBytes:
                throw TooLong(field, index, b.Length);
        }
    }

    private ModelLoadException TooLong(FieldDescriptor field, int index, long bytes) =>
        new($"{Where()}.{field.Name}{(index >= 0 ? $"[{index}]" : "")} has {bytes:N0} bytes, over Limits:MaxStringBytes {limits.MaxStringBytes}");

    private void CountNodes(int count)
    {
        _nodes += count;
        if (_nodes <= limits.MaxNodes) return;
        throw new ModelLoadException(_path.Count == 1
            ? $"the graph has {_nodes:N0} nodes, over Limits:MaxNodes {limits.MaxNodes}"
            : $"{Where()} brings the nodes of the model (subgraphs included) to {_nodes:N0}, over Limits:MaxNodes {limits.MaxNodes}");
    }

    private void CountTensor(TensorProto tensor)
    {
        long elements = Sizes.Elements(tensor.Dims);
        long bytes = Sizes.Times(elements, ElementBytes(tensor.DataType));
        if (bytes > limits.MaxTensorBytes)
            throw new ModelLoadException(
                $"{Where()} declares dims [{string.Join(", ", tensor.Dims)}] of ONNX type {tensor.DataType}: {bytes:N0} bytes on the device, " +
                $"over Limits:MaxTensorMiB ({limits.MaxTensorBytes:N0} bytes)");
        _tensorBytes = Sizes.Plus(_tensorBytes, bytes);
        if (_tensorBytes > limits.MaxInitializerBytes)
            throw new ModelLoadException(
                $"{Where()} brings the tensors of the model to {_tensorBytes:N0} bytes on the device, " +
                $"over Limits:MaxInitializerMiB ({limits.MaxInitializerBytes:N0} bytes)");
    }

    /// <summary>Bytes per element on the device (see ElementTypes.DeviceType); 8 for a type the engine does not take.</summary>
    private long ElementBytes(int onnxType) =>
        !ElementTypes.TryFromOnnx(onnxType, out var type) ? 8 : type.DeviceType(computeType) switch
        {
            torch.ScalarType.Bool => 1,
            torch.ScalarType.Float32 => 4,
            _ => 8,
        };

    /// <summary>The path of the message being walked, e.g. graph.node[3] ('conv1').attribute[0] ('pads').</summary>
    private string Where()
    {
        var where = new StringBuilder();
        foreach (var (field, index, message) in _path)
        {
            if (where.Length > 0) where.Append('.');
            where.Append(field);
            if (index >= 0) where.Append('[').Append(index).Append(']');
            if (NameOf(message) is { Length: > 0 and <= 64 } name) where.Append(" ('").Append(name).Append("')");
        }
        return where.Length == 0 ? "the model" : where.ToString();
    }

    private static string? NameOf(IMessage message) => message switch
    {
        NodeProto n => n.Name,
        AttributeProto a => a.Name,
        TensorProto t => t.Name,
        ValueInfoProto v => v.Name,
        _ => null,
    };
}
