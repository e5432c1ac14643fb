using JacService.Core.Onnx.Proto;

namespace JacService.Core.Compiled;

/// <summary>
/// What a compiled rule sees: its node as the model file has it, the emitter, the basis size and, going forward, its
/// inputs' tangents or, going back, its outputs' cotangents. Directions lead with the basis axis, [K, ..value], and
/// are full-size except, perhaps, along the batch axis (the seed is one direction per sample, broadcast over the batch).
/// </summary>
internal sealed class OnnxRuleContext(NodeProto node, OnnxEmitter emit, long basis, string?[] tangents, string?[] cotangents, bool[] needs)
{
    public OnnxEmitter Emit { get; } = emit;
    public long Basis { get; } = basis;
    public string OpType => node.OpType;
    public int InputCount => node.Input.Count;
    public int OutputCount => node.Output.Count;

    public string In(int i) => node.Input[i];
    public string Out(int o) => node.Output[o];
    public string? Tangent(int i) => i < tangents.Length ? tangents[i] : null;
    public string? Cotangent(int o) => o < cotangents.Length ? cotangents[o] : null;
    public bool Needs(int i) => i < needs.Length && needs[i];

    public long Int(string name, long fallback) => node.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.I : fallback;
    public float Float(string name, float fallback) => node.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.F : fallback;
    public long[]? Ints(string name) => node.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.Ints.ToArray() : null;
    public string String(string name, string fallback) => node.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.S.ToStringUtf8() : fallback;
    public float[]? Floats(string name) => node.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.Floats.ToArray() : null;
    public string[]? Strings(string name) => node.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.Strings.Select(s => s.ToStringUtf8()).ToArray() : null;

    /// <summary>The node's attributes, for a derivative node that applies the same op to directions.</summary>
    public IEnumerable<AttributeProto> Attributes => node.Attribute;

    /// <summary>Input <paramref name="i"/>'s tangent with axes inserted after the basis axis so it broadcasts against the output.</summary>
    public string Aligned(int i)
    {
        var t = Tangent(i) ?? throw new InvalidOperationException($"input {i} has no tangent");
        int missing = Emit.Rank(Out(0)) - Emit.Rank(In(i));
        return missing <= 0 ? t : Emit.Op("Unsqueeze", t, Emit.Ints(Enumerable.Range(1, missing).Select(a => (long)a).ToArray()));
    }

    /// <summary>
    /// A term of the output's tangent made from input <paramref name="i"/>'s: expanded to the output's shape where the
    /// input broadcast along a per-sample axis, which a later product or reshape could not take.
    /// </summary>
    public string Fit(string direction, int i)
    {
        long[] input = Emit.Shape(In(i)), output = Emit.Shape(Out(0));
        bool broadcast = false;
        for (int axis = 1; axis < output.Length; axis++)
        {
            int j = axis - (output.Length - input.Length);
            if (j < 0 || input[j] != output[axis]) broadcast = true;
        }
        return broadcast ? Emit.Full(direction, Basis, Out(0)) : direction;
    }

    /// <summary>
    /// A cotangent of the output summed back to input <paramref name="i"/>'s shape over the axes the input broadcast
    /// along (the transpose of broadcasting).
    /// </summary>
    public string Unbroadcast(string cotangent, int i)
    {
        var axes = BroadcastAxes(i);
        return axes.Length == 0 ? cotangent : SumBack(Emit.Full(cotangent, Basis, Out(0)), axes, i);
    }

    /// <summary>
    /// The output's axes, in direction coordinates, that input <paramref name="i"/> broadcast along or lacks, leaving
    /// out the last <paramref name="trailing"/> (a MatMul's matrix axes, which do not broadcast).
    /// </summary>
    public long[] BroadcastAxes(int i, int trailing = 0)
    {
        long[] input = Emit.Shape(In(i)), output = Emit.Shape(Out(0));
        int extra = output.Length - input.Length;
        return Enumerable.Range(0, output.Length - trailing).Where(axis => axis < extra || (input[axis - extra] == 1 && output[axis] != 1))
            .Select(axis => (long)axis + 1).ToArray();
    }

    /// <summary>A direction over the output's leading axes summed over <paramref name="axes"/>, less those input <paramref name="i"/> lacks.</summary>
    public string SumBack(string direction, long[] axes, int i)
    {
        if (axes.Length == 0) return direction;
        int extra = Emit.Rank(Out(0)) - Emit.Rank(In(i));
        var summed = Emit.Op("ReduceSum", [direction, Emit.Ints(axes)], OnnxEmitter.Int("keepdims", 1));
        return extra == 0 ? summed : Emit.Op("Squeeze", summed, Emit.Ints(Enumerable.Range(1, extra).Select(a => (long)a).ToArray()));
    }

    /// <summary>The op's axis attribute in direction coordinates (past the basis axis); refuses the batch axis.</summary>
    public long DirectionAxis(long fallback) => SampleAxis(Int("axis", fallback), Out(0)) + 1;

    /// <summary>
    /// An axis of <paramref name="value"/>, made non-negative; refuses one that carries the batch. That is axis 0 of most
    /// values, but a seq-first layer's (PyTorch's default for nn.TransformerEncoderLayer and nn.MultiheadAttention) carry
    /// it on axis 1, and the mean or the first element along their axis 0 is per sample.
    /// </summary>
    public long SampleAxis(long axis, string value)
    {
        int rank = Emit.Rank(value);
        long normalised = axis < 0 ? axis + rank : axis;
        if (normalised < 0 || normalised >= rank || Emit.CarriesBatch(value, normalised))
            throw new NotCompilableException($"{OpType} '{Out(0)}' works along axis {axis}, which is not a per-sample axis");
        return normalised;
    }

    /// <summary>Input <paramref name="i"/>'s values where the file fixes them; refuses one that is computed.</summary>
    public long[]? ConstantInput(int i)
    {
        if (i >= InputCount || In(i).Length == 0) return null;
        return Emit.ConstantInts(In(i)) ?? throw new NotCompilableException($"{OpType} '{Out(0)}' takes its input {i} ('{In(i)}') from a computed value");
    }
}
