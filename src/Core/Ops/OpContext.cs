using JacService.Core.Onnx;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>What a rule sees: its node, the opset, the basis size and its inputs.</summary>
public sealed class OpContext(GraphNode node, int opset, ScalarType computeType, Dual?[] inputs)
{
    public GraphNode Node { get; } = node;
    public int Opset { get; } = opset;
    public ScalarType ComputeType { get; } = computeType;
    public NodeAttributes Attr => Node.Attributes;
    public int InputCount => inputs.Length;
    public int OutputCount => Node.Outputs.Length;

    public Dual In(int i) =>
        i < inputs.Length && inputs[i] is { } d ? d : throw new InvalidOperationException($"input {i} is required");

    public Dual? Optional(int i) => i < inputs.Length ? inputs[i] : null;

    /// <summary>The basis size K taken from whichever input carries a tangent.</summary>
    public long K => inputs.FirstOrDefault(d => d?.Tangent is not null)?.Tangent!.size(0)
        ?? throw new InvalidOperationException("no input carries a tangent");

    public bool AnyTangent => inputs.Any(d => d?.Tangent is not null);
}
