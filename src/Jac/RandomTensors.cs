using JacService.Client;
using JacService.Protos.V1;

namespace JacService.Jac;

/// <summary>Uniform values in [-1, 1) shaped as a model declares its tensors, for verbs that need inputs when none are given.</summary>
public static class RandomTensors
{
    /// <summary>
    /// Every input of <paramref name="info"/>, with <paramref name="rows"/> on the batch axis (none when null). Random data is
    /// float only; <paramref name="fileOption"/> names the option that gives real inputs instead.
    /// </summary>
    public static Dictionary<string, FloatTensor> Inputs(ModelInfo info, int? rows, Random rng, string fileOption)
    {
        var inputs = new Dictionary<string, FloatTensor>();
        foreach (var sig in info.Inputs)
        {
            if (sig.Dtype != "float") throw new JacException($"input '{sig.Name}' is {sig.Dtype}; random data is float only: pass {fileOption}");
            inputs[sig.Name] = Uniform(sig, rows, rng, fileOption);
        }
        return inputs;
    }

    /// <summary>Uniform values in [-1, 1) of the signature's shape, its batch axis <paramref name="rows"/> long (none when null).</summary>
    public static FloatTensor Uniform(TensorInfo sig, int? rows, Random rng, string fileOption)
    {
        var shape = rows is { } b ? sig.Shape.Select((d, i) => i == 0 ? b : d).ToArray() : sig.Shape.Skip(1).ToArray();
        if (shape.Any(d => d < 0))
            throw new JacException($"'{sig.Name}' has a dynamic axis besides the batch ([{string.Join(", ", sig.Shape)}]); pass {fileOption} with real inputs");
        long count = shape.Aggregate(1L, (p, d) => p * d);
        return new FloatTensor(Enumerable.Range(0, (int)count).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray(), shape);
    }
}
