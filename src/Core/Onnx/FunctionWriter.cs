using JacService.Core.Onnx.Proto;

namespace JacService.Core.Onnx;

/// <summary>
/// Writes the nodes one call of a standard function becomes (<see cref="StandardFunctions"/>): nodes named under the
/// call's name, fresh value names, small constants, and the last node of a chain writing the call's own output.
/// </summary>
internal sealed class FunctionWriter(NodeProto call, Func<string, string> fresh, List<NodeProto> into, ValueTypes? types = null)
{
    private int _nodes;

    /// <summary>The call's input <paramref name="i"/>, or "" where it is omitted.</summary>
    public string Input(int i) => i < call.Input.Count ? call.Input[i] : "";

    /// <summary>The call's output <paramref name="o"/>, or "" where the model does not name it.</summary>
    public string Output(int o) => o < call.Output.Count ? call.Output[o] : "";

    public long Int(string name, long fallback) => call.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.I : fallback;

    public float? Float(string name) => call.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.F : null;

    public int? ElementTypeOf(string value) => types?.Of(value);

    public int? RankOf(string value) => types?.RankOf(value);

    /// <summary>Refuses a call without each of its first inputs, named in order.</summary>
    public void Require(params string[] inputs)
    {
        for (int i = 0; i < inputs.Length; i++)
            if (Input(i).Length == 0)
                throw Refuse($"{call.OpType} takes {string.Join(", ", inputs)}; the node has no {inputs[i]} (input {i})");
    }

    public ModelLoadException Refuse(string why) => new($"node '{call.Name}' ({call.OpType}): {why}");

    /// <summary>A node with one output, a fresh value unless <paramref name="output"/> names one of the call's.</summary>
    public string Op(string opType, string[] inputs, params AttributeProto[] attributes) => Into("", opType, inputs, attributes);

    /// <summary>A node writing <paramref name="output"/> (one of the call's outputs), or a fresh value where it is "".</summary>
    public string Into(string output, string opType, string[] inputs, params AttributeProto[] attributes)
    {
        var node = new NodeProto { Name = $"{call.Name}/{opType}_{_nodes++}", OpType = opType };
        node.Input.AddRange(inputs);
        string name = output.Length > 0 ? output : fresh($"{node.Name}_out");
        node.Output.Add(name);
        node.Attribute.AddRange(attributes);
        into.Add(node);
        return name;
    }

    /// <summary>A node written as it is (a copy of a control-flow body's node).</summary>
    public void Add(NodeProto node) => into.Add(node);

    /// <summary>The values stacked along a new <paramref name="axis"/> into <paramref name="output"/> (Unsqueeze's axes an input from opset 13).</summary>
    public void Stack(IEnumerable<string> values, long axis, string output, long opset)
    {
        var unsqueezed = values.Select(v => opset >= 13 ? Op("Unsqueeze", [v, Ints(axis)]) : Op("Unsqueeze", [v], Attr("axes", [axis]))).ToArray();
        Into(output, "Concat", unsqueezed, Attr("axis", axis));
    }

    /// <summary>A 1-D int64 constant.</summary>
    public string Ints(params long[] values)
    {
        var t = new TensorProto { DataType = (int)ElementType.Int64 };
        t.Dims.Add(values.Length);
        t.Int64Data.Add(values);
        return Op("Constant", [], Tensor("value", t));
    }

    /// <summary>A 0-D int64 constant.</summary>
    public string IntScalar(long value)
    {
        var t = new TensorProto { DataType = (int)ElementType.Int64 };
        t.Int64Data.Add(value);
        return Op("Constant", [], Tensor("value", t));
    }

    /// <summary>A float scalar of <paramref name="like"/>'s element type.</summary>
    public string FloatLike(double value, string like) => Op("CastLike", [Op("Constant", [], Tensor("value", FloatTensor(value))), like]);

    /// <summary>Axes <paramref name="start"/> to <paramref name="end"/> of <paramref name="value"/>'s shape (Shape's attributes, opset 15).</summary>
    public string ShapeOf(string value, long start, long? end = null) =>
        end is { } e ? Op("Shape", [value], Attr("start", start), Attr("end", e)) : Op("Shape", [value], Attr("start", start));

    /// <summary>A float tensor of one element, [1] (ConstantOfShape takes no other).</summary>
    public static TensorProto FloatTensor(double value)
    {
        var t = new TensorProto { DataType = (int)ElementType.Float };
        t.Dims.Add(1);
        t.FloatData.Add((float)value);
        return t;
    }

    public static AttributeProto Attr(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Attr(string name, long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.Add(values);
        return a;
    }

    public static AttributeProto Tensor(string name, TensorProto value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Tensor, T = value };
}
