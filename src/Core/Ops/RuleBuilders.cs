using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>Derivative of an elementwise op with respect to one operand, from the operands and the result.</summary>
public delegate Tensor Partial(Tensor a, Tensor b, Tensor y);

/// <summary>
/// Helpers that turn a forward function and its derivative into a rule, so most rows of the table are one line
/// (the way JAX fills its table with defjvp / deflinear). Elementwise ops have diagonal Jacobians, so one partial
/// serves both directions: the JVP multiplies the tangent by it, the VJP the cotangent (summed back over
/// broadcast axes). Linear ops give their map and its transpose.
/// </summary>
internal sealed class RuleTableBuilder
{
    public Dictionary<string, OpRule> Rules { get; } = new(StringComparer.Ordinal);

    /// <summary>The partial of a sum: the tangent passes unchanged.</summary>
    public static readonly Partial One = (_, _, _) => throw new InvalidOperationException();
    /// <summary>The partial of a difference's right operand.</summary>
    public static readonly Partial MinusOne = (_, _, _) => throw new InvalidOperationException();

    /// <summary>The second derivative of an op that is linear between kinks: zero wherever it exists.</summary>
    public static readonly Func<OpContext, Tensor, Tensor, Tensor> PiecewiseLinear = (_, _, _) => throw new InvalidOperationException();

    public RuleTableBuilder Add(OpRule rule)
    {
        Rules.Add(rule.OpType, rule);
        return this;
    }

    /// <summary>
    /// Elementwise y = f(x) with dy/dx and d²y/dx² given from (x, y): tangent = T * dy/dx, cotangent = C * dy/dx, and
    /// second-order directions gain d²y/dx² * (G ⊗ G). Where a mask does it in fewer passes over memory than forming
    /// dy/dx and multiplying, <paramref name="along"/> applies the derivative to a direction (tangent or cotangent)
    /// from x directly.
    /// </summary>
    public RuleTableBuilder Unary(string op, Func<OpContext, Tensor, Tensor> f, Func<OpContext, Tensor, Tensor, Tensor> dydx,
        Func<OpContext, Tensor, Tensor, Tensor> d2ydx2, int[]? nonDifferentiable = null, Func<Tensor, Tensor, Tensor>? along = null,
        Compiled.CompiledRules.Slope? compiled = null, int since = 0)
    {
        Tensor Apply(OpContext c, Tensor x, Tensor y, Tensor direction) => along is null ? direction * dydx(c, x, y) : along(x, direction);
        return Add(new OpRule(op, OpKind.ElementwiseUnary,
            c =>
            {
                var x = c.In(0);
                var y = f(c, x.Value);
                return [new Dual(y, x.Tangent is null ? null : Apply(c, x.Value, y, x.Tangent))];
            },
            c => [c.Cotangent(0) is { } ct && c.Needs(0) ? Apply(c.Primal(), c.In(0), c.Out(0), ct) : null])
        {
            Since = since,
            NonDifferentiableInputs = nonDifferentiable ?? [],
            Curvature = ReferenceEquals(d2ydx2, PiecewiseLinear) ? OpRule.Linear
                : c => [c.G(0) is { } g ? c.Pairs(g, g) * d2ydx2(c.Primal, c.In(0), c.Out(0)) : null],
            SecondDerivative = ReferenceEquals(d2ydx2, PiecewiseLinear) ? null : d2ydx2,
            Compiled = compiled is null ? null : Compiled.CompiledRules.Unary(compiled),
        });
    }

    /// <summary>
    /// An op whose output is constant between jumps in its inputs (Floor, Sign, comparisons, logic): no derivative flows
    /// through it (JAX's rules for these give zeros), so the engine treats its output as it treats a constant.
    /// </summary>
    public RuleTableBuilder PiecewiseConstant(string op, Func<Tensor[], Tensor> f, bool broadcasts = false) =>
        Add(new OpRule(op, OpKind.Constant, c => [new Dual(f(Enumerable.Range(0, c.InputCount).Select(i => c.In(i).Value).ToArray()), null)], OpRule.NoVjp)
        {
            Curvature = OpRule.Linear,
            Allocates = broadcasts ? c => Sizes.Elements(Shapes.Broadcast(c.In(0).Shape, c.In(1).Shape)) : null,
        });

    /// <summary>
    /// A linear op in its first input: the tangent goes through the same map with axes shifted past the basis axis,
    /// the cotangent through its transpose (given as a function of the context and the cotangent).
    /// </summary>
    public RuleTableBuilder Linear(string op, OpKind kind, Func<OpContext, Tensor, Tensor> f, Func<OpContext, Tensor, Tensor, Tensor> onTangent,
        Func<VjpContext, Tensor, Tensor> transpose, Func<Onnx.GraphNode, int, string?>? validate = null, Compiled.CompiledRule? compiled = null, int since = 0) =>
        Add(new OpRule(op, kind,
            c =>
            {
                var x = c.In(0);
                var y = f(c, x.Value);
                return [new Dual(y, x.Tangent is null ? null : onTangent(c, x.Tangent, y))];
            },
            c => [c.Cotangent(0) is { } ct && c.Needs(0) ? transpose(c, ct) : null])
        { Since = since, Validate = validate ?? ((_, _) => null), NonDifferentiableInputs = Enumerable.Range(1, 4).ToArray(), Curvature = OpRule.Linear, Compiled = compiled });

    /// <summary>A linear op whose output is its input reshaped: the tangent is reshaped to [K, ..y.shape], the cotangent back.</summary>
    public RuleTableBuilder Reshaping(string op, Func<OpContext, Tensor, Tensor> f) =>
        Linear(op, OpKind.Shape, f, (_, t, y) => t.reshape(Tangents.WithBasis(t.size(0), y.Dims())),
            (c, ct) => ct.reshape(Tangents.WithBasis(ct.size(0), c.In(0).Dims())), compiled: Compiled.CompiledRules.Reshaping);

    /// <summary>
    /// Elementwise binary op with NumPy broadcasting: tangent = Ta * dy/da + Tb * dy/db. The second partials (null where
    /// zero) give the second-order term d²y/da² Ga⊗Ga + d²y/dadb (Ga⊗Gb + Gb⊗Ga) + d²y/db² Gb⊗Gb.
    /// </summary>
    public RuleTableBuilder Binary(string op, Func<OpContext, Tensor, Tensor, Tensor> f, Partial da, Partial db,
        Partial? daa = null, Partial? dab = null, Partial? dbb = null, (Compiled.CompiledRules.Partial Da, Compiled.CompiledRules.Partial Db)? compiled = null) =>
        Add(new OpRule(op, OpKind.ElementwiseBinary,
            c =>
            {
                var a = c.In(0);
                var b = c.In(1);
                var shape = Shapes.Broadcast(a.Shape, b.Shape);
                var y = f(c, a.Value, b.Value);
                if (a.Tangent is null && b.Tangent is null) return [new Dual(y, null)];
                var t = Tangents.Sum(Term(a.Tangent, da, a.Value, b.Value, y), Term(b.Tangent, db, a.Value, b.Value, y));
                return [new Dual(y, Tangents.Fit(t!, shape))];
            },
            c =>
            {
                if (c.Cotangent(0) is not { } ct) return [null, null];
                Tensor a = c.In(0), b = c.In(1), y = c.Out(0);
                return [c.Needs(0) ? Tangents.Unbroadcast(Term(ct, da, a, b, y)!, a.Dims()) : null,
                        c.Needs(1) ? Tangents.Unbroadcast(Term(ct, db, a, b, y)!, b.Dims()) : null];
            })
        {
            Curvature = daa is null && dab is null && dbb is null ? OpRule.Linear : c => [BinaryCurvature(c, daa, dab, dbb)],
            Curves = d => (daa is not null && d[0]) || (dab is not null && d[0] && d[1]) || (dbb is not null && d[1]),
            // [N, 1] and [1, N] broadcast to N².
            Allocates = c => Sizes.Elements(Shapes.Broadcast(c.In(0).Shape, c.In(1).Shape)),
            Compiled = compiled is { } partials ? Compiled.CompiledRules.Binary(partials.Da, partials.Db) : null,
        });

    private static Tensor? BinaryCurvature(CurvatureContext c, Partial? daa, Partial? dab, Partial? dbb)
    {
        Tensor a = c.In(0), b = c.In(1), y = c.Out(0);
        var ga = c.G(0) is { } g0 ? Tangents.Align(g0, y.dim()) : null;
        var gb = c.G(1) is { } g1 ? Tangents.Align(g1, y.dim()) : null;
        Tensor? sum = null;
        if (daa is not null && ga is not null) sum = c.Pairs(ga, ga) * daa(a, b, y);
        if (dab is not null && ga is not null && gb is not null) sum = Tangents.Sum(sum, c.SymmetricPairs(ga, gb) * dab(a, b, y));
        if (dbb is not null && gb is not null) sum = Tangents.Sum(sum, c.Pairs(gb, gb) * dbb(a, b, y));
        return sum;
    }

    private static Tensor? Term(Tensor? t, Partial d, Tensor a, Tensor b, Tensor y)
    {
        if (t is null) return null;
        t = Tangents.Align(t, y.dim());
        if (ReferenceEquals(d, One)) return t;
        if (ReferenceEquals(d, MinusOne)) return t.neg();
        return t * d(a, b, y);
    }
}
