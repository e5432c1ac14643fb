using TorchSharp;

namespace JacService.Core.Onnx;

/// <summary>
/// A validated, topologically sorted ONNX graph with its initializers on the device: the immutable parameter
/// set of one model version. Values are addressed by integer ids so evaluation indexes arrays, not maps.
/// </summary>
public sealed class ModelGraph : IDisposable
{
    public required IReadOnlyList<TensorSignature> Inputs { get; init; }
    public required IReadOnlyList<TensorSignature> Outputs { get; init; }
    public required int Opset { get; init; }
    public required torch.ScalarType ComputeType { get; init; }
    public required string[] ValueNames { get; init; }
    public required int[] InputIds { get; init; }
    public required int[] OutputIds { get; init; }
    public required GraphNode[] Nodes { get; init; }

    /// <summary>Equal for two files that differ in their floating-point weights only (<see cref="ModelStructure"/>).</summary>
    public required string Structure { get; init; }
    /// <summary>Initializer tensors by value id; owned by this graph.</summary>
    public required IReadOnlyDictionary<int, torch.Tensor> Initializers { get; init; }

    public int ValueCount => ValueNames.Length;

    /// <summary>
    /// The initializer named so, or null: how ONNX Runtime's sessions and read-back graphs find the engine's own tensors to
    /// share instead of copying them (<see cref="OnnxModelReader.ReadWritten"/>, <see cref="Compiled.SharedWeights"/>).
    /// </summary>
    public Func<string, torch.Tensor?> InitializerByName() =>
        Initializers.ToDictionary(p => ValueNames[p.Key], p => p.Value, StringComparer.Ordinal).GetValueOrDefault;

    public int InputIndex(string name)
    {
        for (int i = 0; i < Inputs.Count; i++) if (Inputs[i].Name == name) return i;
        return -1;
    }

    public int OutputIndex(string name)
    {
        for (int i = 0; i < Outputs.Count; i++) if (Outputs[i].Name == name) return i;
        return -1;
    }

    public void Dispose()
    {
        foreach (var t in Initializers.Values) t.Dispose();
    }
}
