namespace JacService.Core.Onnx;

/// <summary>One node of the validated, topologically sorted graph; inputs and outputs are value ids.</summary>
public sealed class GraphNode
{
    public required int Index { get; init; }
    public required string Name { get; init; }
    public required string OpType { get; init; }
    public required NodeAttributes Attributes { get; init; }
    /// <summary>Value id per input; -1 for an omitted optional input ("").</summary>
    public required int[] Inputs { get; init; }
    /// <summary>Value id per output; -1 for an omitted optional output.</summary>
    public required int[] Outputs { get; init; }

    public override string ToString() => $"node '{Name}' ({OpType})";
}
