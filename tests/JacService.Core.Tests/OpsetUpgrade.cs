using Google.Protobuf;
using JacService.Core.Onnx.Proto;

namespace JacService.Core.Tests;

/// <summary>
/// Rewrites a model exported at opset 13-17 as an exporter writes the same graph at a later opset: the default domain's
/// import and the IR version that opset came with, the reductions' axes moved from an attribute to an input (opset 18)
/// and DFT's (opset 20). No other op of the fixtures changed meaning up to opset 26. The local exporter (torch 1.13)
/// stops at opset 17.
/// </summary>
public static class OpsetUpgrade
{
    /// <summary>The IR version each ONNX release introduced with its opset (onnx's docs/Versioning.md).</summary>
    private static readonly Dictionary<int, long> IrVersions = new()
    {
        [18] = 8, [19] = 9, [20] = 9, [21] = 10, [22] = 10, [23] = 11, [24] = 12, [25] = 13, [26] = 13,
    };

    /// <summary>The reductions whose axes became an input in opset 18 (ReduceSum's did in 13).</summary>
    private static readonly HashSet<string> AxesInputFrom18 =
        ["ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceProd", "ReduceSumSquare"];

    public static byte[] To(byte[] bytes, int opset)
    {
        var model = ModelProto.Parser.ParseFrom(bytes);
        model.OpsetImport.Single(o => o.Domain is "" or "ai.onnx").Version = opset;
        model.IrVersion = Math.Max(model.IrVersion, IrVersions[opset]);
        foreach (var node in model.Graph.Node.Where(n => AxesInputFrom18.Contains(n.OpType)))
        {
            if (node.Attribute.FirstOrDefault(a => a.Name == "axes") is not { } axes) continue;
            node.Attribute.Remove(axes);
            var name = $"{node.Output[0]}_axes";
            var values = new TensorProto { Name = name, DataType = 7 };
            values.Dims.Add(axes.Ints.Count);
            values.Int64Data.Add(axes.Ints);
            model.Graph.Initializer.Add(values);
            node.Input.Add(name);
        }
        // DFT's axis became an input in opset 20.
        foreach (var node in model.Graph.Node.Where(n => n.OpType == "DFT" && opset >= 20))
        {
            long axis = 1;
            if (node.Attribute.FirstOrDefault(a => a.Name == "axis") is { } attribute)
            {
                axis = attribute.I;
                node.Attribute.Remove(attribute);
            }
            var name = $"{node.Output[0]}_axis";
            model.Graph.Initializer.Add(new TensorProto { Name = name, DataType = 7, Int64Data = { axis } });
            while (node.Input.Count < 2) node.Input.Add("");
            node.Input.Add(name);
        }
        foreach (var node in model.Graph.Node.Where(n => n.OpType == "GridSample" && opset >= 20))
            if (node.Attribute.FirstOrDefault(a => a.Name == "mode") is { } mode)
                mode.S = ByteString.CopyFromUtf8(mode.S.ToStringUtf8() switch { "bilinear" => "linear", "bicubic" => "cubic", var m => m });
        return model.ToByteArray();
    }
}
