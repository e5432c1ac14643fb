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
    /// <summary>A value's elements (row-major; doubles hold any count exactly), its shape, and whether its type is integral.</summary>
    public sealed record Known(double?[] Values, long[] Dims, bool Integral = true)
    {
        /// <summary>The single element of an integral value (a count, a condition, an index).</summary>
        public long? Scalar => Values.Length == 1 && Integral && Values[0] is { } v ? (long)v : null;
    }

    // Shape arithmetic is a handful of elements; anything bigger is not a count or a condition.
    private const int MaxElements = 64;

    // Exporters' chains from a Shape to a count are a few nodes; the bound only keeps a hostile graph from recursing without end.
    private const int MaxDepth = 64;

    /// <summary>What <paramref name="name"/> holds before anything runs; null where that is open.</summary>
    public static Known? Of(string name, GraphScope scope) => Of(name, scope, 0, new Dictionary<string, Known?>(StringComparer.Ordinal));

    // Memoised per question: a value read twice (Add(a, a), fifty deep) is evaluated once, not 2^50 times.
    private static Known? Of(string name, GraphScope scope, int depth, Dictionary<string, Known?> memo)
    {
        if (memo.TryGetValue(name, out var seen)) return seen;
        return memo[name] = Evaluate(name, scope, depth, memo);
    }

    private static Known? Evaluate(string name, GraphScope scope, int depth, Dictionary<string, Known?> memo)
    {
        if (scope.Assumed(name) is { } given) return given;
        if (depth > MaxDepth) return null;
        if (scope.Initializer(name) is { } t) return FromTensor(t);
        if (scope.Producer(name) is not { } node || node.Domain is not ("" or "ai.onnx")) return null;
        Known? In(int i) => i < node.Input.Count && node.Input[i].Length > 0 ? Of(node.Input[i], scope, depth + 1, memo) : null;
        long Int(string attribute, long fallback) => node.Attribute.FirstOrDefault(a => a.Name == attribute) is { } a ? a.I : fallback;
        Known? Ints(string attribute) => node.Attribute.FirstOrDefault(a => a.Name == attribute) is { } a
            ? new(a.Ints.Select(i => (double?)i).ToArray(), [a.Ints.Count]) : null;

        return node.OpType switch
        {
            "Constant" => node.Attribute.FirstOrDefault() switch
            {
                { Name: "value" } a => a.T is { } v ? FromTensor(v) : null,
                { Name: "value_int" } a => new([a.I], []),
                { Name: "value_ints" } a when a.Ints.Count <= MaxElements => new(a.Ints.Select(i => (double?)i).ToArray(), [a.Ints.Count]),
                { Name: "value_float" } a => new([a.F], [], Integral: false),
                _ => null,
            },
            "Identity" => In(0),
            "Cast" when In(0) is { } x => (Int("to", 0), Integral(Int("to", 0))) switch
            {
                ((long)ElementType.Bool, _) => Map(x, v => v != 0 ? 1 : 0) with { Integral = true },
                (_, true) => Map(x, Math.Truncate) with { Integral = true },
                (_, false) => x with { Integral = false },
                _ => null,
            },
            "Ceil" when In(0) is { Integral: false } x => Map(x, Math.Ceiling),
            "Floor" when In(0) is { Integral: false } x => Map(x, Math.Floor),
            "Slice" => Slice(In(0), node.Input.Count > 1 ? [In(1), In(2), In(3), In(4)] : [Ints("starts"), Ints("ends"), Ints("axes"), null]),
            "Shape" when node.Input.Count > 0 => ShapeOf(scope.DeclaredShape(node.Input[0]), Int("start", 0), node.Attribute.Any(a => a.Name == "end") ? Int("end", 0) : null),
            "Gather" when Int("axis", 0) == 0 && In(0) is { Dims.Length: 1 } data && In(1) is { } index => Gather(data, index),
            "Squeeze" when In(0) is { Values.Length: 1 } x => x with { Dims = [] },
            "Unsqueeze" when In(0) is { Dims.Length: 0 } x => x with { Dims = [1] },
            "Concat" when node.Input.Select((_, i) => In(i)).ToList() is var parts && parts.All(p => p is { Dims.Length: 1 }) =>
                new(parts.SelectMany(p => p!.Values).ToArray(), [parts.Sum(p => p!.Values.Length)], parts.All(p => p!.Integral)),
            "Add" => Pair(In(0), In(1), (a, b) => a + b),
            "Sub" => Pair(In(0), In(1), (a, b) => a - b),
            "Mul" => Pair(In(0), In(1), (a, b) => a * b),
            "Div" when In(0) is { } a && In(1) is { } b => Pair(a, b, (x, y) => y == 0 ? null : a.Integral ? Math.Truncate(x / y) : x / y),
            "Equal" => Test(In(0), In(1), (a, b) => a == b),
            "Greater" => Test(In(0), In(1), (a, b) => a > b),
            "GreaterOrEqual" => Test(In(0), In(1), (a, b) => a >= b),
            "Less" => Test(In(0), In(1), (a, b) => a < b),
            "LessOrEqual" => Test(In(0), In(1), (a, b) => a <= b),
            "And" => Test(In(0), In(1), (a, b) => a != 0 && b != 0),
            "Or" => Test(In(0), In(1), (a, b) => a != 0 || b != 0),
            "Not" when In(0) is { } x => Map(x, v => v == 0 ? 1 : 0),
            "SequenceLength" when node.Input.Count > 0 && Length(node.Input[0], scope, depth + 1) is { } n => new([n], []),
            _ => null,
        };
    }

    /// <summary>How many tensors a sequence holds, where the sequence ops that make it fix that.</summary>
    private static long? Length(string name, GraphScope scope, int depth)
    {
        if (depth > MaxDepth || scope.Producer(name) is not { } node || node.Domain is not ("" or "ai.onnx")) return null;
        long? Of(int i) => i < node.Input.Count ? Length(node.Input[i], scope, depth + 1) : null;
        return node.OpType switch
        {
            "SequenceEmpty" => 0,
            "SequenceConstruct" => node.Input.Count,
            "SequenceInsert" => Of(0) + 1,
            "SequenceErase" => Of(0) is > 0 and var n ? n - 1 : null,
            "Identity" => Of(0),
            "SplitToSequence" => SequenceFolding.Pieces(node, scope, out _)?.Sizes.Length,
            _ => null,
        };
    }

    /// <summary>Whether ONNX element type <paramref name="type"/> is one the engine holds, and if so whether it is integral.</summary>
    private static bool? Integral(long type) => ElementTypes.TryFromOnnx((int)type, out var t) ? !t.IsFloat() : null;

    private static Known? FromTensor(TensorProto t) =>
        t.Dims.Aggregate(1L, (p, d) => p * d) <= MaxElements && Integral(t.DataType) is { } integral && TensorProtoReader.ToDoubles(t) is { } values
            ? new(values.Select(v => (double?)v).ToArray(), t.Dims.ToArray(), integral)
            : null;

    /// <summary>Slice of a 1-D value (shape arithmetic): starts, ends, axes and steps as ONNX clamps them.</summary>
    private static Known? Slice(Known? data, Known?[] parameters)
    {
        // Integral positions only: a float step of 1e-300 would never reach the end.
        if (data is not { Dims.Length: 1 } || parameters.Any(p => p is { Integral: false })
            || parameters[0]?.Values is not [{ } start] || parameters[1]?.Values is not [{ } end]) return null;
        if (parameters[2] is { } axes && axes.Values is not [0.0 or -1.0]) return null;
        double step = parameters[3] is { } steps ? steps.Values is [{ } s and not 0.0] ? s : double.NaN : 1;
        if (double.IsNaN(step)) return null;
        int n = data.Values.Length;
        // ONNX's clamping: negative positions count from the end; starts clamp to [0, n] going forward, [-1, n-1] back.
        double Clamp(double v, bool isEnd) => step > 0
            ? Math.Clamp(v < 0 ? v + n : v, 0, n)
            : Math.Clamp(v < 0 ? v + n : v, -1, n - 1);
        var picked = new List<double?>();
        for (double i = Clamp(start, false); step > 0 ? i < Clamp(end, true) : i > Clamp(end, true); i += step) picked.Add(data.Values[(int)i]);
        return new(picked.ToArray(), [picked.Count], data.Integral);
    }

    private static Known? ShapeOf(long?[]? declared, long start, long? end)
    {
        if (declared is null) return null;
        int rank = declared.Length;
        int Clamp(long axis) => (int)Math.Clamp(axis < 0 ? axis + rank : axis, 0, rank);
        int from = Clamp(start), to = Clamp(end ?? rank);
        var dims = declared[from..Math.Max(from, to)].Select(d => (double?)d).ToArray();
        return new(dims, [dims.Length]);
    }

    private static Known? Gather(Known data, Known index)
    {
        int n = data.Values.Length;
        var picked = new double?[index.Values.Length];
        for (int i = 0; i < picked.Length; i++)
        {
            if (index.Values[i] is not { } k || k < -n || k >= n) return null;
            picked[i] = data.Values[(int)(k < 0 ? k + n : k)];
        }
        return new(picked, index.Dims, data.Integral);
    }

    private static Known Map(Known x, Func<double, double> f) => x with { Values = x.Values.Select(v => v is { } a ? f(a) : (double?)null).ToArray() };

    /// <summary>Elementwise on equal shapes or against a single element; null where either side is unknown.</summary>
    private static Known? Pair(Known? a, Known? b, Func<double, double, double?> f)
    {
        if (a is null || b is null) return null;
        bool integral = a.Integral && b.Integral;
        if (a.Values.Length == 1 && b.Values.Length > 1) return new(b.Values.Select(v => Apply(a.Values[0], v, f)).ToArray(), b.Dims, integral);
        if (b.Values.Length == 1)
            return new(a.Values.Select(v => Apply(v, b.Values[0], f)).ToArray(), a.Values.Length == 1 && b.Dims.Length > a.Dims.Length ? b.Dims : a.Dims, integral);
        if (!a.Dims.SequenceEqual(b.Dims)) return null;
        return new(a.Values.Zip(b.Values, (x, y) => Apply(x, y, f)).ToArray(), a.Dims, integral);
    }

    /// <summary>A comparison or logic op: a bool result whatever the operands' type.</summary>
    private static Known? Test(Known? a, Known? b, Func<double, double, bool> f) => Pair(a, b, (x, y) => f(x, y) ? 1 : 0) is { } r ? r with { Integral = true } : null;

    private static double? Apply(double? a, double? b, Func<double, double, double?> f) => a is { } x && b is { } y ? f(x, y) : null;
}
