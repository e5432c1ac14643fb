using JacService.Core.Onnx;
using JacService.Core.Ops;

namespace JacService.Core.Models;

/// <summary>
/// Checks a request against a model's signature before it is queued: names, ranks, shapes, lengths and values of
/// inputs, tangents and cotangents, and which input and outputs to differentiate. Managed code only; runs anywhere.
/// </summary>
public sealed class RequestValidator(string modelName, ModelGraph graph)
{
    private IReadOnlyList<TensorSignature> Inputs => graph.Inputs;
    private IReadOnlyList<TensorSignature> Outputs => graph.Outputs;
    private readonly string[] _floatInputs = graph.Inputs.Where(i => i.ElementType.IsFloat()).Select(i => i.Name).ToArray();
    private readonly int[] _floatOutputs = Enumerable.Range(0, graph.Outputs.Count).Where(i => graph.Outputs[i].ElementType.IsFloat()).ToArray();

    /// <summary>
    /// Checks names, ranks, shapes, lengths and values of the inputs and returns them in the model's input order
    /// with a leading batch axis (added when <paramref name="batched"/> is false).
    /// </summary>
    public HostTensor[] ValidateInputs(IReadOnlyDictionary<string, HostTensor> inputs, bool batched)
    {
        foreach (var name in inputs.Keys.Where(k => graph.InputIndex(k) < 0))
            throw new InvalidRequestException($"unknown input '{name}'; model '{modelName}' takes {Describe(Inputs, batched)}");

        var ordered = new HostTensor[Inputs.Count];
        long batch = -1;
        for (int i = 0; i < Inputs.Count; i++)
        {
            var sig = Inputs[i];
            if (!inputs.TryGetValue(sig.Name, out var given))
                throw new InvalidRequestException($"missing input '{sig.Name}'; model '{modelName}' takes {Describe(Inputs, batched)}");
            var expected = batched ? sig.Shape : sig.Shape[1..];
            var shape = given.Shape;
            bool fits = shape.Length == expected.Length && shape.Zip(expected).All(p => p.Second < 0 ? p.First >= 1 : p.First == p.Second);
            if (!fits)
            {
                // Right rank and fixed sizes, so an open axis (the batch's B, a '?') came with fewer than one element.
                bool emptyOpenAxis = shape.Length == expected.Length && shape.Zip(expected).All(p => p.Second < 0 || p.First == p.Second);
                throw new InvalidRequestException($"input '{sig.Name}': expected shape {ShapeText(expected, batched)}, got {given.ShapeText}" +
                    (emptyOpenAxis ? "; every open axis (B, ?) needs at least 1" : ""));
            }
            CheckLength($"input '{sig.Name}'", given);
            long b = batched ? shape[0] : 1;
            if (batch >= 0 && b != batch)
                throw new InvalidRequestException($"input '{sig.Name}' has batch size {b}, other inputs have {batch}");
            batch = b;

            CheckValues($"input '{sig.Name}'", given.Data, sig.ElementType);
            ordered[i] = batched ? given : given with { Shape = [1, .. shape] };
        }
        return ordered;
    }

    /// <summary>The input to differentiate: the named one, or the only float input when the name is empty.</summary>
    public int ResolveWrt(string? wrt)
    {
        var floats = _floatInputs;
        if (string.IsNullOrEmpty(wrt))
        {
            if (floats.Length == 1) return graph.InputIndex(floats[0]);
            throw new InvalidRequestException(
                $"model '{modelName}' has {floats.Length} float inputs ({string.Join(", ", floats)}); name one in 'wrt'");
        }
        int index = graph.InputIndex(wrt);
        if (index < 0)
            throw new InvalidRequestException($"unknown wrt '{wrt}'; the model's float inputs are: {string.Join(", ", floats)}");
        if (!Inputs[index].ElementType.IsFloat())
            throw new InvalidRequestException(
                $"wrt '{wrt}' is a {Inputs[index].ElementType.OnnxName()} input; only float inputs have derivatives ({string.Join(", ", floats)})");
        return index;
    }

    /// <summary>The outputs to differentiate: the named ones, or every float output when none are named.</summary>
    public int[] ResolveOf(IReadOnlyCollection<string> of)
    {
        if (of.Count == 0 || of.All(string.IsNullOrEmpty)) return (int[])_floatOutputs.Clone();
        // Only for the messages: built on every request, the list cost more than the lookups.
        string Floats() => string.Join(", ", Outputs.Where(o => o.ElementType.IsFloat()).Select(o => o.Name));
        return of.Where(o => o.Length > 0).Distinct().Select(name =>
        {
            int index = graph.OutputIndex(name);
            if (index < 0) throw new InvalidRequestException($"unknown output '{name}' in 'of'; the model's float outputs are: {Floats()}");
            if (!Outputs[index].ElementType.IsFloat())
                throw new InvalidRequestException($"output '{name}' is {Outputs[index].ElementType.OnnxName()}; only float outputs have derivatives ({Floats()})");
            return index;
        }).ToArray();
    }

    /// <summary>
    /// The flat indices of one sample of <paramref name="wrt"/> a Laplacian sums over, ascending: every element when
    /// none are given; each given one must be in range and appear once.
    /// </summary>
    public int[] ResolveAxes(IReadOnlyCollection<long> axes, HostTensor[] inputs, int wrt)
    {
        long size = Shapes.Product(inputs[wrt].Shape[1..]);
        if (axes.Count == 0) return Enumerable.Range(0, (int)size).ToArray();
        string What() => $"'{Inputs[wrt].Name}' has {size} elements per sample (shape {Shapes.Text(inputs[wrt].Shape[1..])})";
        var seen = new HashSet<long>();
        foreach (var a in axes)
        {
            if (a < 0 || a >= size)
                throw new InvalidRequestException($"axes holds {a}, out of range: {What()}, so axes must lie in [0, {size - 1}]");
            if (!seen.Add(a))
                throw new InvalidRequestException($"axes names {a} more than once; each element of wrt is summed at most once");
        }
        return seen.Order().Select(a => (int)a).ToArray();
    }

    /// <summary>
    /// Checks JVP directions for input <paramref name="wrt"/>: [B] ++ in_shape (one per sample) or [B, T] ++ in_shape
    /// (T per sample), finite. Returns the number of directions per sample, or null for the one-direction layout.
    /// </summary>
    public long? ValidateTangents(HostTensor tangents, HostTensor[] inputs, int wrt) =>
        CheckDirections($"tangents for '{Inputs[wrt].Name}'", tangents, inputs[wrt].Shape);

    /// <summary>
    /// Checks VJP cotangents: one per output in <paramref name="of"/> (or, when <paramref name="of"/> named none, the
    /// outputs they are given for), each [B] ++ out_shape or [B, T] ++ out_shape with the same layout and T for all,
    /// finite. Returns them in the order of the resolved outputs, the outputs, and T (null for one per sample).
    /// </summary>
    public (HostTensor[] Cotangents, int[] Of, long? Directions) ValidateCotangents(IReadOnlyDictionary<string, HostTensor> cotangents,
        IReadOnlyCollection<string> of, HostTensor[] inputs, Func<int, long[]> sampleShape)
    {
        if (cotangents.Count == 0)
            throw new InvalidRequestException("no cotangents: give one per output to differentiate, e.g. a 1 at the class score whose gradient you want");
        int[] resolved = of.Count == 0 || of.All(string.IsNullOrEmpty)
            ? cotangents.Keys.Select(name => graph.OutputIndex(name) is >= 0 and var i ? i
                : throw new InvalidRequestException($"cotangent for unknown output '{name}'; the model's outputs are: {string.Join(", ", Outputs.Select(o => o.Name))}"))
                .Order().ToArray()
            : ResolveOf(of);
        foreach (var name in cotangents.Keys.Where(k => !resolved.Any(o => Outputs[o].Name == k)))
            throw new InvalidRequestException(
                $"cotangent for output '{name}', which is not in 'of' ({string.Join(", ", resolved.Select(o => Outputs[o].Name))})");
        var ordered = new HostTensor[resolved.Length];
        long? directions = null;
        for (int j = 0; j < resolved.Length; j++)
        {
            var name = Outputs[resolved[j]].Name;
            if (!Outputs[resolved[j]].ElementType.IsFloat())
                throw new InvalidRequestException($"output '{name}' is {Outputs[resolved[j]].ElementType.OnnxName()}; only float outputs have derivatives");
            if (!cotangents.TryGetValue(name, out var given))
                throw new InvalidRequestException($"missing cotangent for output '{name}', which 'of' names");
            long[] expected = [inputs[0].Shape[0], .. sampleShape(resolved[j])];
            var t = CheckDirections($"cotangents for '{name}'", given, expected);
            if (j > 0 && t != directions)
                throw new InvalidRequestException(
                    $"cotangents for '{name}' have {Count(t)}, those for '{Outputs[resolved[0]].Name}' have {Count(directions)}; all must have the same");
            directions = t;
            ordered[j] = given;
        }
        return (ordered, resolved, directions);

        static string Count(long? t) => t is { } v ? $"{v} directions per sample" : "one direction per sample (no T axis)";
    }

    private static long? CheckDirections(string what, HostTensor given, long[] batchedShape)
    {
        var shape = given.Shape;
        long[] sample = batchedShape[1..];
        bool one = shape.SequenceEqual(batchedShape);
        bool many = shape.Length == batchedShape.Length + 1 && shape[0] == batchedShape[0] && shape[1] >= 1 && shape[2..].SequenceEqual(sample);
        if (!one && !many)
            throw new InvalidRequestException(
                $"{what}: expected shape {Shapes.Text(batchedShape)} (one direction per sample) or [{batchedShape[0]}, T{string.Concat(sample.Select(d => $", {d}"))}] " +
                $"(T directions per sample), got {given.ShapeText}");
        CheckLength(what, given);
        CheckValues(what, given.Data, ElementType.Float);
        return many ? shape[1] : null;
    }

    private static void CheckLength(string what, HostTensor given)
    {
        long count = given.Count;
        if (count != given.Data.Length)
            throw new InvalidRequestException(count == long.MaxValue
                ? $"{what}: shape {given.ShapeText} has more elements than a tensor can hold, got {given.Data.Length} values"
                : $"{what}: shape {given.ShapeText} needs {count} values, got {given.Data.Length}");
    }

    private static void CheckValues(string what, float[] data, ElementType type)
    {
        bool integral = !type.IsFloat();
        for (int i = 0; i < data.Length; i++)
        {
            float v = data[i];
            if (!float.IsFinite(v))
                throw new InvalidRequestException(
                    $"{what} holds {(float.IsNaN(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf")} at flat index {i}; {(what.StartsWith("input") ? "inputs" : "values")} must be finite");
            if (integral && (v != MathF.Round(v) || (type == ElementType.Bool && v is not (0 or 1))))
                throw new InvalidRequestException($"{what} is {type.OnnxName()} but holds {v} at flat index {i}");
        }
    }

    private static string ShapeText(long[] shape, bool batched) =>
        "[" + string.Join(", ", shape.Select((d, i) => d >= 0 ? d.ToString() : batched && i == 0 ? "B" : "?")) + "]";

    private static string Describe(IEnumerable<TensorSignature> signatures, bool batched) =>
        string.Join(", ", signatures.Select(s => $"{s.Name} {ShapeText(batched ? s.Shape : s.Shape[1..], batched)} {s.ElementType.OnnxName()}"));
}
