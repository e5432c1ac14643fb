using JacService.Core.Derivatives;
using JacService.Core.Onnx;
using JacService.Core.Onnx.Proto;
using JacService.Core.Ops;
using static TorchSharp.torch;

namespace JacService.Core.Compiled;

/// <summary>
/// Writes second derivatives as one ONNX graph by differentiating a derivative graph again, as jax.hessian is
/// jacfwd(jacrev(f)): the Jacobian's graph (reverse mode where the outputs asked for have fewer elements per sample than
/// wrt, else forward) is written in plain ONNX, read back and planned like a model file, and its forward-mode Jacobian
/// with respect to the same input written over it. That Jacobian of the Jacobian is the Hessian, [B, M·N, N] as
/// "jacobian:jacobian:NAME"; a Laplacian, "laplacian:NAME", is its trace over chosen elements of wrt, taken by nodes
/// added after it; the Jacobian is "jacobian:NAME".
/// Every op whose compiled rules emit only ops that have compiled rules themselves is covered, with no second-order
/// rule of its own; an op that emits anything else leaves the derivative to the interpreter.
/// </summary>
internal static class SecondOrderGraph
{
    public const string HessianPrefix = DerivativeGraphWriter.JacobianPrefix + DerivativeGraphWriter.JacobianPrefix;
    public const string LaplacianPrefix = "laplacian:";

    /// <summary>
    /// The graph of <paramref name="model"/>'s Hessians of each output in <paramref name="of"/> with respect to
    /// <paramref name="wrt"/>, their Laplacians over <paramref name="laplacianAxes"/> (flat indices of wrt's sample; null
    /// for all) and its Jacobians; throws <see cref="NotCompilableException"/> where there is none.
    /// </summary>
    public static DerivativeGraphWriter.Written Write(ModelProto model, ModelParts parts, long[][] shapes, string wrt, string[] of, int[]? laplacianAxes)
    {
        var limits = parts.Limits;
        long batch = Math.Max(2, shapes[0][0]);
        var shapeOf = CompiledDerivatives.ShapesOf(parts, shapes);
        long n = Shapes.Product(Known(shapeOf, wrt)[1..]);
        long m = of.Sum(o => Shapes.Product(Known(shapeOf, o)[1..]));
        var (foldedInts, batchAxes) = CompiledDerivatives.FromTwoBatches(parts, shapes);
        var first = DerivativeGraphWriter.Write(model, shapeOf, foldedInts, batchAxes, batch, wrt, of,
            m < n ? DerivativeMode.Reverse : DerivativeMode.Forward, limits.MaxCompiledNodes, limits.WorkingMemoryBytes,
            nesting: DerivativeGraphWriter.Nesting.Inner);

        // The weights the Jacobian's graph was given from the engine's tensors are read back as those tensors.
        var held = parts.Graph.InitializerByName();
        using var graph = ReadBack(() => OnnxModelReader.ReadWritten(first.Model, ScalarType.Float32, limits.Model, held));
        using var firstParts = new ModelParts(graph, limits);
        var jacobians = of.Select(o => DerivativeGraphWriter.JacobianPrefix + o).ToArray();
        var read = CompiledDerivatives.FromTwoBatches(firstParts, shapes);
        var second = DerivativeGraphWriter.Write(OnnxModelReader.Expand(first.Model, limits.Model), ReadBack(() => CompiledDerivatives.ShapesOf(firstParts, shapes)),
            read.FoldedInts, read.BatchAxes, batch, wrt, jacobians, DerivativeMode.Forward, limits.MaxCompiledNodes,
            limits.WorkingMemoryBytes, nesting: DerivativeGraphWriter.Nesting.Outer);
        var axes = laplacianAxes ?? [.. Enumerable.Range(0, (int)n)];
        return second with { OfSamples = first.OfSamples, Model = Traced(second.Model, of, first.OfSamples, n, axes) };
    }

    /// <summary>What reading or planning the Jacobian's graph gives, or why it cannot be differentiated again.</summary>
    private static T ReadBack<T>(Func<T> read)
    {
        try
        {
            return read();
        }
        catch (Exception e) when (e is ModelLoadException or NodeEvaluationException or PlanTooLargeException)
        {
            throw new NotCompilableException($"the Jacobian's graph does not read back as a model: {e.Message}");
        }
    }

    private static long[] Known(Func<string, long[]?> shapeOf, string value) =>
        shapeOf(value) ?? throw new NotCompilableException($"the shape of '{value}' is not known ahead of a request");

    /// <summary>The Hessians [B, M·N, N] summed along their diagonal over <paramref name="axes"/>: [B, M] as "laplacian:NAME", beside them.</summary>
    private static ModelProto Traced(ModelProto model, string[] of, long[][] ofSamples, long n, int[] axes)
    {
        var graph = model.Graph;
        var emit = new OnnxEmitter(graph, OnnxModelReader.DefaultOpset(model), _ => null, _ => null, _ => null, "jac3/");
        var diagonal = emit.Ints([.. axes.Select(i => i * n + i)]);
        for (int j = 0; j < of.Length; j++)
        {
            string hessian = HessianPrefix + of[j];
            var flat = emit.Op("Reshape", hessian, emit.Ints(0, Shapes.Product(ofSamples[j]), n * n));
            var picked = emit.Op("Gather", [flat, diagonal], OnnxEmitter.Int("axis", 2));
            var trace = emit.Op("ReduceSum", [picked, emit.Ints(2)], OnnxEmitter.Int("keepdims", 0));
            emit.Append(new NodeProto { OpType = "Identity", Name = LaplacianPrefix + of[j], Input = { trace }, Output = { LaplacianPrefix + of[j] } });
            graph.Output.Add(OnnxEmitter.FloatValue(LaplacianPrefix + of[j]));
        }
        return model;
    }
}
