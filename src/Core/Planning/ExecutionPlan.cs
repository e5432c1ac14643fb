using JacService.Core.Onnx;
using static TorchSharp.torch;

namespace JacService.Core.Planning;

/// <summary>
/// The graph specialised to one set of input shapes: everything that does not depend on input data (constants,
/// and the Shape → Gather → Concat → Reshape sub-graphs exporters emit) is folded into constants, every value's
/// shape is known, and each step knows which values die after it.
/// </summary>
public sealed class ExecutionPlan : IDisposable
{
    /// <summary>The nodes left to run, in topological order.</summary>
    public required GraphNode[] Steps { get; init; }
    /// <summary>Initial value table by value id: initializers (owned by the graph) and folded values (owned here).</summary>
    public required Tensor?[] Constants { get; init; }
    public required long[]?[] ValueShapes { get; init; }
    /// <summary>Per step, the values produced by steps whose last use is that step.</summary>
    public required int[][] ReleaseAfter { get; init; }
    public required Tensor[] Folded { get; init; }

    public long Elements(int valueId) => ValueShapes[valueId] is { } s ? s.Aggregate(1L, (p, d) => p * d) : 0;

    /// <summary>Elements of all tangents one basis direction needs, for the steps that carry tangents.</summary>
    public long TangentElementsPerDirection(bool[] carries) =>
        Steps.Where(s => carries[s.Index]).SelectMany(s => s.Outputs).Where(o => o >= 0).Sum(Elements);

    /// <summary>Elements of the largest value a carrying step produces: what one direction of its tangent takes.</summary>
    public long LargestValueElements(bool[] carries) =>
        Steps.Where(s => carries[s.Index]).SelectMany(s => s.Outputs).Where(o => o >= 0).Select(Elements).DefaultIfEmpty(1).Max();

    /// <summary>Elements of the values marked (by value id), e.g. those the primal pass of reverse mode keeps.</summary>
    public long ElementsOf(bool[] marked) => Enumerable.Range(0, marked.Length).Where(id => marked[id]).Sum(Elements);

    public void Dispose()
    {
        foreach (var t in Folded) t.Dispose();
    }
}
