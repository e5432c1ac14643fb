using static JacService.Core.Ops.Scalars;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Emitted = JacService.Core.Compiled.CompiledRules;

namespace JacService.Core.Ops;

/// <summary>
/// Every supported ONNX op: its forward computation, its JVP rule and its VJP rule side by side. Adding an op is one
/// row here and one row in the test rows, OpRows (the rule and forward tests fail for an op without one).
/// </summary>
public static class OpTable
{
    public static IReadOnlyDictionary<string, OpRule> Rules { get; } = Build();

    private static readonly double SqrtHalf = Math.Sqrt(0.5);
    private static readonly double TwoOverSqrtPi = 2 / Math.Sqrt(Math.PI);
    private static readonly double InvSqrtTwoPi = 1 / Math.Sqrt(2 * Math.PI);

    private static Dictionary<string, OpRule> Build()
    {
        var one = RuleTableBuilder.One;
        var minusOne = RuleTableBuilder.MinusOne;
        var linear = RuleTableBuilder.PiecewiseLinear;
        return new RuleTableBuilder()
            // Elementwise unary: forward, then dy/dx and d²y/dx² from (x, y) ("linear": zero between kinks), and dy/dx as ONNX nodes.
            .Unary("Neg", (_, x) => x.neg(), (_, x, _) => x.new_full([], S(-1)), linear, compiled: (c, _, _) => c.Emit.Scalar(-1))
            .Unary("Sqrt", (_, x) => x.sqrt(), (_, _, y) => S(0.5) / y, (_, x, y) => (x * y).reciprocal() * S(-0.25),
                compiled: (c, _, y) => c.Emit.Op("Div", c.Emit.Scalar(0.5f), y))
            .Unary("Exp", (_, x) => x.exp(), (_, _, y) => y, (_, _, y) => y, compiled: (_, _, y) => y)
            .Unary("Log", (_, x) => x.log(), (_, x, _) => x.reciprocal(), (_, x, _) => Powers.Square(x).reciprocal().neg(),
                compiled: (c, x, _) => c.Emit.Op("Reciprocal", x))
            .Unary("Abs", (_, x) => x.abs(), (_, x, _) => x.sign(), linear, compiled: (c, x, _) => c.Emit.Op("Sign", x))
            .Unary("Relu", (_, x) => x.relu(), (_, _, y) => y.sign(), linear, compiled: (c, _, y) => c.Emit.Op("Sign", y))
            // Shrink: x ∓ bias beyond ±λ, 0 between (soft shrinkage with bias λ, hard with bias 0).
            .Unary("Shrink", (c, x) => where(x.gt(S(Lambda(c))), x.Plus(-Bias(c)), where(x.lt(S(-Lambda(c))), x.Plus(Bias(c)), zeros_like(x))),
                (c, x, _) => x.abs().gt(S(Lambda(c))).to_type(x.dtype), linear,
                compiled: (c, x, _) => c.Emit.Op("Where", c.Emit.Op("Greater", c.Emit.Op("Abs", x), c.Emit.Scalar(c.Float("lambd", 0.5f))), c.Emit.Scalar(1), c.Emit.Scalar(0)))
            .Unary("LeakyRelu", (c, x) => x.leaky_relu(S(Alpha(c, 0.01))), (c, x, _) => Select(x, 1, Alpha(c, 0.01)), linear,
                compiled: (c, x, _) => c.Emit.Add(c.Emit.Mul(c.Emit.Op("Relu", c.Emit.Op("Sign", x)), c.Emit.Scalar(1 - c.Float("alpha", 0.01f))), c.Emit.Scalar(c.Float("alpha", 0.01f))))
            .Unary("Elu", (c, x) => x.elu(S(Alpha(c, 1.0)), S(1), S(1)), (c, x, y) => ExpOrConstant(x, y, Alpha(c, 1.0), 1),
                (c, x, y) => ExpOrConstant(x, y, Alpha(c, 1.0), 0),
                compiled: (c, x, y) => c.Emit.Op("Where", c.Emit.Op("Greater", x, c.Emit.Scalar(0)), c.Emit.Scalar(1), c.Emit.Add(y, c.Emit.Scalar(c.Float("alpha", 1)))))
            .Unary("Selu", (c, x) => Selu(c, x), (c, x, y) => ExpOrConstant(x, y, SeluGamma(c) * SeluAlpha(c), SeluGamma(c)),
                (c, x, y) => ExpOrConstant(x, y, SeluGamma(c) * SeluAlpha(c), 0),
                compiled: (c, x, y) => c.Emit.Op("Where", c.Emit.Op("Greater", x, c.Emit.Scalar(0)), c.Emit.Scalar(c.Float("gamma", SeluGammaDefault)),
                    c.Emit.Add(y, c.Emit.Scalar(c.Float("gamma", SeluGammaDefault) * c.Float("alpha", SeluAlphaDefault)))))
            .Unary("Sigmoid", (_, x) => x.sigmoid(), (_, _, y) => y * y.From(1), (_, _, y) => y * y.From(1) * (y * S(-2)).Plus(1),
                compiled: (c, _, y) => c.Emit.Mul(y, c.Emit.Sub(c.Emit.Scalar(1), y)))
            .Unary("HardSigmoid", (c, x) => HardSigmoidLinear(c, x).clamp(S(0), S(1)),
                (c, x, _) => { var z = HardSigmoidLinear(c, x); return z.gt(S(0)).logical_and(z.lt(S(1))).to_type(x.dtype) * S(Alpha(c, 0.2)); }, linear,
                compiled: (c, x, _) =>
                {
                    var z = c.Emit.Add(c.Emit.Mul(x, c.Emit.Scalar(c.Float("alpha", 0.2f))), c.Emit.Scalar(c.Float("beta", 0.5f)));
                    var inside = c.Emit.Op("And", c.Emit.Op("Greater", z, c.Emit.Scalar(0)), c.Emit.Op("Less", z, c.Emit.Scalar(1)));
                    return c.Emit.Op("Where", inside, c.Emit.Scalar(c.Float("alpha", 0.2f)), c.Emit.Scalar(0));
                })
            .Unary("Tanh", (_, x) => x.tanh(), (_, _, y) => (y * y).From(1), (_, _, y) => y * (y * y).From(1) * S(-2),
                compiled: (c, _, y) => c.Emit.Sub(c.Emit.Scalar(1), c.Emit.Mul(y, y)))
            .Unary("Softplus", (_, x) => Softplus(x), (_, x, _) => x.sigmoid(), (_, x, _) => { var s = x.sigmoid(); return s * s.From(1); },
                compiled: (c, x, _) => c.Emit.Op("Sigmoid", x))
            .Unary("Softsign", (_, x) => x / x.abs().Plus(1), (_, x, _) => Powers.Square(x.abs().Plus(1)).reciprocal(),
                (_, x, _) => x.sign() * Powers.Cube(x.abs().Plus(1)).reciprocal() * S(-2),
                compiled: (c, x, _) => { var d = c.Emit.Add(c.Emit.Op("Abs", x), c.Emit.Scalar(1)); return c.Emit.Op("Reciprocal", c.Emit.Mul(d, d)); })
            .Unary("Sin", (_, x) => x.sin(), (_, x, _) => x.cos(), (_, _, y) => y.neg(), compiled: (c, x, _) => c.Emit.Op("Cos", x))
            .Unary("Cos", (_, x) => x.cos(), (_, x, _) => x.sin().neg(), (_, _, y) => y.neg(), compiled: (c, x, _) => c.Emit.Op("Neg", c.Emit.Op("Sin", x)))
            .Unary("Erf", (_, x) => x.erf(), (_, x, _) => Powers.Square(x).neg().exp() * S(TwoOverSqrtPi),
                (_, x, _) => x * Powers.Square(x).neg().exp() * S(-2 * TwoOverSqrtPi),
                compiled: (c, x, _) => c.Emit.Mul(c.Emit.Op("Exp", c.Emit.Op("Neg", c.Emit.Mul(x, x))), c.Emit.Scalar((float)TwoOverSqrtPi)))
            .Unary("Gelu", (c, x) => Gelu(c, x), (c, x, _) => GeluDerivative(c, x), (c, x, _) => GeluSecondDerivative(c, x), since: 20,
                compiled: GeluSlope)
            .Unary("Reciprocal", (_, x) => x.reciprocal(), (_, _, y) => (y * y).neg(), (_, _, y) => Powers.Cube(y) * S(2),
                compiled: (c, _, y) => c.Emit.Op("Neg", c.Emit.Mul(y, y)))
            .Unary("Tan", (_, x) => x.tan(), (_, _, y) => (y * y).Plus(1), (_, _, y) => y * (y * y).Plus(1) * S(2),
                compiled: (c, _, y) => c.Emit.Add(c.Emit.Mul(y, y), c.Emit.Scalar(1)))
            .Unary("Atan", (_, x) => x.atan(), (_, x, _) => Powers.Square(x).Plus(1).reciprocal(),
                (_, x, _) => x * Powers.Square(Powers.Square(x).Plus(1)).reciprocal() * S(-2),
                compiled: (c, x, _) => c.Emit.Op("Reciprocal", c.Emit.Add(c.Emit.Mul(x, x), c.Emit.Scalar(1))))
            // The inverse sines and cosines: (1 − x²)^(-1/2), and x (1 − x²)^(-3/2) for the second derivative.
            .Unary("Asin", (_, x) => x.asin(), (_, x, _) => Powers.Square(x).From(1).rsqrt(), (_, x, _) => x * Powers.Cube(Powers.Square(x).From(1).rsqrt()),
                compiled: (c, x, _) => c.Emit.Op("Reciprocal", c.Emit.Op("Sqrt", c.Emit.Sub(c.Emit.Scalar(1), c.Emit.Mul(x, x)))))
            .Unary("Acos", (_, x) => x.acos(), (_, x, _) => Powers.Square(x).From(1).rsqrt().neg(), (_, x, _) => x * Powers.Cube(Powers.Square(x).From(1).rsqrt()) * S(-1),
                compiled: (c, x, _) => c.Emit.Op("Neg", c.Emit.Op("Reciprocal", c.Emit.Op("Sqrt", c.Emit.Sub(c.Emit.Scalar(1), c.Emit.Mul(x, x))))))
            .Unary("Sinh", (_, x) => x.sinh(), (_, x, _) => x.cosh(), (_, _, y) => y, compiled: (c, x, _) => c.Emit.Op("Cosh", x))
            .Unary("Cosh", (_, x) => x.cosh(), (_, x, _) => x.sinh(), (_, _, y) => y, compiled: (c, x, _) => c.Emit.Op("Sinh", x))
            .Unary("Asinh", (_, x) => x.asinh(), (_, x, _) => Powers.Square(x).Plus(1).rsqrt(), (_, x, _) => x * Powers.Cube(Powers.Square(x).Plus(1).rsqrt()) * S(-1),
                compiled: (c, x, _) => c.Emit.Op("Reciprocal", c.Emit.Op("Sqrt", c.Emit.Add(c.Emit.Mul(x, x), c.Emit.Scalar(1)))))
            .Unary("Acosh", (_, x) => x.acosh(), (_, x, _) => Powers.Square(x).Minus(1).rsqrt(), (_, x, _) => x * Powers.Cube(Powers.Square(x).Minus(1).rsqrt()) * S(-1),
                compiled: (c, x, _) => c.Emit.Op("Reciprocal", c.Emit.Op("Sqrt", c.Emit.Sub(c.Emit.Mul(x, x), c.Emit.Scalar(1)))))
            .Unary("Atanh", (_, x) => x.atanh(), (_, x, _) => Powers.Square(x).From(1).reciprocal(), (_, x, _) => x * Powers.Square(Powers.Square(x).From(1)).reciprocal() * S(2),
                compiled: (c, x, _) => c.Emit.Op("Reciprocal", c.Emit.Sub(c.Emit.Scalar(1), c.Emit.Mul(x, x))))
            // x · clamp(x/6 + 1/2, 0, 1): slope 0 below -3, x/3 + 1/2 between, 1 above 3; curvature 1/3 between.
            .Unary("HardSwish", (_, x) => x * (x * S(1.0 / 6)).Plus(0.5).clamp(S(0), S(1)),
                (_, x, _) => (Inside(x, 3) * (x * S(1.0 / 3)).Plus(0.5)).Plus(Step(x.Minus(3))), (_, x, _) => Inside(x, 3) * S(1.0 / 3),
                compiled: (c, x, _) => c.Emit.Op("Where", c.Emit.Op("Less", x, c.Emit.Scalar(-3)), c.Emit.Scalar(0),
                    c.Emit.Op("Where", c.Emit.Op("Greater", x, c.Emit.Scalar(3)), c.Emit.Scalar(1),
                        c.Emit.Add(c.Emit.Mul(x, c.Emit.Scalar(1f / 3)), c.Emit.Scalar(0.5f)))), since: 14)
            // x · tanh(softplus(x)), t = tanh(softplus(x)), s = sigmoid(x): slope t + x s (1 − t²), curvature (1 − t²) s (2 + x (1 − s − 2ts)).
            .Unary("Mish", (_, x) => x * Softplus(x).tanh(),
                (_, x, _) => { var t = Softplus(x).tanh(); return t.Plus(x * x.sigmoid() * (t * t).From(1)); },
                (_, x, _) => { var t = Softplus(x).tanh(); var s = x.sigmoid(); return (t * t).From(1) * s * (x * s.Plus(t * s * S(2)).From(1)).Plus(2); },
                since: 18,
                compiled: (c, x, _) =>
                {
                    var t = c.Emit.Op("Tanh", c.Emit.Op("Softplus", x));
                    return c.Emit.Add(t, c.Emit.Mul(c.Emit.Mul(x, c.Emit.Op("Sigmoid", x)), c.Emit.Sub(c.Emit.Scalar(1), c.Emit.Mul(t, t))));
                })
            // max(0, x) + min(0, α(e^(x/α) − 1)): slope 1 above 0 and e^(x/α) below, curvature e^(x/α)/α below.
            .Unary("Celu", (c, x) => x.relu().Plus(((x * S(1 / Alpha(c, 1.0))).exp().Minus(1) * S(Alpha(c, 1.0))).clamp(max: S(0))),
                (c, x, _) => (x.clamp(max: S(0)) * S(1 / Alpha(c, 1.0))).exp(),
                (c, x, _) => Step(x).From(1) * (x * S(1 / Alpha(c, 1.0))).exp() * S(1 / Alpha(c, 1.0)),
                compiled: (c, x, _) => c.Emit.Op("Exp", c.Emit.Mul(c.Emit.Op("Min", x, c.Emit.Scalar(0)), c.Emit.Scalar(1 / c.Float("alpha", 1)))))
            .Unary("ThresholdedRelu", (c, x) => x * Step(x.Minus(Alpha(c, 1.0))), (c, x, _) => Step(x.Minus(Alpha(c, 1.0))), linear,
                compiled: (c, x, _) => c.Emit.Op("Where", c.Emit.Op("Greater", x, c.Emit.Scalar(c.Float("alpha", 1))), c.Emit.Scalar(1), c.Emit.Scalar(0)))
            .Unary("Clip", (c, x) => Clip(c, x), (c, x, y) => ClipMask(c, x, y), linear, nonDifferentiable: [1, 2],
                compiled: (c, x, y) => c.Emit.Op("Where", c.Emit.Op("Equal", x, y), c.Emit.Scalar(1), c.Emit.Scalar(0)))

            // Elementwise binary with broadcasting: forward, then dy/da and dy/db from (a, b, y), the second partials that are
            // not zero, and dy/da and dy/db as ONNX nodes.
            .Binary("Add", (_, a, b) => a.Plus(b), one, one, compiled: (Emitted.One, Emitted.One))
            .Binary("Sub", (_, a, b) => a.Minus(b), one, minusOne, compiled: (Emitted.One, Emitted.MinusOne))
            .Binary("Mul", (_, a, b) => a * b, (_, b, _) => b, (a, _, _) => a, dab: (a, _, _) => a.new_full([], S(1)),
                compiled: ((_, _, b, _) => b, (_, a, _, _) => a))
            .Binary("Div", (_, a, b) => a.Quotient(b), (_, b, _) => b.reciprocal(), (_, b, y) => (y / b).neg(),
                dab: (_, b, _) => Powers.Square(b).reciprocal().neg(), dbb: (_, b, y) => y / Powers.Square(b) * S(2),
                compiled: ((c, _, b, _) => c.Emit.Op("Reciprocal", b), (c, _, b, y) => c.Emit.Op("Neg", c.Emit.Op("Div", y, b))))
            .Binary("Pow", (_, a, b) => a.pow(b), (a, b, _) => b * a.pow(b.Minus(1)), (a, _, y) => y * a.log(),
                daa: (a, b, _) => b * b.Minus(1) * a.pow(b.Minus(2)), dab: (a, b, _) => a.pow(b.Minus(1)) * (b * a.log()).Plus(1),
                dbb: (a, _, y) => y * Powers.Square(a.log()),
                compiled: ((c, a, b, _) => c.Emit.Mul(b, c.Emit.Op("Pow", a, c.Emit.Sub(b, c.Emit.Scalar(1)))), (c, a, _, y) => c.Emit.Mul(y, c.Emit.Op("Log", a))))
            // fmod (floats): a − b·trunc(a/b), so ∂/∂a = 1 and ∂/∂b = −trunc(a/b) = (y − a)/b between jumps; integers
            // (fmod 0, the divisor's sign) carry no derivative.
            .Binary("Mod", (c, a, b) => c.Attr.Int("fmod", 0) != 0 ? a.fmod(b) : a.remainder(b), one, (a, b, y) => y.Minus(a) / b,
                compiled: (Emitted.One, (c, a, b, y) => c.Emit.Op("Div", c.Emit.Sub(y, a), b)))
            .Binary("PRelu", (_, x, s) => x.relu().Plus(s * x.clamp(max: S(0))),
                (x, s, _) => Step(x).Plus(Step(x).From(1) * s), (x, _, _) => Step(x).From(1) * x, dab: (x, _, _) => Step(x).From(1),
                compiled: ((c, x, s, _) => c.Emit.Op("Where", c.Emit.Op("Greater", x, c.Emit.Scalar(0)), c.Emit.Scalar(1), s),
                    (c, x, _, _) => c.Emit.Op("Where", c.Emit.Op("Greater", x, c.Emit.Scalar(0)), c.Emit.Scalar(0), x)))

            // Sums of any number of inputs (broadcasting).
            .Add(new OpRule("Sum", OpKind.ElementwiseBinary, Variadic.Sum, Variadic.SumVjp) { Curvature = OpRule.Linear, Allocates = Selection.Allocates, Compiled = Emitted.Combination(mean: false) })
            .Add(new OpRule("Mean", OpKind.ElementwiseBinary, Variadic.Mean, Variadic.MeanVjp) { Curvature = OpRule.Linear, Allocates = Selection.Allocates, Compiled = Emitted.Combination(mean: true) })

            // Elementwise selection: each element is one input's, and so is its derivative.
            .Add(new OpRule("Where", OpKind.Selection, Selection.Where, Selection.WhereVjp) { Curvature = OpRule.Linear, Allocates = Selection.Allocates, Compiled = Emitted.Where })
            .Add(new OpRule("Max", OpKind.Selection, Selection.Max, Selection.ExtremumVjp) { Curvature = OpRule.Linear, Allocates = Selection.Allocates, Compiled = Emitted.Extremum })
            .Add(new OpRule("Min", OpKind.Selection, Selection.Min, Selection.ExtremumVjp) { Curvature = OpRule.Linear, Allocates = Selection.Allocates, Compiled = Emitted.Extremum })
            .Add(new OpRule("TopK", OpKind.Selection, Selection.TopK, Selection.TopKVjp) { NonDifferentiableInputs = [1], Curvature = OpRule.Linear, Compiled = Emitted.TopK })

            // Constant between jumps: no derivative flows through (the conditions of a Where, roundings).
            .PiecewiseConstant("Floor", x => x[0].floor())
            .PiecewiseConstant("Ceil", x => x[0].ceil())
            .PiecewiseConstant("Round", x => x[0].round())
            .PiecewiseConstant("Sign", x => x[0].sign())
            .PiecewiseConstant("Equal", x => x[0].eq(x[1]), broadcasts: true)
            .PiecewiseConstant("Greater", x => x[0].gt(x[1]), broadcasts: true)
            .PiecewiseConstant("GreaterOrEqual", x => x[0].ge(x[1]), broadcasts: true)
            .PiecewiseConstant("Less", x => x[0].lt(x[1]), broadcasts: true)
            .PiecewiseConstant("LessOrEqual", x => x[0].le(x[1]), broadcasts: true)
            .PiecewiseConstant("Not", x => x[0].logical_not())
            .PiecewiseConstant("And", x => x[0].logical_and(x[1]), broadcasts: true)
            .PiecewiseConstant("Or", x => x[0].logical_or(x[1]), broadcasts: true)
            .PiecewiseConstant("Xor", x => x[0].logical_xor(x[1]), broadcasts: true)
            .PiecewiseConstant("IsNaN", x => x[0].isnan())
            .Add(new OpRule("IsInf", OpKind.Constant, c => [new Dual(IsInf(c), null)], OpRule.NoVjp) { Curvature = OpRule.Linear })
            .Add(new OpRule("ArgMax", OpKind.Constant, c => [new Dual(ArgExtremum(c, max: true), null)], OpRule.NoVjp) { Curvature = OpRule.Linear })
            .Add(new OpRule("ArgMin", OpKind.Constant, c => [new Dual(ArgExtremum(c, max: false), null)], OpRule.NoVjp) { Curvature = OpRule.Linear })

            // Linear algebra.
            .Add(new OpRule("Gemm", OpKind.LinearAlgebra, LinearAlgebra.Gemm, LinearAlgebra.GemmVjp) { Curvature = LinearAlgebra.GemmCurvature, Curves = LinearAlgebra.TwoFactors, Allocates = LinearAlgebra.GemmAllocates, Compiled = Emitted.Gemm })
            .Add(new OpRule("MatMul", OpKind.LinearAlgebra, LinearAlgebra.MatMul, LinearAlgebra.MatMulVjp) { Curvature = LinearAlgebra.MatMulCurvature, Curves = LinearAlgebra.TwoFactors, Allocates = LinearAlgebra.MatMulAllocates, Compiled = Emitted.MatMul })

            .Add(new OpRule("Einsum", OpKind.LinearAlgebra, Contractions.Einsum, Contractions.EinsumVjp)
                { Validate = Contractions.Validate, Curvature = Contractions.EinsumCurvature, Curves = LinearAlgebra.TwoFactors, Allocates = Contractions.Allocates, Compiled = Emitted.Einsum })

            // Pass-through and casts.
            .Linear("Identity", OpKind.Shape, (_, x) => x, (_, t, _) => t, (_, ct) => ct, compiled: Emitted.Identity)
            .Add(new OpRule("Dropout", OpKind.Shape, ShapeOps.Dropout, ShapeOps.PassBack) { Curvature = OpRule.Linear, Compiled = Emitted.Identity })
            .Add(new OpRule("Cast", OpKind.Shape, ShapeOps.Cast, ShapeOps.CastVjp) { Curvature = OpRule.Linear, Compiled = Emitted.Cast })
            // The second input lends its element type only; no derivative flows through it.
            .Add(new OpRule("CastLike", OpKind.Shape, ShapeOps.CastLike, ShapeOps.CastVjp) { Since = 15, Curvature = OpRule.Linear, Compiled = Emitted.CastLike })

            // Values that never carry a tangent.
            .Add(new OpRule("Constant", OpKind.Constant, ShapeOps.Constant, OpRule.NoVjp) { Curvature = OpRule.Linear })
            .Add(new OpRule("Shape", OpKind.Constant, ShapeOps.Shape, OpRule.NoVjp)
                { ShapeOnly = true, Curvature = OpRule.Linear, Validate = (n, opset) => opset < 15 && (n.Attributes.Has("start") || n.Attributes.Has("end"))
                    ? $"the attributes start and end arrived in opset 15 (the model's is {opset})" : null })
            .Add(new OpRule("Size", OpKind.Constant, ShapeOps.Size, OpRule.NoVjp) { ShapeOnly = true, Curvature = OpRule.Linear })
            .Add(new OpRule("OneHot", OpKind.Constant, ShapeOps.OneHot, OpRule.NoVjp) { NonDifferentiableInputs = [2], Curvature = OpRule.Linear, Allocates = ShapeOps.OneHotAllocates })
            .Add(new OpRule("ConstantOfShape", OpKind.Constant, ShapeOps.ConstantOfShape, OpRule.NoVjp) { Curvature = OpRule.Linear, Allocates = ShapeOps.ConstantOfShapeAllocates })

            // Shape ops: the tangent takes the same map on the axes after the basis axis, the cotangent its transpose.
            .Reshaping("Reshape", ShapeOps.Reshape)
            .Reshaping("Flatten", ShapeOps.Flatten)
            .Reshaping("Squeeze", ShapeOps.Squeeze)
            .Reshaping("Unsqueeze", ShapeOps.Unsqueeze)
            .Linear("Transpose", OpKind.Shape, (c, x) => x.permute(ShapeOps.Permutation(c, x)),
                (c, t, _) => t.permute([0, .. Tangents.Shift(ShapeOps.Permutation(c, t.select(0, 0)))]),
                (c, ct) => ct.permute([0, .. Tangents.Shift(ShapeOps.InversePermutation(c, c.In(0)))]), compiled: Emitted.Transpose)
            .Linear("DFT", OpKind.LinearAlgebra, Fourier.Forward, Fourier.Push, Fourier.Pull, Fourier.Validate, Emitted.Dft, since: 17)
            .Linear("DepthToSpace", OpKind.Shape, BlockRearrange.Forward, BlockRearrange.Push, BlockRearrange.Pull, BlockRearrange.Validate, Emitted.BlockRearrange)
            .Linear("SpaceToDepth", OpKind.Shape, BlockRearrange.Forward, BlockRearrange.Push, BlockRearrange.Pull, BlockRearrange.Validate, Emitted.BlockRearrange)
            .Add(new OpRule("Gather", OpKind.Shape, ShapeOps.Gather, ShapeOps.GatherVjp) { Curvature = OpRule.Linear, Allocates = ShapeOps.GatherAllocates, Compiled = Emitted.Gather })
            .Add(new OpRule("GatherND", OpKind.Shape, ShapeOps.GatherNd, ShapeOps.GatherNdVjp) { NonDifferentiableInputs = [1], Curvature = OpRule.Linear, Compiled = Emitted.GatherNd })
            .Add(new OpRule("GatherElements", OpKind.Shape, ShapeOps.GatherElements, ShapeOps.GatherElementsVjp) { Curvature = OpRule.Linear, Compiled = Emitted.GatherElements })
            .Add(new OpRule("ScatterElements", OpKind.Shape, ShapeOps.ScatterElements, ShapeOps.ScatterElementsVjp)
                { NonDifferentiableInputs = [1], Validate = ShapeOps.ValidateScatterElements, Curvature = OpRule.Linear, Compiled = Emitted.ScatterElements })
            .Add(new OpRule("ScatterND", OpKind.Shape, ShapeOps.ScatterNd, ShapeOps.ScatterNdVjp)
                { NonDifferentiableInputs = [1], Validate = ShapeOps.ValidateScatterNd, Curvature = OpRule.Linear, Compiled = Emitted.ScatterNd })
            .Add(new OpRule("Tile", OpKind.Shape, ShapeOps.Tile, ShapeOps.TileVjp) { Curvature = OpRule.Linear, Allocates = ShapeOps.TileAllocates, Compiled = Emitted.Tile })
            // Running sums are linear; their transpose sums the other way.
            .Linear("CumSum", OpKind.Shape, (c, x) => ShapeOps.CumulativeSum(c, x), (c, t, _) => ShapeOps.CumulativeSum(c, t, shift: 1),
                (c, ct) => ShapeOps.CumulativeSum(c.Primal(), ct, shift: 1, transposed: true), compiled: Emitted.CumSum)
            .Linear("Trilu", OpKind.Shape, ShapeOps.Triangle, (c, t, _) => ShapeOps.Triangle(c, t), (c, ct) => ShapeOps.Triangle(c.Primal(), ct), compiled: Emitted.Trilu, since: 14)
            // A grid of positions: no derivative flows through, and a request whose wrt feeds its bounds is refused.
            .Add(new OpRule("Range", OpKind.Constant, ShapeOps.Range, OpRule.NoVjp) { NonDifferentiableInputs = [0, 1, 2], Curvature = OpRule.Linear, Allocates = ShapeOps.RangeAllocates })
            .Add(new OpRule("Concat", OpKind.Shape, ShapeOps.Concat, ShapeOps.ConcatVjp) { Curvature = OpRule.Linear, Allocates = ShapeOps.ConcatAllocates, Compiled = Emitted.Concat })
            .Add(new OpRule("Split", OpKind.Shape, ShapeOps.Split, ShapeOps.SplitVjp) { Validate = ShapeOps.ValidateSplit, Curvature = OpRule.Linear, Compiled = Emitted.Split })
            .Add(new OpRule("Slice", OpKind.Shape, ShapeOps.Slice, ShapeOps.SliceVjp) { Curvature = OpRule.Linear, Compiled = Emitted.Slice })
            .Add(new OpRule("Expand", OpKind.Shape, ShapeOps.Expand, ShapeOps.ExpandVjp) { Curvature = OpRule.Linear, Allocates = ShapeOps.ExpandAllocates, Compiled = Emitted.Expand })
            // GridSample: X read at a grid's points; linear in X, and in the grid through the taps' weights.
            .Add(new OpRule("GridSample", OpKind.Shape, GridSampling.Forward, GridSampling.Vjp)
                { Since = 16, Validate = GridSampling.Validate, Curvature = GridSampling.Curvature, Curves = dependent => dependent.Length > 1 && dependent[1],
                  Allocates = GridSampling.Allocates, Compiled = Emitted.GridSample })
            .Add(new OpRule("Resize", OpKind.Shape, Resampling.Resize, Resampling.ResizeVjp)
                { NonDifferentiableInputs = [1, 2, 3], Validate = Resampling.Validate, Curvature = OpRule.Linear, Allocates = Resampling.Allocates, Compiled = Emitted.Resize })
            .Add(new OpRule("Pad", OpKind.Shape, ShapeOps.Pad, ShapeOps.PadVjp) { Validate = ShapeOps.ValidatePad, Curvature = OpRule.Linear, Allocates = ShapeOps.PadAllocates, Compiled = Emitted.Pad })

            // Reductions and normalisations.
            .Add(new OpRule("ReduceSum", OpKind.Reduction, Reductions.ReduceSum, Reductions.ReduceSumVjp) { Curvature = OpRule.Linear, Compiled = Emitted.Reduction(mean: false) })
            .Add(new OpRule("ReduceMean", OpKind.Reduction, Reductions.ReduceMean, Reductions.ReduceMeanVjp) { Curvature = OpRule.Linear, Compiled = Emitted.Reduction(mean: true) })
            .Add(new OpRule("ReduceMax", OpKind.Reduction, Reductions.ReduceMax, Reductions.ReduceExtremumVjp) { Curvature = OpRule.Linear, Compiled = Emitted.ReductionBySlope(Emitted.ExtremumSlope) })
            .Add(new OpRule("ReduceMin", OpKind.Reduction, Reductions.ReduceMin, Reductions.ReduceExtremumVjp) { Curvature = OpRule.Linear, Compiled = Emitted.ReductionBySlope(Emitted.ExtremumSlope) })
            .Add(new OpRule("ReduceL1", OpKind.Reduction, Reductions.ReduceL1, Reductions.ReduceL1Vjp) { Curvature = OpRule.Linear, Compiled = Emitted.ReductionBySlope((c, x, _, _) => c.Emit.Op("Sign", x)) })
            .Add(new OpRule("ReduceL2", OpKind.Reduction, Reductions.ReduceL2, Reductions.ReduceL2Vjp)
                { Curvature = Reductions.ReduceL2Curvature, Compiled = Emitted.ReductionBySlope((c, x, kept, _) => c.Emit.Op("Div", x, kept)) })
            .Add(new OpRule("ReduceProd", OpKind.Reduction, Reductions.ReduceProd, Reductions.ReduceProdVjp)
                { Curvature = Reductions.ReduceProdCurvature, Compiled = Emitted.ReductionBySlope(Emitted.ProductSlope) })
            .Add(new OpRule("ReduceSumSquare", OpKind.Reduction, Reductions.ReduceSumSquare, Reductions.ReduceSumSquareVjp)
                { Curvature = Reductions.ReduceSumSquareCurvature, Compiled = Emitted.ReductionBySlope((c, x, _, _) => c.Emit.Mul(x, c.Emit.Scalar(2))) })
            .Add(new OpRule("ReduceLogSumExp", OpKind.Reduction, Reductions.ReduceLogSumExp, Reductions.ReduceLogSumExpVjp)
                { Curvature = Reductions.ReduceLogSumExpCurvature, Compiled = Emitted.ReductionBySlope((c, x, kept, _) => c.Emit.Op("Exp", c.Emit.Sub(x, kept))) })
            .Add(new OpRule("Softmax", OpKind.Reduction, Reductions.Softmax, Reductions.SoftmaxVjp) { Curvature = Reductions.SoftmaxCurvature, Compiled = Emitted.Softmax })
            .Add(new OpRule("LogSoftmax", OpKind.Reduction, Reductions.LogSoftmax, Reductions.LogSoftmaxVjp) { Curvature = Reductions.LogSoftmaxCurvature, Compiled = Emitted.LogSoftmax })
            .Add(new OpRule("BatchNormalization", OpKind.Normalization, Normalization.BatchNormalization, Normalization.BatchNormalizationVjp)
                { NonDifferentiableInputs = [1, 2, 3, 4], Validate = Normalization.ValidateBatchNormalization, Curvature = OpRule.Linear, Compiled = Emitted.BatchNormalization })
            .Add(new OpRule("LayerNormalization", OpKind.Normalization, Normalization.LayerNormalization, Normalization.LayerNormalizationVjp)
                { Since = 17, NonDifferentiableInputs = [1, 2], Validate = Normalization.ValidateLayerNormalization, Curvature = Normalization.LayerNormalizationCurvature, Compiled = Emitted.LayerNormalization })
            .Add(new OpRule("GroupNormalization", OpKind.Normalization, Normalization.GroupNormalization, Normalization.GroupNormalizationVjp)
                { Since = 18, NonDifferentiableInputs = [1, 2], Validate = Normalization.ValidateGroupNormalization, Curvature = Normalization.GroupNormalizationCurvature,
                  Compiled = Emitted.GroupNormalization })
            .Add(new OpRule("LpNormalization", OpKind.Normalization, Normalization.LpNormalization, Normalization.LpNormalizationVjp)
                { Validate = Normalization.ValidateLpNormalization, Curvature = Normalization.LpNormalizationCurvature, Compiled = Emitted.LpNormalization })
            // LayerNormalization's rules without the mean (opset 23).
            .Add(new OpRule("RMSNormalization", OpKind.Normalization, Normalization.LayerNormalization, Normalization.LayerNormalizationVjp)
                { Since = 23, NonDifferentiableInputs = [1], Validate = Normalization.ValidateLayerNormalization, Curvature = Normalization.LayerNormalizationCurvature,
                  Compiled = Emitted.RmsNormalization })
            .Add(new OpRule("InstanceNormalization", OpKind.Normalization, Normalization.InstanceNormalization, Normalization.InstanceNormalizationVjp)
                { NonDifferentiableInputs = [1, 2], Curvature = Normalization.InstanceNormalizationCurvature, Compiled = Emitted.InstanceNormalization })

            // Convolution and pooling (1-D and 2-D).
            .Add(new OpRule("Conv", OpKind.Convolution, ConvPool.Conv, ConvPool.ConvVjp)
                { NonDifferentiableInputs = [1, 2], Validate = ConvPool.ValidateSpatial, Curvature = OpRule.Linear, Allocates = ConvPool.ConvAllocates, Compiled = Emitted.Conv })
            .Add(new OpRule("ConvTranspose", OpKind.Convolution, ConvPool.ConvTranspose, ConvPool.ConvTransposeVjp)
                { NonDifferentiableInputs = [1, 2], Validate = ConvPool.ValidateTransposed, Curvature = OpRule.Linear, Allocates = ConvPool.ConvTransposeAllocates, Compiled = Emitted.ConvTranspose })
            .Add(new OpRule("MaxPool", OpKind.Pooling, ConvPool.MaxPool, ConvPool.MaxPoolVjp) { Validate = ConvPool.ValidatePool, Curvature = OpRule.Linear, Allocates = ConvPool.PoolAllocates, Compiled = Emitted.MaxPool })
            .Add(new OpRule("AveragePool", OpKind.Pooling, ConvPool.AveragePool, ConvPool.AveragePoolVjp) { Validate = ConvPool.ValidateAveragePool, Curvature = OpRule.Linear, Allocates = ConvPool.PoolAllocates, Compiled = Emitted.AveragePool })
            .Add(new OpRule("GlobalMaxPool", OpKind.Pooling, Reductions.GlobalMaxPool, Reductions.GlobalMaxPoolVjp)
                { Curvature = OpRule.Linear, Compiled = Emitted.ReductionBySlope(Emitted.ExtremumSlope, spatial: true) })
            .Add(new OpRule("GlobalAveragePool", OpKind.Pooling, ConvPool.GlobalAveragePool, ConvPool.GlobalAveragePoolVjp) { Curvature = OpRule.Linear, Compiled = Emitted.GlobalAveragePool })

            // Recurrent cells stepped through a sequence; each cell written once in CellMath serves every derivative.
            .Add(new OpRule("LSTM", OpKind.Recurrent, Recurrent.Forward, Recurrent.Vjp)
                { NonDifferentiableInputs = Recurrent.NonDifferentiable("LSTM"), Validate = Recurrent.Validate, Curvature = Recurrent.Curvature, Allocates = Recurrent.Allocates,
                  Compiled = Emitted.Recurrent })
            .Add(new OpRule("GRU", OpKind.Recurrent, Recurrent.Forward, Recurrent.Vjp)
                { NonDifferentiableInputs = Recurrent.NonDifferentiable("GRU"), Validate = Recurrent.Validate, Curvature = Recurrent.Curvature, Allocates = Recurrent.Allocates,
                  Compiled = Emitted.Recurrent })
            .Add(new OpRule("RNN", OpKind.Recurrent, Recurrent.Forward, Recurrent.Vjp)
                { NonDifferentiableInputs = Recurrent.NonDifferentiable("RNN"), Validate = Recurrent.Validate, Curvature = Recurrent.Curvature, Allocates = Recurrent.Allocates,
                  Compiled = Emitted.Recurrent })
            .Rules;
    }

    /// <summary>log(1 + e^x) without overflow, from tensor ops only (TorchSharp's softplus makes Scalars of its defaults).</summary>
    private static Tensor Softplus(Tensor x) => x.relu().Plus(x.abs().neg().exp().log1p());

    // The piecewise derivatives below avoid comparisons: this libtorch's comparisons to bool, bool-to-float casts and
    // masked_fill run unvectorised, and the float forms took a third to a fifteenth of the time, in cache and out of it
    // (wide_classifier's [256, 512], small_cnn's [256, 16, 14, 14]; --mask-probe, docs/benchmarks.md "Masks without bools").
    // Relu's slope is sign(y), one pass: y = relu(x) is 0 or positive (sign(NaN) is 0, as the comparison gave).

    /// <summary>1 where x &gt; 0, else 0 (NaN too), in x's dtype: sign, then relu.</summary>
    private static Tensor Step(Tensor x) => x.sign().relu_();

    private static Tensor IsInf(OpContext c)
    {
        var x = c.In(0).Value;
        bool negative = c.Attr.Int("detect_negative", 1) != 0, positive = c.Attr.Int("detect_positive", 1) != 0;
        return negative && positive ? x.isinf() : negative ? x.isneginf() : positive ? x.isposinf() : zeros_like(x, ScalarType.Bool);
    }

    /// <summary>ArgMax or ArgMin along the axis (int64); with select_last_index, the last of tied elements, as ONNX asks.</summary>
    private static Tensor ArgExtremum(OpContext c, bool max)
    {
        var x = c.In(0).Value;
        long axis = Shapes.Axis(c.Attr.Int("axis", 0), x.dim());
        bool keep = c.Attr.Int("keepdims", 1) != 0;
        if (c.Attr.Int("select_last_index", 0) == 0) return max ? x.argmax(axis, keep) : x.argmin(axis, keep);
        var flipped = x.flip(axis);
        var index = max ? flipped.argmax(axis, keep) : flipped.argmin(axis, keep);
        return index.neg().add(L(x.Dims()[axis] - 1), L(1));
    }

    /// <summary>1 where -bound &lt; x &lt; bound, else 0, in x's dtype.</summary>
    private static Tensor Inside(Tensor x, double bound) => Step(x.Plus(bound)) * Step(x.From(bound));

    /// <summary>x &gt; 0 ? ifPositive : otherwise, elementwise in x's dtype (ifPositive to within a rounding).</summary>
    private static Tensor Select(Tensor x, double ifPositive, double otherwise) =>
        Step(x).mul_(S(ifPositive - otherwise)).add_(S(otherwise), S(1));

    /// <summary>
    /// k·eˣ where x ≤ 0 and c where x &gt; 0, from y = k·(eˣ − 1) there: Elu's and Selu's derivatives (k = α or γα, c = 1
    /// or γ) and second derivatives (c = 0). For k &gt; 0, y + k clamped at k is k·eˣ where x ≤ 0 and k where x &gt; 0, and a
    /// step adds c − k there (c to within a rounding): two passes over memory for Elu with α = 1.
    /// </summary>
    private static Tensor ExpOrConstant(Tensor x, Tensor y, double k, double c)
    {
        if (k <= 0)
        {
            // An unusual attribute: y + k is not bounded by k here, so the step picks (exactly, where y is finite).
            var s = Step(x);
            return y.Plus(k).mul_(s.From(1)).add_(s, S(c));
        }
        var d = y.Plus(k).clamp_max_(S(k));
        return c == k ? d : d.add_(Step(x), S(c - k));
    }

    private static double Alpha(OpContext c, double fallback) => c.Attr.Float("alpha", (float)fallback);
    private static double Lambda(OpContext c) => c.Attr.Float("lambd", 0.5f);
    private static double Bias(OpContext c) => c.Attr.Float("bias", 0f);

    private const float SeluAlphaDefault = 1.67326319217681884765625f;
    private const float SeluGammaDefault = 1.05070102214813232421875f;

    private static double SeluAlpha(OpContext c) => c.Attr.Float("alpha", SeluAlphaDefault);

    private static double SeluGamma(OpContext c) => c.Attr.Float("gamma", SeluGammaDefault);

    private static Tensor Selu(OpContext c, Tensor x) =>
        x.relu().Plus(x.clamp(max: S(0)).exp().Minus(1) * S(SeluAlpha(c))) * S(SeluGamma(c));

    private static Tensor HardSigmoidLinear(OpContext c, Tensor x) => (x * S(Alpha(c, 0.2))).Plus(c.Attr.Float("beta", 0.5f));

    private static bool GeluTanh(OpContext c) => c.Attr.String("approximate", "none") == "tanh";

    private static readonly double GeluC = Math.Sqrt(2 / Math.PI);

    private static Tensor Gelu(OpContext c, Tensor x) => GeluTanh(c)
        ? x * S(0.5) * (x.Plus(Powers.Cube(x) * S(0.044715)) * S(GeluC)).tanh().Plus(1)
        : x * S(0.5) * (x * S(SqrtHalf)).erf().Plus(1);

    private static Tensor GeluDerivative(OpContext c, Tensor x)
    {
        if (!GeluTanh(c)) return ((x * S(SqrtHalf)).erf().Plus(1) * S(0.5)).Plus(x * (Powers.Square(x) * S(-0.5)).exp() * S(InvSqrtTwoPi));
        var u = (x.Plus(Powers.Cube(x) * S(0.044715)) * S(GeluC)).tanh();
        return (u.Plus(1) * S(0.5)).Plus(x * S(0.5) * (u * u).From(1) * S(GeluC) * (Powers.Square(x) * S(3 * 0.044715)).Plus(1));
    }

    private static string GeluSlope(Compiled.OnnxRuleContext c, string x, string _)
    {
        var e = c.Emit;
        var square = e.Mul(x, x);
        if (c.String("approximate", "none") != "tanh")
        {
            var cdf = e.Mul(e.Add(e.Op("Erf", e.Mul(x, e.Scalar((float)SqrtHalf))), e.Scalar(1)), e.Scalar(0.5f));
            return e.Add(cdf, e.Mul(x, e.Mul(e.Op("Exp", e.Mul(square, e.Scalar(-0.5f))), e.Scalar((float)InvSqrtTwoPi))));
        }
        var u = e.Op("Tanh", e.Mul(e.Add(x, e.Mul(e.Mul(square, x), e.Scalar(0.044715f))), e.Scalar((float)GeluC)));
        var dz = e.Add(e.Mul(square, e.Scalar((float)(3 * 0.044715))), e.Scalar(1));
        return e.Add(e.Mul(e.Add(u, e.Scalar(1)), e.Scalar(0.5f)), e.Mul(e.Mul(e.Mul(x, e.Scalar((float)(0.5 * GeluC))), e.Sub(e.Scalar(1), e.Mul(u, u))), dz));
    }

    // gelu = x Φ(x): gelu'' = 2φ(x) + xφ'(x) = φ(x)(2 - x²). The tanh form, with u = tanh(z), z = c(x + 0.044715x³):
    // gelu'' = (1 - u²)(z' + x(z'' - 2u z'²)/2).
    private static Tensor GeluSecondDerivative(OpContext c, Tensor x)
    {
        var x2 = Powers.Square(x);
        if (!GeluTanh(c)) return (x2 * S(-0.5)).exp() * S(InvSqrtTwoPi) * x2.From(2);
        var u = (x.Plus(Powers.Cube(x) * S(0.044715)) * S(GeluC)).tanh();
        var dz = (x2 * S(3 * 0.044715)).Plus(1) * S(GeluC);
        var d2z = x * S(6 * 0.044715 * GeluC);
        return (u * u).From(1) * dz.Plus(x * S(0.5) * d2z.Minus(u * Powers.Square(dz) * S(2)));
    }

    private static (double? Min, double? Max) ClipBounds(OpContext c) =>
        (c.Optional(1) is { } lo ? HostValues.Reals(lo.Value)[0] : null,
         c.Optional(2) is { } hi ? HostValues.Reals(hi.Value)[0] : null);

    private static Tensor Clip(OpContext c, Tensor x)
    {
        var (min, max) = ClipBounds(c);
        return min is null && max is null ? x.alias() : x.clamp(min is { } lo ? S(lo) : null, max is { } hi ? S(hi) : null);
    }

    /// <summary>1 where lo ≤ x ≤ hi, which is where the clamp left x as it was (y = x), else 0 (NaN too): one comparison, not four.</summary>
    private static Tensor ClipMask(OpContext c, Tensor x, Tensor y)
    {
        var (min, max) = ClipBounds(c);
        return min is null && max is null ? x.ones_like() : x.eq(y).to_type(x.dtype);
    }
}
