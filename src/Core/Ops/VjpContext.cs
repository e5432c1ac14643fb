using JacService.Core.Onnx;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>
/// What a reverse (VJP) rule sees: its node, the values of its inputs and outputs from the forward pass, and the
/// cotangents of its outputs. Cotangents carry a leading basis axis like tangents: [K, ..value shape], or null for an
/// output no requested derivative flows through.
/// </summary>
public sealed class VjpContext(GraphNode node, int opset, ScalarType computeType, Tensor?[] inputs, Tensor[] outputs, Tensor?[] cotangents, bool[] needs)
{
    public GraphNode Node { get; } = node;
    public int Opset { get; } = opset;
    public NodeAttributes Attr => Node.Attributes;
    public int InputCount => inputs.Length;
    public int OutputCount => outputs.Length;

    public Tensor In(int i) =>
        i < inputs.Length && inputs[i] is { } t ? t : throw new InvalidOperationException($"input {i} is required");

    public Tensor? Optional(int i) => i < inputs.Length ? inputs[i] : null;

    public Tensor Out(int i) => outputs[i];

    /// <summary>The cotangent of output <paramref name="i"/>, or null when nothing requested flows back through it.</summary>
    public Tensor? Cotangent(int i) => i < cotangents.Length ? cotangents[i] : null;

    /// <summary>Whether input <paramref name="i"/> depends on the differentiated input (only those need a cotangent).</summary>
    public bool Needs(int i) => i < needs.Length && needs[i];

    /// <summary>
    /// The node's forward context over the same values (no tangents), so parameter parsing written for the forward
    /// rule (axes, pads, bounds) serves the reverse rule too; <paramref name="input0"/> replaces the data input.
    /// </summary>
    public OpContext Primal(Tensor? input0 = null) => new(Node, Opset, computeType,
        Enumerable.Range(0, inputs.Length).Select(i => (i == 0 ? input0 ?? inputs[0] : inputs[i]) is { } t ? new Dual(t, null) : (Dual?)null).ToArray());

    /// <summary>The basis size K taken from whichever output carries a cotangent.</summary>
    public long K => cotangents.FirstOrDefault(t => t is not null)?.size(0)
        ?? throw new InvalidOperationException("no output carries a cotangent");
}
