using Google.Protobuf;
using JacService.Core.Onnx.Proto;
using JacService.Testing;

namespace JacService.Core.Tests;

/// <summary>
/// A model whose derivatives the engine serves but cannot compile into a graph: the fixture mlp_tanh reading its input
/// with its columns reversed by a Slice of step -1, which the Slice rule does not compile (every fixture compiles
/// whole), for tests of the visible fallback.
/// </summary>
public static class UncompiledModel
{
    public const string Name = "mlp_reversed";

    public static byte[] Bytes()
    {
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh")));
        var graph = model.Graph;
        string input = graph.Input[0].Name, reversed = input + "_reversed";
        foreach (var node in graph.Node)
            for (int i = 0; i < node.Input.Count; i++)
                if (node.Input[i] == input) node.Input[i] = reversed;
        void Constant(string name, long value) =>
            graph.Initializer.Add(new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64, Dims = { 1 }, Int64Data = { value } });
        Constant("reverse_starts", -1);
        Constant("reverse_ends", long.MinValue);
        Constant("reverse_axes", 1);
        Constant("reverse_steps", -1);
        var reverse = new NodeProto
        {
            OpType = "Slice", Name = "reverse_columns", Input = { input, "reverse_starts", "reverse_ends", "reverse_axes", "reverse_steps" }, Output = { reversed },
        };
        graph.Node.Insert(0, reverse);
        return model.ToByteArray();
    }
}
