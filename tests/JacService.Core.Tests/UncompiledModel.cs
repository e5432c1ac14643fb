using Google.Protobuf;
using JacService.Core.Onnx.Proto;
using JacService.Testing;

namespace JacService.Core.Tests;

/// <summary>
/// A model whose derivatives the engine serves but cannot compile into a graph: the fixture mlp_tanh reading its input
/// through a Gather (the columns reversed), an op with no compiled rule (every fixture compiles whole), for tests of the
/// visible fallback.
/// </summary>
public static class UncompiledModel
{
    public const string Name = "mlp_gather";

    public static byte[] Bytes()
    {
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh")));
        var graph = model.Graph;
        string input = graph.Input[0].Name, gathered = input + "_reversed";
        long columns = graph.Input[0].Type.TensorType.Shape.Dim[1].DimValue;
        foreach (var node in graph.Node)
            for (int i = 0; i < node.Input.Count; i++)
                if (node.Input[i] == input) node.Input[i] = gathered;
        var order = new TensorProto { Name = "reversed_columns", DataType = (int)TensorProto.Types.DataType.Int64, Dims = { columns } };
        order.Int64Data.AddRange(Enumerable.Range(0, (int)columns).Select(c => columns - 1 - c));
        graph.Initializer.Add(order);
        var gather = new NodeProto { OpType = "Gather", Name = "reverse_columns", Input = { input, order.Name }, Output = { gathered } };
        gather.Attribute.Add(new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = 1 });
        graph.Node.Insert(0, gather);
        return model.ToByteArray();
    }
}
