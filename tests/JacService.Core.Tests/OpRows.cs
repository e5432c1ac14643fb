using JacService.Core.Ops;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// The op test models, one per row: each builds a small float graph around the op under test with OnnxBuilder.
/// OpRuleTests checks every row's JVP rule; OpForwardOrtTests checks every row's forward against ONNX Runtime.
/// </summary>
public static class OpRows
{
    /// <summary>One test model: the op under test and how to build a graph around it.</summary>
    public sealed record Row(string OpType, string Detail, Action<OnnxBuilder> Build, Func<Tensor[], Tensor[]>? Expected = null)
    {
        public string Name => Detail.Length == 0 ? OpType : $"{OpType} {Detail}";
    }

    private const int F = OnnxType.Float, I64 = OnnxType.Int64, B = OnnxType.Bool, FSeq = OnnxType.FloatSequence;

    private static readonly Dist N = Dists.Normal, Pos = Dists.Positive, Kink0 = Dists.Away(1, 0), Distinct = Dists.Distinct;
    private static readonly Dist NonZero = (rng, n) => Pos(rng, n).Select(v => rng.Next(2) == 0 ? v : -v).ToArray();

    /// <summary>PyTorch's own resampling, the reference for what torch.onnx.export writes as Resize.</summary>
    private static Tensor Interpolate(Tensor x, InterpolationMode mode, long[]? size = null, double[]? scale = null, bool? alignCorners = null) =>
        nn.functional.interpolate(x, size, scale, mode, alignCorners);

    private static Row R(string op, string detail, Action<OnnxBuilder> build, Func<Tensor[], Tensor[]>? expected = null) =>
        new(op, detail, build, expected);

    /// <summary>A differentiated input [2, 4, 3] seq-first: [4, 2, 3], the batch on axis 1.</summary>
    private static string SeqFirst(OnnxBuilder g) => g.Node("Transpose", [g.X(2, 4, 3)], ("perm", new[] { 1, 0, 2 }));

    /// <summary>
    /// Grid coordinates at least 0.05 from where any of the rows' samplings of a 3 × 4 image has a kink or a jump (a pixel
    /// centre, a half-way point, an edge, a fold), in either corner convention, so that no finite difference crosses one.
    /// </summary>
    private static readonly Dist GridPoints = Dists.Away(0.8, [.. new[] { 0, 0.25, 1 / 3.0, 0.5, 2 / 3.0, 0.75, 1, 1.25, 4 / 3.0, 1.5, 5 / 3.0, 2 }
        .SelectMany(k => new[] { k, -k }).Distinct()]);

    /// <summary>GridSample of both X and the grid, against libtorch's own grid_sample where it has the mode (null: bicubic).</summary>
    private static Row GridSample(string detail, GridSampleMode? mode, GridSamplePaddingMode padding, bool align) =>
        R("GridSample", detail, g =>
        {
            g.Opset = 16;
            g.Node("GridSample", [g.X(2, 2, 3, 4), g.X(GridPoints, 2, 2, 3, 2)], ("mode", mode?.ToString().ToLowerInvariant() ?? "bicubic"),
                ("padding_mode", padding.ToString().ToLowerInvariant()), ("align_corners", align ? 1L : 0L));
        }, mode is { } m ? x => [nn.functional.grid_sample(x[0], x[1], m, padding, align)] : null);

    /// <summary>GridSample of a volume [2, 2, 2, 3, 4] (opset 20) at a 2 × 1 × 3 grid of points, against libtorch's grid_sample.</summary>
    private static Row Volume(string detail, GridSampleMode mode, GridSamplePaddingMode padding, bool align) =>
        R("GridSample", $"volume, {detail} (opset 20)", g =>
        {
            g.Opset = 20;
            g.Node("GridSample", [g.X(2, 2, 2, 3, 4), g.X(GridPoints, 2, 2, 1, 3, 3)], ("mode", mode == GridSampleMode.Nearest ? "nearest" : "linear"),
                ("padding_mode", padding.ToString().ToLowerInvariant()), ("align_corners", align ? 1L : 0L));
        }, x => [nn.functional.grid_sample(x[0], x[1], mode, padding, align)]);

    private static Row Unary(string op, Dist? dist = null, string detail = "", params (string, object)[] attributes) =>
        R(op, detail, g => g.Node(op, [g.X(dist ?? N, 2, 3, 4)], attributes));

    public static IReadOnlyList<Row> Rows { get; } =
    [
        // ---- Elementwise unary ----
        Unary("Neg"),
        Unary("Sqrt", Pos),
        Unary("Exp"),
        Unary("Log", Pos),
        Unary("Abs", Kink0),
        Unary("Relu", Kink0),
        Unary("Shrink", Dists.Away(1, -0.5, 0.5), "hard, the default λ 0.5"),
        Unary("Shrink", Dists.Away(1, -0.3, 0.3), "soft, λ and bias 0.3", ("lambd", 0.3f), ("bias", 0.3f)),
        Unary("LeakyRelu", Kink0),
        Unary("LeakyRelu", Kink0, "alpha 0.3", ("alpha", 0.3)),
        Unary("Elu", Kink0),
        Unary("Elu", Kink0, "alpha 0.5", ("alpha", 0.5)),
        Unary("Selu", Kink0),
        Unary("Selu", Kink0, "alpha 1.5 gamma 1.2", ("alpha", 1.5), ("gamma", 1.2)),
        // The slope's other forms: no step where gamma·alpha = gamma, and a step that picks where gamma·alpha < 0.
        Unary("Selu", Kink0, "alpha 1 gamma 2", ("alpha", 1.0), ("gamma", 2.0)),
        Unary("Selu", Kink0, "alpha -0.5 gamma 1.2", ("alpha", -0.5), ("gamma", 1.2)),
        Unary("Elu", Kink0, "alpha 2", ("alpha", 2.0)),
        Unary("Elu", Kink0, "alpha -0.5", ("alpha", -0.5)),
        Unary("Sigmoid"),
        Unary("HardSigmoid", Dists.Away(3, -2.5, 2.5)),
        Unary("HardSigmoid", Dists.Away(3, -4.0 / 3, 2), "alpha 0.3 beta 0.4", ("alpha", 0.3), ("beta", 0.4)),
        Unary("Tanh"),
        Unary("Softplus"),
        Unary("Softsign"),
        Unary("Sin"),
        Unary("Cos"),
        Unary("Erf"),
        // Gelu arrived in opset 20.
        R("Gelu", "approximate none", g => { g.Opset = 20; g.Node("Gelu", [g.X(2, 3, 4)]); }),
        R("Gelu", "approximate tanh", g => { g.Opset = 20; g.Node("Gelu", [g.X(2, 3, 4)], ("approximate", "tanh")); }),
        Unary("Reciprocal", NonZero),
        Unary("Tan", Dists.Within(1.2)),
        Unary("Atan"),
        Unary("Asin", Dists.Within(0.8)),
        Unary("Acos", Dists.Within(0.8)),
        Unary("Sinh"),
        Unary("Cosh"),
        Unary("Asinh"),
        Unary("Acosh", Dists.Above(1.2)),
        Unary("Atanh", Dists.Within(0.8)),
        R("HardSwish", "", g => { g.Opset = 14; g.Node("HardSwish", [g.X(Dists.Away(3, -3, 3), 2, 3, 4)]); }),
        R("Mish", "", g => { g.Opset = 18; g.Node("Mish", [g.X(2, 3, 4)]); }),
        Unary("Celu", Kink0),
        Unary("Celu", Kink0, "alpha 2", ("alpha", 2.0)),
        Unary("ThresholdedRelu", Dists.Away(1, 1)),
        Unary("ThresholdedRelu", Dists.Away(1, -0.5), "alpha -0.5", ("alpha", -0.5)),
        R("Clip", "min and max", g => g.Node("Clip", [g.X(Dists.Away(1, -0.5, 0.5), 2, 3, 4), g.Scalar(-0.5), g.Scalar(0.5)])),
        R("Clip", "max only", g => g.Node("Clip", [g.X(Dists.Away(1, 0.3), 2, 3, 4), "", g.Scalar(0.3)])),
        R("Clip", "no bounds", g => g.Node("Clip", [g.X(2, 3, 4)])),

        // ---- Elementwise binary (the smaller, broadcast operand differentiated) ----
        R("Add", "same shape, both differentiated", g => g.Node("Add", [g.X(2, 3), g.X(2, 3)])),
        R("Add", "[3,1] broadcast into [2,3,4]", g => g.Node("Add", [g.W(2, 3, 4), g.X(3, 1)])),
        R("Sub", "[4] broadcast from [2,3,4]", g => g.Node("Sub", [g.W(2, 3, 4), g.X(4)])),
        R("Sub", "broadcast, both differentiated", g => g.Node("Sub", [g.X(3, 1), g.X(2, 3, 4)])),
        R("Mul", "[3,1] broadcast into [2,3,4]", g => g.Node("Mul", [g.W(2, 3, 4), g.X(3, 1)])),
        R("Mul", "broadcast, both differentiated", g => g.Node("Mul", [g.X(2, 3, 4), g.X(4)])),
        R("Div", "denominator [3,1] broadcast", g => g.Node("Div", [g.W(2, 3, 4), g.X(NonZero, 3, 1)])),
        R("Div", "numerator [3] broadcast", g => g.Node("Div", [g.X(3), g.W(NonZero, 2, 3)])),
        R("Div", "both differentiated", g => g.Node("Div", [g.X(2, 3), g.X(NonZero, 3)])),
        // torch's chunk and head split write shape arithmetic as integer Add and Div; ONNX's integer Div truncates.
        R("Div", "int64 shape arithmetic (Add, then Div truncating -7 / 2 to -3), cast to float, times x (opset 15)", g =>
        {
            g.Opset = 15;
            var x = g.X(3, 2);
            var n = g.Node("Div", [g.Node("Add", [g.Node("Shape", [x], ("start", -1)), g.Ints(-9)]), g.Ints(2)]);
            g.Node("Mul", [x, g.Node("Cast", [n], ("to", OnnxType.Float))]);
        }),
        R("Pow", "base [3,1] broadcast", g => g.Node("Pow", [g.X(Pos, 3, 1), g.W(2, 3, 4)])),
        R("Pow", "exponent [4] broadcast", g => g.Node("Pow", [g.W(Pos, 2, 3, 4), g.X(4)])),
        R("Pow", "both differentiated", g => g.Node("Pow", [g.X(Pos, 2, 3), g.X(2, 3)])),
        R("Pow", "square of a signed base", g => g.Node("Pow", [g.X(2, 3), g.Scalar(2)])),
        // fmod: the quotients a/b stay off the integers, where the result jumps.
        R("Mod", "fmod, both differentiated", g => g.Node("Mod", [g.X(Dists.Within(0.9), 2, 3), g.X(Dists.Above(1), 2, 3)], ("fmod", 1))),
        R("Mod", "fmod by a weight [3] broadcast", g => g.Node("Mod", [g.X(2, 3), g.Const([0.7, -1.3, 2.9], 3)], ("fmod", 1))),
        R("Mod", "int64 remainder of a shape (no tangent), cast to float, times x (opset 15)", g =>
        {
            g.Opset = 15;
            var x = g.X(2, 3);
            g.Node("Mul", [x, g.Node("Cast", [g.Node("Mod", [g.Node("Shape", [x], ("start", -1)), g.Ints(2)])], ("to", OnnxType.Float))]);
        }),
        R("PRelu", "per-channel slope [3,1]", g => g.Node("PRelu", [g.X(Kink0, 2, 3, 4), g.W(3, 1)])),
        R("PRelu", "slope differentiated", g => g.Node("PRelu", [g.X(Kink0, 2, 3, 4), g.X(3, 1)])),
        // One input feeding both operands: the only way a product's mixed second derivative shows in a Hessian.
        R("Mul", "x times x", g => { var x = g.X(2, 3); g.Node("Mul", [x, x]); }),
        R("Div", "x over x plus a positive constant", g => { var x = g.X(Pos, 3); g.Node("Div", [x, g.Node("Add", [x, g.W(Pos, 3)])]); }),
        R("Pow", "x to the power x", g => { var x = g.X(Pos, 2, 3); g.Node("Pow", [x, x]); }),
        R("PRelu", "x with slope x", g => { var x = g.X(Kink0, 2, 3); g.Node("PRelu", [x, x]); }),

        // ---- Selection (Where, Max, Min) and what has no derivative (roundings, comparisons, logic) ----
        R("Where", "both branches differentiated, condition from x", g =>
        {
            var x = g.X(Kink0, 2, 3);
            g.Node("Where", [g.Node("Greater", [x, g.Scalar(0)]), x, g.Node("Mul", [x, x])]);
        }),
        R("Where", "condition [3] broadcast, X [2,1] broadcast, Y a weight", g =>
        {
            var x = g.X(2, 1);
            g.Node("Where", [g.Node("Less", [g.W(3), g.Scalar(0)]), x, g.W(2, 3)]);
        }),
        R("Where", "only Y differentiated", g => g.Node("Where", [g.Node("GreaterOrEqual", [g.W(2, 3), g.Scalar(0)]), g.W(2, 3), g.X(2, 3)])),
        R("Max", "two inputs, [3] broadcast", g => g.Node("Max", [g.X(Distinct, 2, 3), g.X(Distinct, 3)])),
        R("Max", "three inputs, one a weight", g => g.Node("Max", [g.X(Distinct, 2, 3), g.W(Distinct, 2, 3), g.X(Distinct, 2, 3)])),
        R("Max", "x with itself (every element ties)", g => { var x = g.X(2, 3); g.Node("Max", [x, x]); }),
        R("Max", "one input", g => g.Node("Max", [g.X(2, 3)])),
        R("Min", "two inputs, [2,1] broadcast", g => g.Node("Min", [g.X(Distinct, 2, 3), g.X(Distinct, 2, 1)])),
        R("Min", "x with a constant: clamp from above", g => g.Node("Min", [g.X(Dists.Away(1, 0.5), 2, 3), g.Scalar(0.5)])),
        R("Sum", "three inputs, [3] and [2,1] broadcast", g => g.Node("Sum", [g.X(2, 3), g.X(3), g.X(2, 1)])),
        R("Sum", "one input", g => g.Node("Sum", [g.X(2, 3)])),
        R("Mean", "two inputs and a weight", g => g.Node("Mean", [g.X(2, 3), g.W(2, 3), g.X(3)])),
        R("IsNaN", "of x, bool", g => g.Output(g.Node("IsNaN", [g.X(2, 3)]), OnnxType.Bool)),
        R("IsInf", "of 1/x, negative only, bool", g =>
            g.Output(g.Node("IsInf", [g.Node("Reciprocal", [g.X(NonZero, 2, 3)])], ("detect_positive", 0)), OnnxType.Bool)),
        // OneHot carries no derivative through its indices: a category's row of weights picked by an index.
        R("OneHot", "of ArgMax along axis 1 (off 0.5, on 2), times x", g =>
        {
            var x = g.X(Distinct, 2, 4);
            g.Node("Mul", [x, g.Node("OneHot", [g.Node("ArgMax", [x], ("axis", 1), ("keepdims", 0)), g.Ints(4), g.Const([0.5, 2], 2)])]);
        }),
        R("OneHot", "a negative index and one out of range, along axis 0, added to x", g =>
            g.Node("Add", [g.X(3, 2), g.Node("OneHot", [g.Ints(-1, 5), g.Ints(3), g.Const([0, 1], 2)], ("axis", 0))])),
        R("ArgMax", "axis 1, keepdims 0", g => g.Output(g.Node("ArgMax", [g.X(Distinct, 2, 3, 4)], ("axis", 1), ("keepdims", 0)), OnnxType.Int64)),
        // Two copies of x side by side: every maximum ties, and select_last_index picks the second copy's.
        R("ArgMax", "select_last_index among ties", g =>
        {
            var x = g.X(Distinct, 2, 3);
            g.Output(g.Node("ArgMax", [g.Node("Concat", [x, x], ("axis", 1))], ("axis", 1), ("select_last_index", 1)), OnnxType.Int64);
        }),
        R("ArgMin", "axis -1", g => g.Output(g.Node("ArgMin", [g.X(Distinct, 2, 3, 4)], ("axis", -1)), OnnxType.Int64)),
        R("Floor", "times x", g => { var x = g.X(Dists.Away(2, -3, -2, -1, 0, 1, 2, 3), 2, 3); g.Node("Mul", [x, g.Node("Floor", [x])]); }),
        R("Ceil", "times x", g => { var x = g.X(Dists.Away(2, -3, -2, -1, 0, 1, 2, 3), 2, 3); g.Node("Mul", [x, g.Node("Ceil", [x])]); }),
        R("Round", "times x", g => { var x = g.X(Dists.Away(2, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5), 2, 3); g.Node("Mul", [x, g.Node("Round", [x])]); }),
        R("Sign", "times x", g => { var x = g.X(Kink0, 2, 3); g.Node("Mul", [x, g.Node("Sign", [x])]); }),
        R("Equal", "rounded x equal to 1 picks x", g =>
        {
            var x = g.X(Dists.Away(1, -0.5, 0.5, 1.5), 2, 3);
            g.Node("Where", [g.Node("Equal", [g.Node("Round", [x]), g.Scalar(1)]), x, g.Node("Neg", [x])]);
        }),
        R("Greater", "output, bool", g => g.Output(g.Node("Greater", [g.X(2, 3), g.W(3)]), OnnxType.Bool)),
        R("GreaterOrEqual", "output, bool", g => g.Output(g.Node("GreaterOrEqual", [g.X(2, 3), g.W(3)]), OnnxType.Bool)),
        R("Less", "output, bool", g => g.Output(g.Node("Less", [g.X(2, 3), g.W(2, 1)]), OnnxType.Bool)),
        R("LessOrEqual", "as Where's condition", g =>
        {
            var x = g.X(2, 3);
            g.Node("Where", [g.Node("LessOrEqual", [x, g.W(2, 3)]), g.Node("Sin", [x]), x]);
        }),
        R("Not", "of a comparison as Where's condition", g =>
        {
            var x = g.X(Kink0, 2, 3);
            g.Node("Where", [g.Node("Not", [g.Node("Less", [x, g.Scalar(0)])]), x, g.Scalar(0)]);
        }),
        R("And", "of two comparisons as Where's condition", g =>
        {
            var x = g.X(Dists.Away(1, -0.5, 0.5), 2, 3);
            g.Node("Where", [g.Node("And", [g.Node("Greater", [x, g.Scalar(-0.5)]), g.Node("Less", [x, g.Scalar(0.5)])]), g.Node("Exp", [x]), x]);
        }),
        R("Or", "of two comparisons as Where's condition", g =>
        {
            var x = g.X(Dists.Away(1, -0.5, 0.5), 2, 3);
            g.Node("Where", [g.Node("Or", [g.Node("Less", [x, g.Scalar(-0.5)]), g.Node("Greater", [x, g.Scalar(0.5)])]), g.Node("Exp", [x]), x]);
        }),
        R("Xor", "of two comparisons as Where's condition", g =>
        {
            var x = g.X(Dists.Away(1, -0.5, 0.5), 2, 3);
            g.Node("Where", [g.Node("Xor", [g.Node("Greater", [x, g.Scalar(-0.5)]), g.Node("Greater", [x, g.Scalar(0.5)])]), g.Node("Exp", [x]), x]);
        }),

        // TopK: distinct values, so that the order (and the derivative) is defined.
        R("TopK", "2 largest along the last axis", g =>
        {
            var o = g.Node("TopK", 2, [g.X(Distinct, 2, 3, 4), g.Ints(2)]);
            g.Output(o[0]);
            g.Output(o[1], OnnxType.Int64);
        }),
        R("TopK", "3 smallest along axis 1, values only (opset 16)", g =>
        {
            g.Opset = 16;
            g.Output(g.Node("TopK", 2, [g.X(Distinct, 2, 4, 3), g.Ints(3)], ("axis", 1), ("largest", 0))[0]);
        }),

        // ---- Linear algebra ----
        R("Gemm", "plain", g => g.Node("Gemm", [g.X(3, 4), g.W(4, 5)])),
        R("Gemm", "transA transB alpha beta bias", g => g.Node("Gemm", [g.X(4, 3), g.W(5, 4), g.W(5)],
            ("transA", 1), ("transB", 1), ("alpha", 0.7), ("beta", 1.3))),
        R("Gemm", "A and B differentiated, full bias, alpha", g => g.Node("Gemm", [g.X(3, 4), g.X(4, 5), g.W(3, 5)], ("alpha", 0.5))),
        R("Gemm", "A and B differentiated, transA", g => g.Node("Gemm", [g.X(4, 3), g.X(4, 5)], ("transA", 1))),
        R("Gemm", "B differentiated with transB, bias [1,5]", g => g.Node("Gemm", [g.W(3, 4), g.X(5, 4), g.W(1, 5)], ("transB", 1))),
        R("Gemm", "bias differentiated, beta", g => g.Node("Gemm", [g.X(3, 4), g.W(4, 5), g.X(5)], ("beta", 0.6))),
        R("Gemm", "x times x transposed, alpha", g => { var x = g.X(3, 4); g.Node("Gemm", [x, x], ("transB", 1), ("alpha", 0.5)); }),
        R("MatMul", "2-D x 2-D", g => g.Node("MatMul", [g.X(3, 4), g.W(4, 5)])),
        R("MatMul", "x times x", g => { var x = g.X(3, 3); g.Node("MatMul", [x, x]); }),
        R("MatMul", "1-D x times 2-D x", g => { var x = g.X(3, 3); g.Node("MatMul", [g.Node("ReduceSum", [x, g.Ints(0)], ("keepdims", 0)), x]); }),
        R("MatMul", "3-D x 2-D", g => g.Node("MatMul", [g.X(2, 3, 4), g.W(4, 5)])),
        R("MatMul", "3-D x 3-D broadcast batch, both differentiated", g => g.Node("MatMul", [g.X(2, 3, 4), g.X(1, 4, 5)])),
        R("MatMul", "4-D x 3-D broadcast batch, both differentiated", g => g.Node("MatMul", [g.X(2, 1, 3, 4), g.X(3, 4, 2)])),
        // Attention multiplies two values from the same input: scores Q·Kᵀ, and per head with one operand broadcast.
        R("MatMul", "x times its own transpose, batched", g =>
        {
            var x = g.X(2, 3, 4);
            g.Node("MatMul", [x, g.Node("Transpose", [x], ("perm", new long[] { 0, 2, 1 }))]);
        }),
        R("MatMul", "two heads of x by x's transpose broadcast along the heads", g =>
        {
            var x = g.Node("Unsqueeze", [g.X(2, 3, 4), g.Ints(1)]);
            g.Node("MatMul", [g.Node("Mul", [x, g.W(2, 1, 4)]), g.Node("Transpose", [g.Node("Tanh", [x])], ("perm", new long[] { 0, 1, 3, 2 }))]);
        }),
        R("MatMul", "1-D x 2-D, both differentiated", g => g.Node("MatMul", [g.X(4), g.X(4, 5)])),
        R("MatMul", "2-D x 1-D, both differentiated", g => g.Node("MatMul", [g.X(3, 4), g.X(4)])),
        R("MatMul", "1-D x 3-D, both differentiated", g => g.Node("MatMul", [g.X(4), g.X(2, 4, 3)])),
        R("MatMul", "3-D x 1-D, both differentiated", g => g.Node("MatMul", [g.X(2, 3, 4), g.X(4)])),

        R("Einsum", "bi,ij->bj by a weight", g => g.Node("Einsum", [g.X(2, 3), g.W(3, 4)], ("equation", "bi,ij->bj"))),
        R("Einsum", "bij,bjk->bik, both differentiated", g => g.Node("Einsum", [g.X(2, 3, 4), g.X(2, 4, 5)], ("equation", "bij,bjk->bik"))),
        R("Einsum", "bij,bk->bk: labels only the differentiated operand has", g => g.Node("Einsum", [g.X(2, 3, 4), g.W(2, 5)], ("equation", "bij,bk->bk"))),
        R("Einsum", "implicit output bij,jk", g => g.Node("Einsum", [g.X(2, 3, 4), g.W(4, 5)], ("equation", "bij,jk"))),
        R("Einsum", "...ij,...jk->...ik, the weight broadcast", g => g.Node("Einsum", [g.X(2, 3, 4), g.W(1, 4, 5)], ("equation", "...ij,...jk->...ik"))),
        R("Einsum", "bi,bi->b: x with itself", g => { var x = g.X(2, 3); g.Node("Einsum", [x, x], ("equation", "bi,bi->b")); }),
        R("Einsum", "bii->b: a trace per sample", g => g.Node("Einsum", [g.X(2, 3, 3)], ("equation", "bii->b"))),
        R("Einsum", "bii->bi: a diagonal per sample", g => g.Node("Einsum", [g.X(2, 3, 3)], ("equation", "bii->bi"))),
        R("Einsum", "bij,jj->bi: a weight's diagonal, implicit", g => g.Node("Einsum", [g.X(2, 3, 4), g.W(4, 4)], ("equation", "bij,jj"))),
        R("Einsum", "bjij,bi->bj: a diagonal across two axes, both differentiated", g =>
            g.Node("Einsum", [g.X(2, 3, 4, 3), g.Node("Tanh", [g.X(2, 4)])], ("equation", "bjij,bi->bj"))),
        R("Einsum", "bi,ij,bj->b: three operands, two differentiated", g =>
        {
            var x = g.X(2, 3);
            g.Node("Einsum", [x, g.W(3, 3), g.Node("Sin", [x])], ("equation", "bi,ij,bj->b"));
        }),

        // ---- Pass-through and casts ----
        R("Identity", "", g => g.Node("Identity", [g.X(2, 3)])),
        R("Dropout", "", g => g.Node("Dropout", [g.X(2, 3)])),
        R("Dropout", "with mask output", g =>
        {
            var ys = g.Node("Dropout", 2, [g.X(2, 3)]);
            g.Output(ys[0]);
            g.Output(ys[1], OnnxType.Bool);
        }, x => [x[0], ones(2, 3, ScalarType.Bool)]),
        R("Cast", "to float", g => g.Node("Cast", [g.X(2, 3)], ("to", OnnxType.Float))),
        R("Cast", "to double", g => g.Node("Cast", [g.X(2, 3)], ("to", OnnxType.Double))),
        R("CastLike", "float like a float weight (opset 15)", g => { g.Opset = 15; g.Node("CastLike", [g.X(2, 3), g.W(1)]); }),
        R("CastLike", "a constant like x, times x, as onnxscript writes scalars (opset 15)", g =>
        {
            g.Opset = 15;
            var x = g.X(2, 3);
            g.Node("Mul", [x, g.Node("CastLike", [g.Scalar(1.5), x])]);
        }),
        R("CastLike", "to int64 like a shape (no tangent, opset 15)", g =>
        {
            g.Opset = 15;
            var x = g.X(Dists.Away(3, -2, -1, 0, 1, 2), 2, 3);
            g.Output(g.Node("CastLike", [x, g.Node("Shape", [x])]), OnnxType.Int64);
        }),
        R("Cast", "to int64 (no tangent)", g => g.Output(g.Node("Cast", [g.X(Dists.Away(3, -2, -1, 0, 1, 2), 2, 3)], ("to", OnnxType.Int64)), OnnxType.Int64),
            x => [x[0].to_type(ScalarType.Int64)]),

        // ---- Values without a tangent (checked through a product with x, and their values) ----
        R("Constant", "value tensor, times x", g =>
        {
            var c = g.Node("Constant", [], ("value", OnnxBuilder.Doubles([3], 0.5, -2, 3)));
            g.Output(g.Node("Mul", [g.X(2, 3), c]));
            g.Output(c);
        }, x => [x[0] * tensor(new[] { 0.5, -2, 3 }), tensor(new[] { 0.5, -2, 3 })]),
        R("Constant", "value_float, plus x", g => g.Node("Add", [g.X(2, 3), g.Node("Constant", [], ("value_float", 1.5))]),
            x => [x[0].Plus(1.5)]),
        R("Size", "cast to float, times x", g =>
        {
            var x = g.X(2, 3);
            g.Node("Mul", [x, g.Node("Cast", [g.Node("Size", [x])], ("to", OnnxType.Float))]);
        }),
        R("Shape", "of x", g => g.Output(g.Node("Shape", [g.X(2, 3, 4)]), OnnxType.Int64), _ => [tensor(new long[] { 2, 3, 4 })]),
        R("Shape", "start -1, cast to float, times x", g =>
        {
            // Shape's start and end attributes exist from opset 15.
            g.Opset = 15;
            var x = g.X(2, 3, 4);
            g.Node("Mul", [x, g.Node("Cast", [g.Node("Shape", [x], ("start", -1))], ("to", OnnxType.Float))]);
        }, x => [x[0] * Scalars.S(4)]),
        R("ConstantOfShape", "of Shape(x), times x", g =>
        {
            var x = g.X(2, 3);
            var c = g.Node("ConstantOfShape", [g.Node("Shape", [x])], ("value", OnnxBuilder.Doubles([1], 2.5)));
            g.Output(g.Node("Mul", [x, c]));
            g.Output(c);
        }, x => [x[0] * Scalars.S(2.5), full(2, 3, Scalars.S(2.5), ScalarType.Float64)]),

        // ---- Shape ops ----
        R("Reshape", "with 0 and -1", g => g.Node("Reshape", [g.X(2, 3, 4), g.Ints(0, -1)])),
        R("Reshape", "to [4, -1, 2]", g => g.Node("Reshape", [g.X(2, 3, 4), g.Ints(4, -1, 2)])),
        R("Flatten", "axis 1 (default)", g => g.Node("Flatten", [g.X(2, 3, 4)])),
        R("Flatten", "axis 0", g => g.Node("Flatten", [g.X(2, 3, 4)], ("axis", 0))),
        R("Flatten", "axis -1", g => g.Node("Flatten", [g.X(2, 3, 4)], ("axis", -1))),
        R("Squeeze", "axes [1, -1]", g => g.Node("Squeeze", [g.X(2, 1, 3, 1), g.Ints(1, -1)])),
        R("Squeeze", "every unit axis", g => g.Node("Squeeze", [g.X(1, 3, 1)])),
        R("Unsqueeze", "axes [0, -1]", g => g.Node("Unsqueeze", [g.X(2, 3), g.Ints(0, -1)])),
        R("Transpose", "perm [2, 0, 1]", g => g.Node("Transpose", [g.X(2, 3, 4)], ("perm", new[] { 2, 0, 1 }))),
        R("Transpose", "default perm (reversed)", g => g.Node("Transpose", [g.X(2, 3, 4)])),
        R("Gather", "axis 1, negative and repeated indices", g => g.Node("Gather", [g.X(2, 4, 3), g.IntsShaped([2, 2], -1, 0, 3, -3)], ("axis", 1)),
            x => [x[0].index_select(1, tensor(new long[] { 3, 0, 3, 1 })).reshape(2, 2, 2, 3)]),
        R("Gather", "axis 0, scalar index", g => g.Node("Gather", [g.X(3, 4), g.IntsShaped([], -2)]), x => [x[0][1]]),
        R("Gather", "axis 1, scalar index (one column)", g => g.Node("Gather", [g.X(3, 4), g.IntsShaped([], 2)], ("axis", 1)), x => [x[0].select(1, 2)]),
        // A seq-first layer (PyTorch's nn.TransformerEncoderLayer and nn.MultiheadAttention by default) carries the batch on
        // axis 1: its first element, mean or softmax along axis 0 are per sample.
        R("Gather", "axis 0 of a seq-first value, scalar index", g => g.Node("Gather", [SeqFirst(g), g.IntsShaped([], 1)]), x => [x[0].select(1, 1)]),
        R("ReduceMean", "axis 0 of a seq-first value, keepdims 0", g => g.Node("ReduceMean", [SeqFirst(g)], ("axes", new[] { 0 }), ("keepdims", 0)),
            x => [x[0].mean([1])]),
        R("Softmax", "axis 0 of a seq-first value", g => g.Node("Transpose", [g.Node("Softmax", [SeqFirst(g)], ("axis", 0))], ("perm", new[] { 1, 0, 2 })),
            x => [x[0].softmax(1)]),
        R("Concat", "axis 0 of seq-first values", g =>
        {
            var t = SeqFirst(g);
            g.Node("Transpose", [g.Node("Concat", [t, g.Node("Tanh", [t])], ("axis", 0))], ("perm", new[] { 1, 0, 2 }));
        }, x => [cat([x[0], x[0].tanh()], 1)]),
        R("GatherElements", "axis 1, negative and repeated indices (opset 16)", g =>
        {
            g.Opset = 16;
            g.Node("GatherElements", [g.X(2, 4, 3), g.IntsShaped([2, 2, 3], -1, 0, 3, 1, 1, 2, 0, -4, 2, 3, 3, 1)], ("axis", 1));
        }),
        R("GatherElements", "axis -1, fewer rows than the data", g =>
            g.Node("GatherElements", [g.X(3, 4), g.IntsShaped([3, 2], 3, 3, 0, 2, 1, 0)], ("axis", -1))),
        // ScatterElements: what a graph network's message passing exports (scatter_add of edge messages onto nodes).
        R("ScatterElements", "written along axis 1, both differentiated", g =>
            g.Node("ScatterElements", [g.X(2, 5), g.IntsShaped([2, 3], 4, 0, 2, 1, 3, 0), g.X(2, 3)], ("axis", 1))),
        R("ScatterElements", "added along axis 1 with repeated indices, updates differentiated (opset 16)", g =>
        {
            g.Opset = 16;
            g.Node("ScatterElements", [g.W(2, 4), g.IntsShaped([2, 5], 0, 2, 2, 3, 0, 1, 1, 1, 3, -1), g.X(2, 5)], ("axis", 1), ("reduction", "add"));
        }),
        // ScatterND: what torch writes for x[:, 1] = v (a tuple per row, the batch index first) and for index_put with accumulate.
        // GatherND: what TensorFlow's gather_nd and JAX's indexing export to.
        R("GatherND", "one element per row with batch_dims 1 (a repeated tuple, a negative index)", g =>
            g.Node("GatherND", [g.X(2, 3, 4), g.IntsShaped([2, 3, 2], 0, 1, 2, 3, 0, 1, -1, -1, 1, 0, 0, 1)], ("batch_dims", 1))),
        R("GatherND", "rows by one-axis tuples with batch_dims 1", g =>
            g.Node("GatherND", [g.X(2, 4, 3), g.IntsShaped([2, 2, 1], 3, 0, 1, 1)], ("batch_dims", 1))),
        R("GatherND", "two elements per row from [3, 4] with batch_dims 1, one of them twice (opset 16)", g =>
        {
            g.Opset = 16;
            g.Node("GatherND", [g.X(2, 3, 4), g.IntsShaped([2, 3, 2], 0, 1, 2, 3, 0, 1, -1, -1, 1, 0, -1, -1)], ("batch_dims", 1));
        }),
        R("GatherND", "rows of [2, 4, 3] by tuples over two batch axes (opset 18)", g =>
        {
            g.Opset = 18;
            g.Node("GatherND", [g.X(2, 2, 4, 3), g.IntsShaped([2, 2, 1, 1], 3, 0, 1, 1)], ("batch_dims", 2));
        }),
        R("GatherND", "batch_dims 0, tuples into the first two axes", g =>
            g.Node("GatherND", [g.X(2, 3, 4), g.IntsShaped([3, 2], 1, 2, 0, 0, 1, -3)])),
        R("ScatterND", "one element per row written, both differentiated", g =>
            g.Node("ScatterND", [g.X(2, 3), g.IntsShaped([2, 2], 0, 1, 1, -1), g.X(2)])),
        R("ScatterND", "elements added at repeated tuples (opset 16)", g =>
        {
            g.Opset = 16;
            g.Node("ScatterND", [g.X(2, 4), g.IntsShaped([3, 2], 0, 1, 0, 1, 1, 3), g.W(3)], ("reduction", "add"));
        }),
        R("ScatterND", "a slice per row written by one-axis tuples, both differentiated", g =>
            g.Node("ScatterND", [g.X(2, 3, 4), g.IntsShaped([2, 2], 0, 2, 1, 0), g.X(2, 4)])),
        R("ScatterND", "a slice per row written over constant data, the updates differentiated", g =>
            g.Node("ScatterND", [g.W(2, 3, 4), g.IntsShaped([2, 1, 2], 0, 2, 1, 0), g.X(2, 1, 4)])),
        R("Tile", "repeats [1, 2, 3]", g => g.Node("Tile", [g.X(2, 3, 2), g.Ints(1, 2, 3)])),
        R("Tile", "repeats [2, 1], the first axis too", g => g.Node("Tile", [g.X(2, 3), g.Ints(2, 1)])),
        R("CumSum", "axis 1", g => g.Node("CumSum", [g.X(2, 4, 3), g.IntsShaped([], 1)]), x => [x[0].cumsum(1)]),
        R("CumSum", "axis -1, exclusive and reverse", g => g.Node("CumSum", [g.X(2, 5), g.IntsShaped([], -1)], ("exclusive", 1), ("reverse", 1))),
        R("CumSum", "axis 2, exclusive", g => g.Node("CumSum", [g.X(2, 3, 4), g.IntsShaped([], 2)], ("exclusive", 1))),
        R("Trilu", "upper from diagonal 1 (opset 14)", g =>
        {
            g.Opset = 14;
            g.Node("Trilu", [g.X(2, 3, 4), g.IntsShaped([], 1)]);
        }, x => [x[0].triu(1)]),
        R("Trilu", "lower (opset 14)", g =>
        {
            g.Opset = 14;
            g.Node("Trilu", [g.X(2, 4, 3)], ("upper", 0));
        }, x => [x[0].tril()]),
        // Positions 0..4 as a float grid: Range's inputs are constants, so it is a value without a derivative.
        R("Range", "int64 positions times x", g =>
        {
            var x = g.X(2, 5);
            var positions = g.Node("Range", [g.IntsShaped([], 0), g.IntsShaped([], 5), g.IntsShaped([], 1)]);
            g.Node("Mul", [x, g.Node("Cast", [positions], ("to", OnnxType.Float))]);
        }, x => [x[0] * tensor(new[] { 0.0, 1, 2, 3, 4 })]),
        R("Range", "float from 2.5 down by 0.5, plus x", g => g.Node("Add", [g.X(2, 5), g.Node("Range", [g.Scalar(2.5), g.Scalar(0), g.Scalar(-0.5)])]),
            x => [x[0].Plus(tensor(new[] { 2.5, 2, 1.5, 1, 0.5 }))]),
        R("Concat", "axis 1, only the first input differentiated", g => g.Node("Concat", [g.X(2, 3), g.W(2, 2)], ("axis", 1))),
        R("Concat", "axis 0, both differentiated", g => g.Node("Concat", [g.X(2, 3), g.X(1, 3)], ("axis", 0))),
        R("Concat", "axis -1, the middle of three differentiated", g => g.Node("Concat", [g.W(2, 2), g.X(2, 3), g.W(2, 1)], ("axis", -1))),
        R("Split", "into 2 equal parts on axis 1", g => g.Node("Split", 2, [g.X(2, 6)], ("axis", 1))),
        R("Split", "into 3 by a split input", g => g.Node("Split", 3, [g.X(6, 2), g.Ints(1, 2, 3)])),
        R("Split", "into 2 and 4 on axis -1 by a split input", g => g.Node("Split", 2, [g.X(2, 6), g.Ints(2, 4)], ("axis", -1))),
        R("Split", "into 3 by num_outputs, the last smaller (opset 18)", g =>
        {
            g.Opset = 18;
            g.Node("Split", 3, [g.X(2, 7)], ("axis", 1), ("num_outputs", 3));
        }),
        R("Slice", "starts and ends only", g => g.Node("Slice", [g.X(4, 5), g.Ints(1, 0), g.Ints(3, -1)])),
        R("Slice", "step -1 reverses axis 1", g => g.Node("Slice", [g.X(3, 5), g.Ints(-1), g.Ints(long.MinValue), g.Ints(1), g.Ints(-1)]),
            x => [x[0].flip(1)]),
        R("Slice", "step -2 on axis 0", g => g.Node("Slice", [g.X(6, 3), g.Ints(4), g.Ints(0), g.Ints(0), g.Ints(-2)]),
            x => [x[0].index_select(0, tensor(new long[] { 4, 2 }))]),
        R("Slice", "steps 2 and 3, ends past the axes", g =>
            g.Node("Slice", [g.X(6, 7), g.Ints(0, 1), g.Ints(long.MaxValue, 100), g.Ints(0, -1), g.Ints(2, 3)])),
        R("Slice", "steps 2 and 3 along per-sample axes, one from the back", g =>
            g.Node("Slice", [g.X(2, 5, 7), g.Ints(1, 0), g.Ints(long.MaxValue, -1), g.Ints(1, -1), g.Ints(2, 3)])),
        R("Slice", "every other feature from the second, a unit step beside it (x[:, 1:3, 1::2])", g =>
            g.Node("Slice", [g.X(2, 4, 6), g.Ints(1, 1), g.Ints(3, long.MaxValue), g.Ints(1, 2), g.Ints(1, 2)])),
        // Bounds computed from shapes, as torch writes chunk and a head split: fixed where no batch size changes them.
        R("Slice", "ends computed from the per-sample width (opset 15)", g =>
        {
            g.Opset = 15;
            var x = g.X(2, 5);
            g.Node("Slice", [x, g.Ints(0), g.Node("Div", [g.Node("Shape", [x], ("start", 1)), g.Ints(2)]), g.Ints(1)]);
        }),
        R("Slice", "ends computed from the batch size (opset 15)", g =>
        {
            g.Opset = 15;
            var x = g.X(2, 5);
            g.Node("Slice", [x, g.Ints(1), g.Node("Shape", [x], ("end", 1)), g.Ints(1)]);
        }),
        // torch writes PixelShuffle as DepthToSpace in CRD order; TensorFlow's depth_to_space and space_to_depth are DCR.
        R("DepthToSpace", "CRD, blocksize 2 (torch's pixel_shuffle)", g => g.Node("DepthToSpace", [g.X(2, 8, 2, 3)], ("blocksize", 2), ("mode", "CRD")),
            x => [nn.functional.pixel_shuffle(x[0], 2)]),
        R("DepthToSpace", "DCR (the default), blocksize 2", g => g.Node("DepthToSpace", [g.X(2, 8, 3, 2)], ("blocksize", 2))),
        R("DepthToSpace", "DCR, blocksize 3", g => g.Node("DepthToSpace", [g.X(1, 9, 2, 2)], ("blocksize", 3), ("mode", "DCR"))),
        R("SpaceToDepth", "blocksize 2", g => g.Node("SpaceToDepth", [g.X(2, 3, 4, 6)], ("blocksize", 2))),
        R("SpaceToDepth", "undoes DepthToSpace DCR", g =>
            g.Node("SpaceToDepth", [g.Node("DepthToSpace", [g.X(2, 8, 2, 3)], ("blocksize", 2))], ("blocksize", 2)), x => [x[0]]),
        R("Expand", "[3,1] to [2,3,4]", g => g.Node("Expand", [g.X(3, 1), g.Ints(2, 3, 4)])),
        R("Expand", "to a shape of lower rank", g => g.Node("Expand", [g.X(2, 3, 1), g.Ints(4)])),
        R("Pad", "constant mode, value 0.5", g => g.Node("Pad", [g.X(2, 3), g.Ints(1, 0, 2, 1), g.Scalar(0.5)])),
        R("Pad", "all pads zero (passes through both ways)", g => g.Node("Pad", [g.X(2, 3, 4), g.Ints(0, 0, 0, 0, 0, 0)])),
        R("Pad", "constant mode, last axis only", g => g.Node("Pad", [g.X(2, 3, 4), g.Ints(0, 0, 1, 0, 0, 2)], ("mode", "constant"))),
        R("Pad", "reflect on the last two axes", g => g.Node("Pad", [g.X(1, 2, 4, 5), g.Ints(0, 0, 1, 2, 0, 0, 2, 1)], ("mode", "reflect"))),
        R("Pad", "edge on the last axis", g => g.Node("Pad", [g.X(2, 3, 4), g.Ints(0, 0, 2, 0, 0, 1)], ("mode", "edge"))),
        R("Pad", "reflect on both axes of a 2-D input", g => g.Node("Pad", [g.X(3, 4), g.Ints(2, 1, 1, 3)], ("mode", "reflect"))),
        R("Pad", "edge on a 1-D input", g => g.Node("Pad", [g.X(5), g.Ints(2, 3)], ("mode", "edge"))),
        // From opset 18 the pads may name only some axes, and from 19 the mode may be wrap.
        R("Pad", "constant on axis -1 named by axes (opset 18)", g =>
        {
            g.Opset = 18;
            g.Node("Pad", [g.X(2, 3, 4), g.Ints(1, 2), g.Scalar(0.5), g.Ints(-1)]);
        }),
        R("Pad", "reflect on axis 1 of 3 named by axes (opset 18)", g =>
        {
            g.Opset = 18;
            g.Node("Pad", [g.X(2, 4, 3), g.Ints(2, 1), "", g.Ints(1)], ("mode", "reflect"));
        }),
        R("Pad", "wrap on the last two axes (opset 19)", g =>
        {
            g.Opset = 19;
            g.Node("Pad", [g.X(1, 2, 3, 4), g.Ints(0, 0, 1, 2, 0, 0, 3, 4)], ("mode", "wrap"));
        }),
        R("Pad", "wrap on the last axis of a 2-D input (opset 19)", g =>
        {
            g.Opset = 19;
            g.Node("Pad", [g.X(2, 5), g.Ints(0, 2, 0, 3)], ("mode", "wrap"));
        }),

        // GridSample (opset 16): X [2, 2, 3, 4] read at a 2 × 3 grid whose points lie inside, outside and on the way out.
        GridSample("bilinear, zeros padding (torch's default)", GridSampleMode.Bilinear, GridSamplePaddingMode.Zeros, false),
        GridSample("bilinear, zeros padding, align_corners", GridSampleMode.Bilinear, GridSamplePaddingMode.Zeros, true),
        GridSample("bilinear, border padding", GridSampleMode.Bilinear, GridSamplePaddingMode.Border, false),
        GridSample("bilinear, reflection padding", GridSampleMode.Bilinear, GridSamplePaddingMode.Reflection, false),
        GridSample("bilinear, reflection padding, align_corners", GridSampleMode.Bilinear, GridSamplePaddingMode.Reflection, true),
        GridSample("nearest, zeros padding", GridSampleMode.Nearest, GridSamplePaddingMode.Zeros, false),
        // TorchSharp's grid_sample has no bicubic mode: ONNX Runtime's kernel is the forward reference (OpForwardOrtTests).
        GridSample("bicubic, zeros padding", null, GridSamplePaddingMode.Zeros, false),
        GridSample("bicubic, border padding, align_corners", null, GridSamplePaddingMode.Border, true),
        GridSample("bicubic, reflection padding", null, GridSamplePaddingMode.Reflection, false),
        GridSample("nearest, border padding, align_corners", GridSampleMode.Nearest, GridSamplePaddingMode.Border, true),
        R("GridSample", "one input read as both the image (its sine) and the grid", g =>
        {
            g.Opset = 16;
            var v = g.X(GridPoints, 2, 12);
            g.Node("GridSample", [g.Node("Reshape", [g.Node("Sin", [v]), g.Ints(2, 1, 3, 4)]), g.Node("Reshape", [v, g.Ints(2, 3, 2, 2)])]);
        }),
        Volume("trilinear, zeros padding", GridSampleMode.Bilinear, GridSamplePaddingMode.Zeros, false),
        Volume("trilinear, border padding, align_corners", GridSampleMode.Bilinear, GridSamplePaddingMode.Border, true),
        Volume("trilinear, reflection padding", GridSampleMode.Bilinear, GridSamplePaddingMode.Reflection, false),
        Volume("nearest, zeros padding", GridSampleMode.Nearest, GridSamplePaddingMode.Zeros, false),
        R("GridSample", "cubic, border padding (opset 20)", g =>
        {
            g.Opset = 20;
            g.Node("GridSample", [g.X(2, 2, 3, 4), g.X(GridPoints, 2, 2, 3, 2)], ("mode", "cubic"), ("padding_mode", "border"));
        }),
        R("GridSample", "linear, only the grid differentiated (opset 20)", g =>
        {
            g.Opset = 20;
            g.Node("GridSample", [g.W(2, 2, 3, 4), g.X(GridPoints, 2, 2, 3, 2)], ("mode", "linear"));
        }),

        // Resize: what torch.onnx.export writes for F.interpolate (scales, or sizes from the input's shape), and each mode.
        R("Resize", "nearest, scales 2 (torch's default)", g =>
            g.Node("Resize", [g.X(2, 2, 3, 4), "", g.Const([1, 1, 2, 2], 4)], ("mode", "nearest"), ("coordinate_transformation_mode", "asymmetric"), ("nearest_mode", "floor")),
            x => [Interpolate(x[0], InterpolationMode.Nearest, scale: [2, 2])]),
        R("Resize", "linear half_pixel, scales 2 (bilinear)", g =>
            g.Node("Resize", [g.X(2, 2, 3, 4), "", g.Const([1, 1, 2, 2], 4)], ("mode", "linear")),
            x => [Interpolate(x[0], InterpolationMode.Bilinear, scale: [2, 2], alignCorners: false)]),
        R("Resize", "linear align_corners, sizes", g =>
            g.Node("Resize", [g.X(2, 2, 3, 4), "", "", g.Ints(2, 2, 5, 7)], ("mode", "linear"), ("coordinate_transformation_mode", "align_corners")),
            x => [Interpolate(x[0], InterpolationMode.Bilinear, size: [5, 7], alignCorners: true)]),
        R("Resize", "cubic half_pixel, sizes from the input's shape (bicubic, size=)", g =>
        {
            var x = g.X(2, 2, 3, 4);
            var lead = g.Node("Slice", [g.Node("Shape", [x]), g.Ints(0), g.Ints(2), g.Ints(0)]);
            g.Node("Resize", [x, "", "", g.Node("Concat", [lead, g.Ints(5, 7)], ("axis", 0))], ("mode", "cubic"));
        }, x => [Interpolate(x[0], InterpolationMode.Bicubic, size: [5, 7], alignCorners: false)]),
        R("Resize", "cubic asymmetric, a -0.5, exclude_outside", g =>
            g.Node("Resize", [g.X(2, 2, 3, 4), "", g.Const([1, 1, 2, 1.5], 4)], ("mode", "cubic"), ("coordinate_transformation_mode", "asymmetric"),
                ("cubic_coeff_a", -0.5), ("exclude_outside", 1))),
        R("Resize", "linear pytorch_half_pixel, downscaling sizes", g =>
            g.Node("Resize", [g.X(2, 2, 6, 8), "", "", g.Ints(2, 2, 3, 5)], ("mode", "linear"), ("coordinate_transformation_mode", "pytorch_half_pixel"))),
        R("Resize", "nearest round_prefer_ceil, downscaling sizes", g =>
            g.Node("Resize", [g.X(2, 2, 6, 8), "", "", g.Ints(2, 2, 4, 5)], ("nearest_mode", "round_prefer_ceil"))),
        R("Resize", "linear on the last axis of three (torch's linear), scales 1.5", g =>
            g.Node("Resize", [g.X(2, 3, 4), "", g.Const([1, 1, 1.5], 3)], ("mode", "linear")),
            x => [Interpolate(x[0], InterpolationMode.Linear, scale: [1.5], alignCorners: false)]),
        R("Resize", "linear antialias, downscaling axes [2, 3] (opset 18)", g =>
        {
            g.Opset = 18;
            g.Node("Resize", [g.X(2, 2, 6, 8), "", g.Const([0.5, 0.375], 2)], ("mode", "linear"), ("antialias", 1), ("axes", new long[] { -2, -1 }));
        }),
        R("Resize", "cubic antialias, sizes not_larger on axes [-2, -1] (opset 18)", g =>
        {
            g.Opset = 18;
            g.Node("Resize", [g.X(2, 2, 6, 8), "", "", g.Ints(3, 3)], ("mode", "cubic"), ("antialias", 1), ("axes", new long[] { 2, 3 }),
                ("keep_aspect_ratio_policy", "not_larger"));
        }),
        R("Resize", "linear half_pixel_symmetric, scales 1.7 (opset 19)", g =>
        {
            g.Opset = 19;
            g.Node("Resize", [g.X(2, 2, 3, 4), "", g.Const([1, 1, 1.7, 1.7], 4)], ("mode", "linear"), ("coordinate_transformation_mode", "half_pixel_symmetric"));
        }),

        // ---- Reductions and normalisations ----
        R("ReduceSum", "axes input [1], keepdims 0", g => g.Node("ReduceSum", [g.X(2, 3, 4), g.Ints(1)], ("keepdims", 0))),
        R("ReduceSum", "axes input [-1, 0], keepdims 1", g => g.Node("ReduceSum", [g.X(2, 3, 4), g.Ints(-1, 0)])),
        R("ReduceSum", "all axes to a scalar", g => g.Node("ReduceSum", [g.X(2, 3)], ("keepdims", 0))),
        R("ReduceSum", "noop_with_empty_axes", g => g.Node("ReduceSum", [g.X(2, 3)], ("noop_with_empty_axes", 1))),
        R("ReduceMean", "axes attribute [0, 2]", g => g.Node("ReduceMean", [g.X(2, 3, 4)], ("axes", new[] { 0, 2 }))),
        R("ReduceMean", "axes attribute [-1], keepdims 0", g => g.Node("ReduceMean", [g.X(2, 3, 4)], ("axes", new[] { -1 }), ("keepdims", 0))),
        // From opset 18 ReduceMean takes its axes as an input, as ReduceSum does from 13.
        R("ReduceMean", "axes input [1] (opset 18)", g =>
        {
            g.Opset = 18;
            g.Node("ReduceMean", [g.X(2, 3, 4), g.Ints(1)]);
        }),
        R("ReduceMean", "axes input [-1, 0], keepdims 0 (opset 18)", g =>
        {
            g.Opset = 18;
            g.Node("ReduceMean", [g.X(2, 3, 4), g.Ints(-1, 0)], ("keepdims", 0));
        }),
        R("ReduceMean", "no axes input: all to a scalar (opset 18)", g =>
        {
            g.Opset = 18;
            g.Node("ReduceMean", [g.X(2, 3)], ("keepdims", 0));
        }),
        // The other reductions take axes as ReduceMean does: an attribute before opset 18, an input from it.
        R("ReduceMax", "axes attribute [1]", g => g.Node("ReduceMax", [g.X(Distinct, 2, 3, 4)], ("axes", new[] { 1 }))),
        R("ReduceMax", "axes input [-1], keepdims 0 (opset 18)", g =>
        {
            g.Opset = 18;
            g.Node("ReduceMax", [g.X(Distinct, 2, 3, 4), g.Ints(-1)], ("keepdims", 0));
        }),
        // Every maximum attained twice: the two copies share its derivative, which Concat's transpose adds back up.
        R("ReduceMax", "ties between two copies of x", g =>
        {
            var x = g.X(Distinct, 2, 3);
            g.Node("ReduceMax", [g.Node("Concat", [x, x], ("axis", 1))], ("axes", new[] { 1 }));
        }),
        R("ReduceMin", "axes attribute [2, 1], keepdims 0", g => g.Node("ReduceMin", [g.X(Distinct, 2, 3, 4)], ("axes", new[] { 2, 1 }), ("keepdims", 0))),
        R("ReduceL1", "axes attribute [1]", g => g.Node("ReduceL1", [g.X(Kink0, 2, 3, 4)], ("axes", new[] { 1 }))),
        R("ReduceL2", "axes attribute [-1], keepdims 0", g => g.Node("ReduceL2", [g.X(2, 3, 4)], ("axes", new[] { -1 }), ("keepdims", 0))),
        R("ReduceL2", "axes input [1, 2] (opset 18)", g =>
        {
            g.Opset = 18;
            g.Node("ReduceL2", [g.X(2, 3, 4), g.Ints(1, 2)]);
        }),
        R("ReduceProd", "axes [1] (an attribute before opset 18)", g => g.Node("ReduceProd", [g.X(2, 3, 4)], ("axes", new[] { 1 }))),
        R("ReduceProd", "every axis, keepdims 0", g => g.Node("ReduceProd", [g.X(2, 3)], ("keepdims", 0))),
        R("ReduceProd", "axes [-1] as an input (opset 18)", g => { g.Opset = 18; g.Node("ReduceProd", [g.X(2, 3, 4), g.Ints(-1)]); }),
        // A PINN's distance to the boundary, Π x(1 − x), is zero on it: one zero, two, and three in a group.
        R("ReduceProd", "a group with one zero", g => g.Node("ReduceProd", [g.X(Dists.ZeroAt(1), 2, 3)], ("axes", new[] { 1 }))),
        R("ReduceProd", "groups with two and with three zeros", g => g.Node("ReduceProd", [g.X(Dists.ZeroAt(0, 2, 3, 4, 5), 2, 3)], ("axes", new[] { 1 }))),
        R("ReduceSumSquare", "axes attribute [1]", g => g.Node("ReduceSumSquare", [g.X(2, 3, 4)], ("axes", new[] { 1 }))),
        R("ReduceLogSumExp", "axes attribute [-1]", g => g.Node("ReduceLogSumExp", [g.X(2, 3, 4)], ("axes", new[] { -1 }))),
        R("ReduceLogSumExp", "axes input [1], keepdims 0 (opset 18)", g =>
        {
            g.Opset = 18;
            g.Node("ReduceLogSumExp", [g.X(2, 3, 4), g.Ints(1)], ("keepdims", 0));
        }),
        R("Softmax", "axis 1 of 3", g => g.Node("Softmax", [g.X(2, 3, 4)], ("axis", 1))),
        R("Softmax", "last axis (default)", g => g.Node("Softmax", [g.X(2, 3, 4)])),
        R("LogSoftmax", "axis 0 of 3", g => g.Node("LogSoftmax", [g.X(2, 3, 4)], ("axis", 0))),
        R("LogSoftmax", "last axis (default)", g => g.Node("LogSoftmax", [g.X(2, 3, 4)])),
        R("BatchNormalization", "[N, C, H, W], epsilon", g =>
            g.Node("BatchNormalization", [g.X(2, 3, 2, 2), g.W(3), g.W(3), g.W(3), g.W(Pos, 3)], ("epsilon", 1e-3))),
        R("BatchNormalization", "[N, C]", g => g.Node("BatchNormalization", [g.X(4, 3), g.W(3), g.W(3), g.W(3), g.W(Pos, 3)])),
        R("LayerNormalization", "last axis, scale and bias", g =>
        {
            g.Opset = 17;
            g.Node("LayerNormalization", [g.X(2, 3, 4), g.W(4), g.W(4)], ("epsilon", 1e-3));
        }),
        R("LayerNormalization", "axis 1, scale only", g =>
        {
            g.Opset = 17;
            g.Node("LayerNormalization", [g.X(2, 3, 4), g.W(3, 4)], ("axis", 1));
        }),
        // The bias named "" (omitted), which ONNX allows and ONNX Runtime 1.32's SkipLayerNormFusion crashed the process on.
        R("LayerNormalization", "scale, bias omitted by an empty name", g =>
        {
            g.Opset = 17;
            g.Node("LayerNormalization", [g.X(2, 3, 4), g.W(4), ""]);
        }),

        // GroupNormalization: a scale and bias per group at opset 18, per channel from 21.
        R("GroupNormalization", "2 groups of 2 channels, 2-D, scale per group (opset 18)", g =>
        {
            g.Opset = 18;
            g.Output(g.Node("GroupNormalization", [g.X(2, 4, 3, 2), g.W(2), g.W(2)], ("num_groups", 2)), [2, 4, 3, 2]);
        }),
        R("GroupNormalization", "3 groups of 2 channels, 1-D, scale per channel (opset 21)", g =>
        {
            g.Opset = 21;
            g.Output(g.Node("GroupNormalization", [g.X(2, 6, 4), g.W(6), g.W(6)], ("num_groups", 3), ("epsilon", 1e-3)), [2, 6, 4]);
        }),
        R("RMSNormalization", "last axis (opset 23)", g =>
        {
            g.Opset = 23;
            g.Output(g.Node("RMSNormalization", [g.X(2, 3, 4), g.W(4)]), [2, 3, 4]);
        }),
        R("RMSNormalization", "last two axes, epsilon 0.01 (opset 23)", g =>
        {
            g.Opset = 23;
            g.Output(g.Node("RMSNormalization", [g.X(2, 3, 4), g.W(3, 4)], ("axis", -2), ("epsilon", 0.01)), [2, 3, 4]);
        }),
        R("LpNormalization", "p 2 along the last axis", g => g.Node("LpNormalization", [g.X(2, 3, 4)])),
        R("LpNormalization", "p 1 along axis 1", g => g.Node("LpNormalization", [g.X(Kink0, 2, 4, 3)], ("axis", 1), ("p", 1))),
        R("LpNormalization", "p 2 along axis 1 of four", g => g.Node("LpNormalization", [g.X(2, 3, 2, 2)], ("axis", 1))),
        R("InstanceNormalization", "2-D spatial, epsilon", g =>
            g.Node("InstanceNormalization", [g.X(2, 3, 4, 5), g.W(3), g.W(3)], ("epsilon", 1e-3))),
        R("InstanceNormalization", "1-D spatial", g => g.Node("InstanceNormalization", [g.X(2, 3, 6), g.W(3), g.W(3)])),

        // ---- Fourier transforms (opset 17; axis an input from 20) ----
        R("DFT", "real signal along axis 1", g =>
        {
            g.Opset = 17;
            g.Node("DFT", [g.X(2, 8, 1)]);
        }),
        R("DFT", "real signal, onesided, cut to dft_length 6", g =>
        {
            g.Opset = 17;
            g.Node("DFT", [g.X(2, 8, 1), g.IntsShaped([], 6)], ("onesided", 1));
        }),
        R("DFT", "complex signal along axis 2, inverse, padded to dft_length 7", g =>
        {
            g.Opset = 17;
            g.Node("DFT", [g.X(2, 3, 5, 2), g.IntsShaped([], 7)], ("axis", 2), ("inverse", 1));
        }),
        R("DFT", "complex signal, axis -2 as an input (opset 20)", g =>
        {
            g.Opset = 20;
            g.Node("DFT", [g.X(2, 4, 6, 2), "", g.IntsShaped([], -2)]);
        }),
        R("DFT", "a half spectrum to a real signal (irfft), its default length 8", g =>
        {
            g.Opset = 17;
            g.Node("DFT", [g.X(2, 5, 2)], ("inverse", 1), ("onesided", 1));
        }),
        R("DFT", "a half spectrum along axis 1 of [2, 5, 3, 2] to length 8 (opset 20)", g =>
        {
            g.Opset = 20;
            g.Node("DFT", [g.X(2, 5, 3, 2), g.IntsShaped([], 8), g.IntsShaped([], 1)], ("inverse", 1), ("onesided", 1));
        }),
        R("DFT", "a half spectrum of 6 bins to length 8, the bin past 4 unused", g =>
        {
            g.Opset = 17;
            g.Node("DFT", [g.X(2, 6, 2), g.IntsShaped([], 8)], ("inverse", 1), ("onesided", 1));
        }),
        R("DFT", "a half spectrum of 3 bins to the odd length 5", g =>
        {
            g.Opset = 17;
            g.Node("DFT", [g.X(2, 3, 2), g.IntsShaped([], 5)], ("inverse", 1), ("onesided", 1));
        }),
        R("DFT", "a spectral layer: onesided forward, modes weighted, inverse, the real part (opset 20)", g =>
        {
            g.Opset = 20;
            var modes = g.Node("DFT", [g.X(2, 8, 1), "", g.IntsShaped([], 1)], ("onesided", 1));
            var weighted = g.Node("Mul", [modes, g.W(5, 2)]);
            var signal = g.Node("DFT", [weighted, g.IntsShaped([], 8), g.IntsShaped([], 1)], ("inverse", 1));
            g.Node("Slice", [signal, g.Ints(0), g.Ints(1), g.Ints(-1)]);
        }),

        // ---- Convolution and pooling ----
        R("Conv", "1-D stride 2 dilation 2 asymmetric pads", g =>
            g.Node("Conv", [g.X(1, 2, 9), g.W(3, 2, 3)], ("strides", new[] { 2 }), ("dilations", new[] { 2 }), ("pads", new[] { 2, 1 }))),
        R("Conv", "1-D groups 2 with bias", g =>
            g.Node("Conv", [g.X(2, 4, 6), g.W(4, 2, 3), g.W(4)], ("group", 2), ("pads", new[] { 1, 1 }))),
        R("Conv", "2-D with bias", g => g.Node("Conv", [g.X(1, 2, 5, 5), g.W(3, 2, 3, 3), g.W(3)], ("pads", new[] { 1, 1, 1, 1 }))),
        R("Conv", "2-D stride 2 groups 2", g =>
            g.Node("Conv", [g.X(1, 4, 6, 5), g.W(4, 2, 3, 3)], ("strides", new[] { 2, 2 }), ("group", 2), ("pads", new[] { 1, 1, 1, 1 }))),
        R("Conv", "2-D dilations, asymmetric pads", g =>
            g.Node("Conv", [g.X(1, 2, 6, 6), g.W(2, 2, 2, 3)], ("dilations", new[] { 2, 1 }), ("pads", new[] { 0, 2, 1, 0 }))),
        R("Conv", "2-D auto_pad SAME_UPPER stride 2", g =>
            g.Node("Conv", [g.X(1, 2, 5, 6), g.W(3, 2, 3, 2)], ("strides", new[] { 2, 2 }), ("auto_pad", "SAME_UPPER"))),
        // One input channel: the reverse rule's matrix product and fold (col2im).
        R("Conv", "2-D one input channel with bias", g => g.Node("Conv", [g.X(2, 1, 5, 6), g.W(3, 1, 3, 3), g.W(3)], ("pads", new[] { 1, 1, 1, 1 }))),
        R("Conv", "2-D one input channel, stride, dilations, asymmetric pads", g =>
            g.Node("Conv", [g.X(1, 1, 7, 6), g.W(2, 1, 2, 3)], ("strides", new[] { 2, 1 }), ("dilations", new[] { 1, 2 }), ("pads", new[] { 1, 0, 0, 2 }))),
        R("Conv", "2-D auto_pad SAME_LOWER", g => g.Node("Conv", [g.X(1, 2, 4, 5), g.W(2, 2, 2, 2)], ("auto_pad", "SAME_LOWER"))),
        R("ConvTranspose", "1-D stride 2 with bias", g => g.Node("ConvTranspose", [g.X(2, 3, 5), g.W(3, 2, 3), g.W(2)], ("strides", new[] { 2 }))),
        R("ConvTranspose", "2-D stride 2, asymmetric pads, output_padding", g =>
            g.Node("ConvTranspose", [g.X(1, 2, 4, 3), g.W(2, 3, 3, 2)], ("strides", new[] { 2, 2 }), ("pads", new[] { 1, 0, 0, 1 }), ("output_padding", new[] { 1, 0 }))),
        R("ConvTranspose", "2-D groups 2, dilations", g =>
            g.Node("ConvTranspose", [g.X(1, 4, 3, 3), g.W(4, 1, 2, 2)], ("group", 2), ("dilations", new[] { 2, 1 }))),
        // One output channel, no groups: the transpose runs as one matrix product folded back (col2im).
        R("ConvTranspose", "2-D one output channel, stride 2, pads 1, bias", g =>
            g.Node("ConvTranspose", [g.X(2, 3, 4, 4), g.W(3, 1, 3, 3), g.W(1)], ("strides", new[] { 2, 2 }), ("pads", new[] { 1, 1, 1, 1 }))),
        R("MaxPool", "2-D kernel 2 stride 2", g =>
            g.Node("MaxPool", [g.X(Distinct, 1, 2, 5, 5)], ("kernel_shape", new[] { 2, 2 }), ("strides", new[] { 2, 2 }))),
        // Windows that tile the input go through TiledPool instead of libtorch's pooling kernels.
        R("MaxPool", "2-D kernel 2 stride 2, tiles exactly", g =>
            g.Node("MaxPool", [g.X(Distinct, 2, 3, 6, 4)], ("kernel_shape", new[] { 2, 2 }), ("strides", new[] { 2, 2 }))),
        R("MaxPool", "2-D kernel [3, 2] stride [3, 2], tiles with remainders", g =>
            g.Node("MaxPool", [g.X(Distinct, 1, 2, 7, 5)], ("kernel_shape", new[] { 3, 2 }), ("strides", new[] { 3, 2 }))),
        R("MaxPool", "1-D kernel 3 stride 3, tiles with a remainder", g =>
            g.Node("MaxPool", [g.X(Distinct, 2, 2, 10)], ("kernel_shape", new[] { 3 }), ("strides", new[] { 3 }))),
        R("MaxPool", "2-D kernel 3 stride 2 symmetric pads", g =>
            g.Node("MaxPool", [g.X(Distinct, 1, 2, 5, 5)], ("kernel_shape", new[] { 3, 3 }), ("strides", new[] { 2, 2 }), ("pads", new[] { 1, 1, 1, 1 }))),
        R("MaxPool", "2-D asymmetric pads", g =>
            g.Node("MaxPool", [g.X(Distinct, 1, 2, 5, 4)], ("kernel_shape", new[] { 3, 2 }), ("strides", new[] { 2, 1 }), ("pads", new[] { 1, 0, 2, 1 }))),
        R("MaxPool", "2-D dilations, ceil_mode", g =>
            g.Node("MaxPool", [g.X(Distinct, 1, 2, 6, 6)], ("kernel_shape", new[] { 2, 2 }), ("dilations", new[] { 2, 1 }), ("strides", new[] { 2, 2 }), ("ceil_mode", 1))),
        // ceil_mode with a window that would start in the right padding, which ONNX drops.
        R("MaxPool", "2-D ceil_mode, asymmetric pads", g =>
            g.Node("MaxPool", [g.X(Distinct, 1, 2, 5, 6)], ("kernel_shape", new[] { 3, 2 }), ("strides", new[] { 2, 2 }), ("pads", new[] { 1, 0, 0, 1 }), ("ceil_mode", 1))),
        R("MaxPool", "1-D stride 2 pads 1", g =>
            g.Node("MaxPool", [g.X(Distinct, 2, 3, 8)], ("kernel_shape", new[] { 3 }), ("strides", new[] { 2 }), ("pads", new[] { 1, 1 }))),
        R("MaxPool", "1-D dilation 2 asymmetric pads", g =>
            g.Node("MaxPool", [g.X(Distinct, 2, 2, 9)], ("kernel_shape", new[] { 2 }), ("dilations", new[] { 2 }), ("pads", new[] { 0, 2 }))),
        R("MaxPool", "1-D dilation 2, end pad 1", g =>
            g.Node("MaxPool", [g.X(Distinct, 2, 2, 9)], ("kernel_shape", new[] { 2 }), ("dilations", new[] { 2 }), ("pads", new[] { 0, 1 }))),
        R("AveragePool", "2-D kernel 2 stride 2, tiles exactly", g =>
            g.Node("AveragePool", [g.X(2, 3, 6, 4)], ("kernel_shape", new[] { 2, 2 }), ("strides", new[] { 2, 2 }))),
        R("AveragePool", "2-D kernel [3, 2] stride [3, 2], tiles with remainders", g =>
            g.Node("AveragePool", [g.X(1, 2, 7, 5)], ("kernel_shape", new[] { 3, 2 }), ("strides", new[] { 3, 2 }))),
        R("AveragePool", "1-D kernel 2 stride 2, tiles with a remainder", g =>
            g.Node("AveragePool", [g.X(2, 2, 7)], ("kernel_shape", new[] { 2 }), ("strides", new[] { 2 }))),
        R("AveragePool", "2-D count_include_pad 0, asymmetric pads", g =>
            g.Node("AveragePool", [g.X(1, 2, 5, 5)], ("kernel_shape", new[] { 3, 3 }), ("strides", new[] { 2, 2 }), ("pads", new[] { 1, 0, 2, 1 }))),
        R("AveragePool", "2-D count_include_pad 1, asymmetric pads", g =>
            g.Node("AveragePool", [g.X(1, 2, 5, 5)], ("kernel_shape", new[] { 3, 3 }), ("strides", new[] { 2, 2 }), ("pads", new[] { 1, 0, 2, 1 }), ("count_include_pad", 1))),
        R("AveragePool", "2-D count_include_pad 0, symmetric pads", g =>
            g.Node("AveragePool", [g.X(1, 2, 5, 5)], ("kernel_shape", new[] { 3, 3 }), ("pads", new[] { 1, 1, 1, 1 }))),
        R("AveragePool", "2-D auto_pad SAME_UPPER stride 2", g =>
            g.Node("AveragePool", [g.X(1, 2, 5, 6)], ("kernel_shape", new[] { 3, 2 }), ("strides", new[] { 2, 2 }), ("auto_pad", "SAME_UPPER"))),
        R("AveragePool", "1-D count_include_pad 1", g =>
            g.Node("AveragePool", [g.X(2, 2, 7)], ("kernel_shape", new[] { 3 }), ("strides", new[] { 2 }), ("pads", new[] { 1, 1 }), ("count_include_pad", 1))),
        R("AveragePool", "1-D count_include_pad 0, asymmetric pads", g =>
            g.Node("AveragePool", [g.X(2, 2, 7)], ("kernel_shape", new[] { 3 }), ("strides", new[] { 2 }), ("pads", new[] { 2, 1 }))),
        R("AveragePool", "2-D ceil_mode, count_include_pad 0, asymmetric pads", g =>
            g.Node("AveragePool", [g.X(1, 2, 5, 6)], ("kernel_shape", new[] { 3, 2 }), ("strides", new[] { 2, 2 }), ("pads", new[] { 1, 0, 0, 1 }), ("ceil_mode", 1))),
        R("AveragePool", "1-D ceil_mode, count_include_pad 1, asymmetric pads", g =>
            g.Node("AveragePool", [g.X(1, 2, 7)], ("kernel_shape", new[] { 3 }), ("strides", new[] { 3 }), ("pads", new[] { 1, 2 }), ("ceil_mode", 1), ("count_include_pad", 1))),
        R("GlobalMaxPool", "2-D", g => g.Node("GlobalMaxPool", [g.X(Distinct, 2, 3, 3, 4)])),
        R("GlobalMaxPool", "1-D", g => g.Node("GlobalMaxPool", [g.X(Distinct, 2, 3, 5)])),
        R("GlobalAveragePool", "2-D", g => g.Node("GlobalAveragePool", [g.X(2, 3, 3, 4)])),
        R("GlobalAveragePool", "1-D", g => g.Node("GlobalAveragePool", [g.X(2, 3, 5)])),

        // ---- Recurrent: batch 2, 3 steps of 3 features, hidden size 2 ----
        R("LSTM", "as torch exports it (layout 0 between transposes)", g => TimeMajor(g, x => g.Node("LSTM", [x, g.W(1, 8, 3), g.W(1, 8, 2), g.W(1, 16)], ("hidden_size", 2)))),
        R("LSTM", "bidirectional, batch first, every output, initial states differentiated (opset 14)", g =>
        {
            g.Opset = 14;
            g.Node("LSTM", 3, [g.X(2, 3, 3), g.W(2, 8, 3), g.W(2, 8, 2), g.W(2, 16), "", g.X(2, 2, 2), g.X(2, 2, 2)],
                ("hidden_size", 2), ("direction", "bidirectional"), ("layout", 1));
        }),
        R("LSTM", "reverse, peepholes, HardSigmoid gates, no bias", g =>
            TimeMajor(g, x => g.Node("LSTM", [x, g.W(1, 8, 3), g.W(1, 8, 2), "", "", "", "", g.W(1, 6)], ("hidden_size", 2), ("direction", "reverse"),
                ("activations", new[] { "HardSigmoid", "Tanh", "Tanh" }), ("activation_alpha", new[] { 0.25f }), ("activation_beta", new[] { 0.45f })))),
        R("LSTM", "bidirectional, every output, initial states differentiated (layout 0 between transposes)", g =>
        {
            string BatchSecond(string v) => g.Node("Transpose", [v], ("perm", new long[] { 1, 0, 2 }));
            var y = g.Node("LSTM", 3, [BatchSecond(g.X(2, 3, 3)), g.W(2, 8, 3), g.W(2, 8, 2), g.W(2, 16), "", BatchSecond(g.X(2, 2, 2)), BatchSecond(g.X(2, 2, 2))],
                ("hidden_size", 2), ("direction", "bidirectional"));
            g.Output(g.Node("Transpose", [y[0]], ("perm", new long[] { 2, 0, 1, 3 })));
            g.Output(BatchSecond(y[1]));
            g.Output(BatchSecond(y[2]));
        }),
        R("GRU", "as torch exports it (linear_before_reset, layout 0 between transposes)", g =>
            TimeMajor(g, x => g.Node("GRU", [x, g.W(1, 6, 3), g.W(1, 6, 2), g.W(1, 12)], ("hidden_size", 2), ("linear_before_reset", 1)))),
        R("GRU", "bidirectional, reset before the product, batch first, initial state differentiated (opset 14)", g =>
        {
            g.Opset = 14;
            g.Node("GRU", 2, [g.X(2, 3, 3), g.W(2, 6, 3), g.W(2, 6, 2), g.W(2, 12), "", g.X(2, 2, 2)],
                ("hidden_size", 2), ("direction", "bidirectional"), ("layout", 1));
        }),
        R("GRU", "bidirectional, only the initial state differentiated (layout 0 between transposes)", g =>
        {
            var h0 = g.Node("Transpose", [g.X(2, 2, 2)], ("perm", new long[] { 1, 0, 2 }));
            var y = g.Node("GRU", 2, [g.W(3, 2, 3), g.W(2, 6, 3), g.W(2, 6, 2), g.W(2, 12), "", h0], ("hidden_size", 2), ("direction", "bidirectional"));
            g.Node("Transpose", [y[1]], ("perm", new long[] { 1, 0, 2 }));
        }),
        R("RNN", "tanh (layout 0 between transposes)", g => TimeMajor(g, x => g.Node("RNN", [x, g.W(1, 2, 3), g.W(1, 2, 2), g.W(1, 4)], ("hidden_size", 2)))),
        R("RNN", "Relu, reverse (layout 0 between transposes)", g =>
            TimeMajor(g, x => g.Node("RNN", [x, g.W(1, 2, 3), g.W(1, 2, 2), g.W(1, 4)], ("hidden_size", 2), ("direction", "reverse"),
                ("activations", new[] { "Relu" })))),

        // ---- Standard functions, expanded at parse into the ops above (opset 23) ----
        R("Attention", "4-D, cross attention (3 queries, 5 keys, value size 3)", g =>
        {
            g.Opset = 23;
            g.Output(g.Node("Attention", [g.X(2, 2, 3, 4), g.X(2, 2, 5, 4), g.X(2, 2, 5, 3)]), [2, 2, 3, 3]);
        }),
        R("Attention", "3-D, 2 heads, causal", g =>
        {
            g.Opset = 23;
            g.Output(g.Node("Attention", [g.X(2, 3, 8), g.X(2, 3, 8), g.X(2, 3, 6)], ("q_num_heads", 2), ("kv_num_heads", 2), ("is_causal", 1)), [2, 3, 6]);
        }),
        R("Attention", "4-D, 4 query heads over 2 key heads, bool mask", g =>
        {
            g.Opset = 23;
            var mask = g.Node("Greater", [g.Const([1, -1, 1, 1, 1, -1, -1, 1, 1], 3, 3), g.Scalar(0)]);
            g.Output(g.Node("Attention", [g.X(2, 4, 3, 4), g.X(2, 2, 3, 4), g.X(2, 2, 3, 4), mask]), [2, 4, 3, 4]);
        }),
        R("Attention", "3-D, one key head (multi-query), additive mask differentiated, scale 0.3, softcap 2", g =>
        {
            g.Opset = 23;
            g.Output(g.Node("Attention", [g.X(2, 3, 8), g.X(2, 4, 4), g.X(2, 4, 2), g.X(2, 1, 3, 4)],
                ("q_num_heads", 2), ("kv_num_heads", 1), ("scale", 0.3), ("softcap", 2.0)), [2, 3, 4]);
        }),
        // K first, which both outputs depend on (the compiled graphs' row differentiates the first input).
        R("Attention", "4-D, past key and value, causal, the present key an output", g =>
        {
            g.Opset = 23;
            var k = g.X(2, 2, 2, 4);
            var outputs = g.Node("Attention", 3, [g.X(2, 2, 2, 4), k, g.X(2, 2, 2, 3), "", g.X(2, 2, 3, 4), g.X(2, 2, 3, 3)], ("is_causal", 1));
            g.Output(outputs[0], [2, 2, 2, 3]);
            g.Output(outputs[1], [2, 2, 5, 4]);
        }),
        // ONNX Runtime 1.31 computes a past key only into a present key: the node names both, the graph outputs neither.
        R("Attention", "4-D, past key and value, causal, a bool mask over past and new keys", g =>
        {
            g.Opset = 23;
            var mask = g.Node("Greater", [g.Const([1, -1, 1, 1, -1, 1, 1, -1, 1, 1], 2, 5), g.Scalar(0)]);
            g.Output(g.Node("Attention", 3, [g.X(2, 2, 2, 4), g.X(2, 2, 2, 4), g.X(2, 2, 2, 3), mask, g.X(2, 2, 3, 4), g.X(2, 2, 3, 3)],
                ("is_causal", 1))[0], [2, 2, 2, 3]);
        }),
        // The definition pads a mask shorter than past and new keys with "not attended"; ONNX Runtime 1.31 refuses it.
        R("Attention", "4-D, past key and value, causal, a bool mask over the past keys only", g =>
        {
            g.Opset = 23;
            var mask = g.Node("Greater", [g.Const([1, -1, 1, 1, 1, -1], 2, 3), g.Scalar(0)]);
            g.Output(g.Node("Attention", [g.X(2, 2, 2, 4), g.X(2, 2, 2, 4), g.X(2, 2, 2, 3), mask, g.X(2, 2, 3, 4), g.X(2, 2, 3, 3)],
                ("is_causal", 1)), [2, 2, 2, 3]);
        }, x =>
        {
            // Row 0 attends keys 0 and 2 (its mask), row 1 keys 0 and 1 (its mask); the causal limits (3 and 4) cut none of them.
            var keys = cat([x[3], x[1]], 2);
            var values = cat([x[4], x[2]], 2);
            var allowed = tensor(new[] { true, false, true, false, false, true, true, false, false, false }, [2, 5]);
            var scores = x[0].matmul(keys.transpose(2, 3)).mul(Scalars.S(0.5));
            return [scores.masked_fill(allowed.logical_not(), Scalars.S(double.NegativeInfinity)).softmax(-1).matmul(values)];
        }),
        R("Attention", "4-D, 4 query heads over one key head, causal over more keys than queries (opset 24)", g =>
        {
            g.Opset = 24;
            g.Output(g.Node("Attention", [g.X(2, 4, 2, 4), g.X(2, 1, 3, 4), g.X(2, 1, 3, 2)], ("is_causal", 1)), [2, 4, 2, 2]);
        }),
        R("Attention", "4-D, nonpad_kv_seqlen 3 and 5 of 5 keys (opset 24)", g =>
        {
            g.Opset = 24;
            g.Output(g.Node("Attention", [g.X(2, 2, 3, 4), g.X(2, 2, 5, 4), g.X(2, 2, 5, 3), "", "", "", g.Ints(3, 5)]), [2, 2, 3, 3]);
        }),
        R("Attention", "4-D, causal with nonpad_kv_seqlen 4 and 5, no past (opset 24)", g =>
        {
            g.Opset = 24;
            g.Output(g.Node("Attention", [g.X(2, 2, 3, 4), g.X(2, 2, 5, 4), g.X(2, 2, 5, 3), "", "", "", g.Ints(4, 5)], ("is_causal", 1)), [2, 2, 3, 3]);
        }),
        R("RotaryEmbedding", "4-D, halves, position_ids", g =>
        {
            g.Opset = 23;
            g.Output(g.Node("RotaryEmbedding", [g.X(2, 2, 3, 4), g.W(6, 2), g.W(6, 2), g.IntsShaped([2, 3], 4, 0, 5, 1, 2, 3)]), [2, 2, 3, 4]);
        }),
        R("RotaryEmbedding", "3-D, 2 heads, interleaved, first 2 of 4 features, position_ids", g =>
        {
            g.Opset = 23;
            g.Output(g.Node("RotaryEmbedding", [g.X(2, 3, 8), g.W(6, 1), g.W(6, 1), g.IntsShaped([2, 3], 1, 2, 3, 5, 0, 4)],
                ("num_heads", 2), ("interleaved", 1), ("rotary_embedding_dim", 2)), [2, 3, 8]);
        }),
        R("RotaryEmbedding", "4-D, interleaved, caches per sample differentiated", g =>
        {
            g.Opset = 23;
            g.Output(g.Node("RotaryEmbedding", [g.X(2, 2, 3, 4), g.X(2, 3, 2), g.X(2, 3, 2)], ("interleaved", 1)), [2, 2, 3, 4]);
        }),

        // ---- Control flow whose counts and conditions the file fixes, unrolled at load into the ops above ----
        R("Loop", "3 iterations of a carried tanh layer reading an outer input, count and condition constants", g =>
        {
            var x = g.X(2, 4);
            var w = g.W(4, 4);
            var body = g.Body([I64, B, F], (b, i) => [b.Node("Identity", [i[1]]), b.Node("Tanh", [b.Node("Add", [b.Node("MatMul", [i[2], w]), x])])], [B, F]);
            g.Output(g.Node("Loop", [g.IntsShaped([], 3), g.Bool(true), x], ("body", body)), [2, 4]);
        }),
        R("Loop", "scan outputs weighted by the iteration number, no condition, a weight inside the body, stacked then batch-first", g =>
        {
            var x = g.X(2, 3);
            var body = g.Body([I64, B, F], (b, i) =>
            {
                var h = b.Node("Sin", [b.Node("Mul", [i[2], b.W(3)])]);
                var step = b.Node("Cast", [b.Node("Add", [i[0], b.IntsShaped([], 1)])], ("to", OnnxType.Float));
                return [b.Bool(true), h, b.Node("Mul", [h, step])];
            }, [B, F, F]);
            var outputs = g.Node("Loop", 2, [g.IntsShaped([], 4), "", x], ("body", body));
            g.Output(outputs[0], [2, 3]);
            g.Output(g.Node("Transpose", [outputs[1]], ("perm", new long[] { 1, 0, 2 })), [2, 4, 3]);
        }),
        // torch.onnx.export writes a scripted loop over x.shape[1] so: the count from x's declared axis, the step a Gather.
        R("Loop", "over a declared axis as torch writes it, Gather(Shape(x), 1) iterations indexing x", g =>
        {
            var x = g.X(2, 3, 4);
            g.Declare(x, 1);
            var (wx, wh) = (g.W(4, 2), g.W(2, 2));
            var body = g.Body([I64, B, F], (b, i) =>
            {
                var step = b.Node("Gather", [x, i[0]], ("axis", 1));
                return [b.Node("Identity", [i[1]]), b.Node("Tanh", [b.Node("Add", [b.Node("MatMul", [step, wx]), b.Node("MatMul", [i[2], wh])])])];
            }, [B, F]);
            var count = g.Node("Gather", [g.Node("Shape", [x]), g.IntsShaped([], 1)]);
            g.Output(g.Node("Loop", [count, g.Bool(true), g.X(2, 2)], ("body", body)), [2, 2]);
        }),
        R("Loop", "a Loop inside a Loop body (2 x 3 iterations), the inner one continuing on the outer condition", g =>
        {
            var x = g.X(2, 3);
            var w = g.W(3);
            var three = g.IntsShaped([], 3);
            var inner = g.Body([I64, B, F], (b, i) => [b.Node("Identity", [i[1]]), b.Node("Sin", [b.Node("Mul", [i[2], w])])], [B, F]);
            var outer = g.Body([I64, B, F], (b, i) =>
                [b.Node("Identity", [i[1]]), b.Node("Add", [b.Node("Loop", [three, i[1], i[2]], ("body", inner)), x])], [B, F]);
            g.Output(g.Node("Loop", [g.IntsShaped([], 2), g.Bool(true), x], ("body", outer)), [2, 3]);
        }),
        // torch.jit.script writes `if t == 0:` inside a loop so; each unrolled copy sees its own iteration number.
        R("Loop", "an If on the iteration number inside the body, the first step taking the other branch", g =>
        {
            var x = g.X(2, 3);
            var w = g.W(3);
            var body = g.Body([I64, B, F], (b, i) =>
            {
                var first = b.Node("Equal", [i[0], b.IntsShaped([], 0)]);
                var then = b.Body([], (t, _) => [t.Node("Sin", [i[2]])]);
                var otherwise = b.Body([], (e, _) => [e.Node("Tanh", [e.Node("Mul", [i[2], w])])]);
                return [b.Node("Identity", [i[1]]), b.Node("If", [first], ("then_branch", then), ("else_branch", otherwise))];
            }, [B, F]);
            g.Output(g.Node("Loop", [g.IntsShaped([], 3), g.Bool(true), x], ("body", body)), [2, 3]);
        }),
        R("Scan", "a tanh recurrence over axis 1 with a state, the states stacked along axis 1", g =>
        {
            var x = g.X(2, 5, 4);
            g.Declare(x, 1);
            var (wx, wh) = (g.W(4, 3), g.W(3, 3));
            var body = g.Body([F, F], (b, i) =>
            {
                var h = b.Node("Tanh", [b.Node("Add", [b.Node("MatMul", [i[1], wx]), b.Node("MatMul", [i[0], wh])])]);
                return [h, b.Node("Identity", [h])];
            });
            var outputs = g.Node("Scan", 2, [g.X(2, 3), x], ("body", body), ("num_scan_inputs", 1),
                ("scan_input_axes", new long[] { 1 }), ("scan_output_axes", new long[] { 1 }));
            g.Output(outputs[0], [2, 3]);
            g.Output(outputs[1], [2, 5, 3]);
        }),
        R("Scan", "two scanned inputs, a weight read backwards, the output reversed along axis 0 then batch-first", g =>
        {
            var x = g.X(2, 4, 3);
            g.Declare(x, 1);
            var body = g.Body([F, F, F], (b, i) =>
            {
                var s = b.Node("Add", [i[0], b.Node("Mul", [i[1], i[2]])]);
                return [s, b.Node("Sin", [s])];
            });
            var outputs = g.Node("Scan", 2, [g.X(2, 3), x, g.W(4, 3)], ("body", body), ("num_scan_inputs", 2),
                ("scan_input_axes", new long[] { 1, 0 }), ("scan_input_directions", new long[] { 0, 1 }), ("scan_output_directions", new long[] { 1 }));
            g.Output(outputs[0], [2, 3]);
            g.Output(g.Node("Transpose", [outputs[1]], ("perm", new long[] { 1, 0, 2 })), [2, 4, 3]);
        }),
        // torch.jit.script writes `outs.append(h)` in a loop and `torch.stack(outs, -2)` after it so.
        R("SequenceEmpty", "a Loop collecting each step, then stacked, as torch writes a list appended in a loop", g =>
        {
            var x = g.X(2, 3, 4);
            g.Declare(x, 1);
            var w = g.W(4, 4);
            var body = g.Body([I64, B, F, FSeq], (b, i) =>
            {
                var h = b.Node("Tanh", [b.Node("Add", [b.Node("MatMul", [b.Node("Gather", [x, i[0]], ("axis", 1)), w]), i[2]])]);
                return [b.Node("Identity", [i[1]]), h, b.Node("SequenceInsert", [i[3], h])];
            }, [B, F, FSeq]);
            var count = g.Node("Gather", [g.Node("Shape", [x]), g.IntsShaped([], 1)]);
            var outputs = g.Node("Loop", 2, [count, g.Bool(true), g.X(2, 4), g.Node("SequenceEmpty", [], ("dtype", F))], ("body", body));
            g.Output(g.Node("ConcatFromSequence", [outputs[1]], ("axis", -2), ("new_axis", 1)), [2, 3, 4]);
        }),
        // torch.jit.script writes `for x_t in x.unbind(1)` so: the Loop's count a SequenceLength, each step a SequenceAt.
        R("SplitToSequence", "torch's unbind (a scalar split of 1, keepdims 0) iterated by a Loop of its SequenceLength", g =>
        {
            var x = g.X(2, 4, 3);
            g.Declare(x, 1);
            var w = g.W(3, 3);
            var steps = g.Node("SplitToSequence", [x, g.IntsShaped([], 1)], ("axis", -2), ("keepdims", 0));
            var body = g.Body([I64, B, F], (b, i) => [b.Node("Identity", [i[1]]),
                b.Node("Tanh", [b.Node("Add", [b.Node("MatMul", [b.Node("SequenceAt", [steps, i[0]]), w]), i[2]])])], [B, F]);
            g.Output(g.Node("Loop", [g.Node("SequenceLength", [steps]), g.Bool(true), g.X(2, 3)], ("body", body)), [2, 3]);
        }),
        R("SplitToSequence", "sizes [2, 3] along axis 1, the last piece read", g =>
        {
            var x = g.X(2, 5, 3);
            g.Declare(x, 1);
            var pieces = g.Node("SplitToSequence", [x, g.Ints(2, 3)], ("axis", 1));
            g.Output(g.Node("Tanh", [g.Node("SequenceAt", [pieces, g.IntsShaped([], -1)])]), [2, 3, 3]);
        }),
        R("SplitToSequence", "a scalar split of 2 (the last piece shorter), the first erased, the rest concatenated", g =>
        {
            var x = g.X(2, 5);
            g.Declare(x, 1);
            var pieces = g.Node("SplitToSequence", [x, g.IntsShaped([], 2)], ("axis", 1));
            g.Output(g.Node("Sin", [g.Node("ConcatFromSequence", [g.Node("SequenceErase", [pieces, g.IntsShaped([], 0)])], ("axis", 1))]), [2, 3]);
        }),
        R("SequenceConstruct", "three values, one of them twice, concatenated along axis 1", g =>
        {
            var x = g.X(2, 3);
            var s = g.Node("Sin", [x]);
            g.Output(g.Node("ConcatFromSequence", [g.Node("SequenceConstruct", [s, g.Node("Mul", [x, g.W(3)]), s])], ("axis", 1)), [2, 9]);
        }),
        R("ConcatFromSequence", "stacked along a new last axis", g =>
        {
            var x = g.X(2, 3);
            var sequence = g.Node("SequenceConstruct", [g.Node("Tanh", [x]), x]);
            g.Output(g.Node("ConcatFromSequence", [sequence], ("axis", -1), ("new_axis", 1)), [2, 3, 2]);
        }),
        R("SequenceInsert", "before the last by a negative position, then at the end", g =>
        {
            var x = g.X(2, 3);
            var sequence = g.Node("SequenceInsert", [g.Node("SequenceConstruct", [x]), g.Node("Tanh", [x]), g.IntsShaped([], -1)]);
            sequence = g.Node("SequenceInsert", [sequence, g.Node("Mul", [x, g.W(3)])]);
            g.Output(g.Node("ConcatFromSequence", [sequence], ("axis", 1)), [2, 9]);
        }),
        R("SequenceErase", "the last by default, then the first by position", g =>
        {
            var x = g.X(2, 3);
            var sequence = g.Node("SequenceConstruct", [g.Node("Sin", [x]), g.Node("Mul", [x, g.W(3)]), g.Node("Neg", [x]), x]);
            sequence = g.Node("SequenceErase", [g.Node("SequenceErase", [sequence]), g.IntsShaped([], 0)]);
            g.Output(g.Node("ConcatFromSequence", [sequence], ("axis", 1)), [2, 6]);
        }),
        R("SequenceAt", "a negative position", g =>
        {
            var x = g.X(2, 3);
            var sequence = g.Node("SequenceConstruct", [g.Node("Sin", [x]), g.Node("Mul", [x, g.W(3)]), x]);
            g.Output(g.Node("SequenceAt", [sequence, g.IntsShaped([], -2)]), [2, 3]);
        }),
        R("SequenceLength", "a count scaling the input", g =>
        {
            var x = g.X(2, 3);
            var count = g.Node("SequenceLength", [g.Node("SequenceConstruct", [x, g.Node("Sin", [x]), x])]);
            g.Output(g.Node("Mul", [x, g.Node("Cast", [count], ("to", F))]), [2, 3]);
        }),
        R("If", "a constant condition: the then branch, reading an outer input and its own weight", g =>
        {
            var x = g.X(2, 3);
            var then = g.Body([], (b, _) => [b.Node("Tanh", [b.Node("Mul", [x, b.W(3)])])]);
            var otherwise = g.Body([], (b, _) => [b.Node("Neg", [x])]);
            g.Output(g.Node("If", [g.Bool(true)], ("then_branch", then), ("else_branch", otherwise)), [2, 3]);
        }),
        R("If", "the else branch, the condition compared from a declared axis", g =>
        {
            var x = g.X(2, 3);
            g.Declare(x, 1);
            var cond = g.Node("Greater", [g.Node("Gather", [g.Node("Shape", [x]), g.IntsShaped([], 1)]), g.IntsShaped([], 5)]);
            var then = g.Body([], (b, _) => [b.Node("Neg", [x])]);
            var otherwise = g.Body([], (b, _) => [b.Node("Mul", [b.Node("Sin", [x]), x])]);
            g.Output(g.Node("If", [cond], ("then_branch", then), ("else_branch", otherwise)), [2, 3]);
        }),
    ];

    /// <summary>
    /// A recurrent op between the transposes torch writes around it: x [batch, steps, features] made time-major, the
    /// op's Y [steps, 1, batch, hidden] squeezed and made batch-major again.
    /// </summary>
    private static void TimeMajor(OnnxBuilder g, Func<string, string> op)
    {
        var y = op(g.Node("Transpose", [g.X(2, 3, 3)], ("perm", new long[] { 1, 0, 2 })));
        g.Node("Transpose", [g.Node("Squeeze", [y, g.Ints(1)])], ("perm", new long[] { 1, 0, 2 }));
    }

    public static IReadOnlyDictionary<string, Row> ByName { get; } = Rows.ToDictionary(r => r.Name);

    public static TheoryData<string> RowNames => new(Rows.Select(r => r.Name));
}
