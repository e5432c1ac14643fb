using System.Collections.Concurrent;
using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Core.Planning;
using static TorchSharp.torch;

namespace JacService.Core.Derivatives;

/// <summary>What every derivative mode works from: the graph, its plans, its derivative paths and the engine's limits.</summary>
internal sealed class ModelParts(ModelGraph graph, EngineLimits limits) : IDisposable
{
    private readonly ConcurrentDictionary<(int, string), DerivativePath> _paths = new();

    public ModelGraph Graph { get; } = graph;
    public EngineLimits Limits { get; } = limits;
    public PlanCache Plans { get; } = new(graph, limits);

    public long ElementSize => Graph.ComputeType == ScalarType.Float64 ? 8 : 4;

    public DerivativePath Path(int wrt, int[] of) =>
        _paths.GetOrAdd((wrt, string.Join(",", of)), _ => DerivativePath.Build(Graph, wrt, of));

    /// <summary>
    /// Directions one pass may carry so that no value's tangent (or cotangent) chunk is over
    /// <see cref="EngineLimits.LargestTemporaryBytes"/>; at least one.
    /// </summary>
    public long DirectionsPerTemporary(ExecutionPlan plan, bool[] carries) =>
        Math.Max(1, Limits.LargestTemporaryBytes / Math.Max(1, plan.LargestValueElements(carries) * ElementSize));

    /// <summary>Per-sample elements of output <paramref name="output"/> under a plan for a batch of <paramref name="batch"/>.</summary>
    public long SampleElements(ExecutionPlan plan, int output, long batch) => plan.Elements(Graph.OutputIds[output]) / batch;

    public long[] SampleShape(ExecutionPlan plan, int output) => plan.ValueShapes[Graph.OutputIds[output]]![1..];

    public void Dispose() => Plans.Dispose();
}
