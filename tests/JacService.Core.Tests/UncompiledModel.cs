using Google.Protobuf;
using JacService.Core.Onnx.Proto;
using JacService.Testing;

namespace JacService.Core.Tests;

/// <summary>
/// A model whose derivatives the engine serves but cannot compile into a graph: the fixture mlp_tanh with its Tanh
/// nodes made Selu, an op with no compiled rule (every fixture compiles whole), for tests of the visible fallback.
/// </summary>
public static class UncompiledModel
{
    public const string Name = "mlp_selu";

    public static byte[] Bytes()
    {
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh")));
        foreach (var node in model.Graph.Node.Where(n => n.OpType == "Tanh")) node.OpType = "Selu";
        return model.ToByteArray();
    }
}
