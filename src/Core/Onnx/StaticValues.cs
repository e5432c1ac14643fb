using JacService.Core.Onnx.Proto;

namespace JacService.Core.Onnx;

/// <summary>
/// Small integer and bool values a graph fixes before anything runs: constants, and the shape arithmetic exporters write
/// around them (torch writes a loop over a sequence as Loop with its trip count Gather(Shape(x), 1), where x declares that
/// axis). Control flow is unrolled at load only where its counts and conditions resolve here. Elements are null where
/// the graph leaves them open (a symbolic batch axis); anything else resolves to null as a whole.
/// </summary>
internal static class StaticValues
{
    /// <summary>A value's elements (row-major) and shape.</summary>
    public sealed record Known(long?[] Values, long[] Dims)
    {
        public long? Scalar => Values.Length == 1 ? Values[0] : null;
    }

    // Shape arithmetic is a handful of elements; anything bigger is not a count or a condition.
    private const int MaxElements = 64;

    // Exporters' chains from a Shape to a count are a few nodes; the bound only keeps a hostile graph from recursing without end.
    private const int MaxDepth = 64;

    /// <summary>What <paramref name="name"/> holds before anything runs; null where that is open.</summary>
    public static Known? Of(string name, GraphScope scope) => Of(name, scope, 0);

    private static Known? Of(string name, GraphScope scope, int depth)
    {
        if (scope.Assumed(name) is { } given) return given;
        if (depth > MaxDepth) return null;
        if (scope.Initializer(name) is { } t) return FromTensor(t);
        if (scope.Producer(name) is not { } node || node.Domain is not ("" or "ai.onnx")) return null;
        Known? In(int i) => i < node.Input.Count && node.Input[i].Length > 0 ? Of(node.Input[i], scope, depth + 1) : null;
        long Int(string attribute, long fallback) => node.Attribute.FirstOrDefault(a => a.Name == attribute) is { } a ? a.I : fallback;

        return node.OpType switch
        {
            "Constant" => node.Attribute.FirstOrDefault() switch
            {
                { Name: "value" } a => a.T is { } v ? FromTensor(v) : null,
                { Name: "value_int" } a => new([a.I], []),
                { Name: "value_ints" } a when a.Ints.Count <= MaxElements => new(a.Ints.Select(i => (long?)i).ToArray(), [a.Ints.Count]),
                _ => null,
            },
            "Identity" => In(0),
            "Cast" when IsIntegral((int)Int("to", 0)) && In(0) is { } x =>
                (ElementType)Int("to", 0) == ElementType.Bool ? Map(x, v => v != 0 ? 1 : 0) : x,
            "Shape" => ShapeOf(scope.DeclaredShape(node.Input[0]), Int("start", 0), node.Attribute.Any(a => a.Name == "end") ? Int("end", 0) : null),
            "Gather" when Int("axis", 0) == 0 && In(0) is { Dims.Length: 1 } data && In(1) is { } index => Gather(data, index),
            "Squeeze" when In(0) is { Values.Length: 1 } x => new(x.Values, []),
            "Unsqueeze" when In(0) is { Dims.Length: 0 } x => new(x.Values, [1]),
            "Concat" when node.Input.Select((_, i) => In(i)).ToList() is var parts && parts.All(p => p is { Dims.Length: 1 }) =>
                new(parts.SelectMany(p => p!.Values).ToArray(), [parts.Sum(p => p!.Values.Length)]),
            "Add" => Pair(In(0), In(1), (a, b) => a + b),
            "Sub" => Pair(In(0), In(1), (a, b) => a - b),
            "Mul" => Pair(In(0), In(1), (a, b) => a * b),
            "Div" => Pair(In(0), In(1), (a, b) => b == 0 ? null : a / b),
            "Equal" => Pair(In(0), In(1), (a, b) => a == b ? 1 : 0),
            "Greater" => Pair(In(0), In(1), (a, b) => a > b ? 1 : 0),
            "GreaterOrEqual" => Pair(In(0), In(1), (a, b) => a >= b ? 1 : 0),
            "Less" => Pair(In(0), In(1), (a, b) => a < b ? 1 : 0),
            "LessOrEqual" => Pair(In(0), In(1), (a, b) => a <= b ? 1 : 0),
            "And" => Pair(In(0), In(1), (a, b) => a != 0 && b != 0 ? 1 : 0),
            "Or" => Pair(In(0), In(1), (a, b) => a != 0 || b != 0 ? 1 : 0),
            "Not" when In(0) is { } x => Map(x, v => v == 0 ? 1 : 0),
            _ => null,
        };
    }

    private static bool IsIntegral(int type) => (ElementType)type is ElementType.Int64 or ElementType.Int32 or ElementType.Bool
        || type is 2 or 3 or 4 or 5 or 12 or 13; // uint8, int8, uint16, int16, uint32, uint64

    private static Known? FromTensor(TensorProto t)
    {
        if (!IsIntegral(t.DataType) || t.Dims.Aggregate(1L, (p, d) => p * d) > MaxElements || t.HasDataLocation && t.DataLocation != 0) return null;
        long[]? values = (ElementType)t.DataType switch
        {
            ElementType.Int64 when t.RawData.Length > 0 => t.RawData.Length % 8 == 0
                ? Enumerable.Range(0, t.RawData.Length / 8).Select(i => BitConverter.ToInt64(t.RawData.Span.Slice(8 * i, 8))).ToArray() : null,
            ElementType.Int64 => t.Int64Data.ToArray(),
            ElementType.Int32 when t.RawData.Length > 0 => t.RawData.Length % 4 == 0
                ? Enumerable.Range(0, t.RawData.Length / 4).Select(i => (long)BitConverter.ToInt32(t.RawData.Span.Slice(4 * i, 4))).ToArray() : null,
            ElementType.Bool when t.RawData.Length > 0 => t.RawData.Span.ToArray().Select(b => (long)(b != 0 ? 1 : 0)).ToArray(),
            ElementType.Int32 or ElementType.Bool => t.Int32Data.Select(v => (long)v).ToArray(),
            _ => null,
        };
        long count = t.Dims.Aggregate(1L, (p, d) => p * d);
        return values is not null && values.Length == count ? new(values.Select(v => (long?)v).ToArray(), t.Dims.ToArray()) : null;
    }

    private static Known? ShapeOf(long?[]? declared, long start, long? end)
    {
        if (declared is null) return null;
        int rank = declared.Length;
        int Clamp(long axis) => (int)Math.Clamp(axis < 0 ? axis + rank : axis, 0, rank);
        int from = Clamp(start), to = Clamp(end ?? rank);
        var dims = declared[from..Math.Max(from, to)];
        return new(dims, [dims.Length]);
    }

    private static Known? Gather(Known data, Known index)
    {
        int n = data.Values.Length;
        var picked = new long?[index.Values.Length];
        for (int i = 0; i < picked.Length; i++)
        {
            if (index.Values[i] is not { } k || k < -n || k >= n) return null;
            picked[i] = data.Values[k < 0 ? k + n : k];
        }
        return new(picked, index.Dims);
    }

    private static Known Map(Known x, Func<long, long> f) => new(x.Values.Select(v => v is { } a ? f(a) : (long?)null).ToArray(), x.Dims);

    /// <summary>Elementwise on equal shapes or against a single element; null where either side is unknown.</summary>
    private static Known? Pair(Known? a, Known? b, Func<long, long, long?> f)
    {
        if (a is null || b is null) return null;
        if (a.Values.Length == 1 && b.Values.Length > 1) return new(b.Values.Select(v => Apply(a.Values[0], v, f)).ToArray(), b.Dims);
        if (b.Values.Length == 1) return new(a.Values.Select(v => Apply(v, b.Values[0], f)).ToArray(), a.Values.Length == 1 && b.Dims.Length > a.Dims.Length ? b.Dims : a.Dims);
        if (!a.Dims.SequenceEqual(b.Dims)) return null;
        return new(a.Values.Zip(b.Values, (x, y) => Apply(x, y, f)).ToArray(), a.Dims);
    }

    private static long? Apply(long? a, long? b, Func<long, long, long?> f) => a is { } x && b is { } y ? f(x, y) : null;
}
