using JacService.Core.Onnx;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>Forward value and JVP of one node, computed together (as JAX's jvp rules do).</summary>
public delegate Dual[] OpApply(OpContext c);

/// <summary>Cotangents of a node's inputs from its outputs' cotangents (null for inputs not needed or not reached).</summary>
public delegate Tensor?[] OpVjp(VjpContext c);

/// <summary>
/// The part of a node's second-order directions its JVP rule misses: per output, [P, ..output] (broadcastable), or
/// null where it is zero. The JVP rule, run on the whole tangent [G; S], already gives f'·S; this adds f''[G, G].
/// </summary>
public delegate Tensor?[] OpCurvature(CurvatureContext c);

/// <summary>One row of the op table: everything the engine needs to know about an op.</summary>
public sealed record OpRule(string OpType, OpKind Kind, OpApply Apply, OpVjp Vjp)
{
    /// <summary>
    /// The first opset whose default domain defines the op: a model importing an older one is refused, as ONNX Runtime
    /// refuses it (LayerNormalization arrived in 17, Gelu in 20).
    /// </summary>
    public int Since { get; init; }

    /// <summary>Load-time checks of attributes and outputs; returns the problem, or null.</summary>
    public Func<GraphNode, int, string?> Validate { get; init; } = (_, _) => null;

    /// <summary>Inputs a tangent may not flow into (weights of Conv, statistics of BatchNorm ...).</summary>
    public int[] NonDifferentiableInputs { get; init; } = [];

    /// <summary>
    /// For an op whose result can hold many more elements than its inputs (broadcasts, products, Expand, Pad, padded
    /// windows): an upper bound on the elements it allocates, from its inputs' shapes, its attributes and small shape
    /// inputs, computed without allocating so the planner can refuse a blowup before attempting it (PlanBudget). Null
    /// for ops that make at most a small multiple of what their inputs hold (AllocationBoundTests checks both kinds).
    /// </summary>
    public Func<OpContext, long>? Allocates { get; init; }

    /// <summary>The output depends on the shapes of the inputs only, never on their data (folded into the plan).</summary>
    public bool ShapeOnly { get; init; }

    /// <summary>
    /// The op's second-order rule: <see cref="Linear"/> for ops linear (or piecewise linear) in their differentiable
    /// inputs, whose JVP rule is already exact on second-order directions; null for an op second derivatives are
    /// refused through.
    /// </summary>
    public OpCurvature? Curvature { get; init; }

    /// <summary>
    /// Whether the curvature term can be other than zero when the inputs marked (by position) depend on wrt: a product
    /// curves only where two of its factors do, a quotient by a constant not at all. The contracted Hessian checks the
    /// layout of the nodes that curve only. By default, whenever any input depends on wrt.
    /// </summary>
    public Func<bool[], bool> Curves { get; init; } = dependent => dependent.Any(d => d);

    /// <summary>
    /// For an elementwise op of one input, y = f(x): its f'' from the context, x and y. Its curvature term is then
    /// f'' ⊙ (G ⊗ G), and a Hessian contracted with cotangents needs no pairs: per sample it is Gᵀ diag(C ⊙ f'') G.
    /// </summary>
    public Func<OpContext, Tensor, Tensor, Tensor>? SecondDerivative { get; init; }

    /// <summary>
    /// The op's JVP and VJP as ONNX nodes, for the derivative graphs ONNX Runtime runs (Engine:CompileDerivatives); null
    /// for an op whose graphs fall back to the interpreter.
    /// </summary>
    internal Compiled.CompiledRule? Compiled { get; init; }

    /// <summary>No second-order term: the op is linear, or linear between kinks, in its differentiable inputs.</summary>
    public static readonly OpCurvature Linear = c => [];

    /// <summary>For Constant-kind rows, which have no derivative to take.</summary>
    public static readonly OpVjp NoVjp = c => new Tensor?[c.InputCount];
}
