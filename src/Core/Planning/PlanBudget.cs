using JacService.Core.Onnx;
using JacService.Core.Ops;

namespace JacService.Core.Planning;

/// <summary>
/// Counts the elements of the values the planner computes (graph inputs and node outputs; initializers are bounded by
/// the tensor limits at load) and refuses, with a <see cref="PlanTooLargeException"/>, the step that would take the plan
/// over Limits:MaxPlannedElements. Ops whose result can outgrow their inputs (<see cref="OpRule.Allocates"/>) are checked
/// before they run, so an Expand or a ConstantOfShape to 10^12 elements is refused, not attempted; every other op makes
/// at most a small multiple of what its inputs hold, and is counted after it ran.
/// </summary>
internal sealed class PlanBudget
{
    private readonly long _perSample;
    private readonly long _batch;
    private readonly long _limit;

    /// <param name="perSample">The limit for one sample; a plan for a batch of <paramref name="batch"/> may hold that many times as much.</param>
    public PlanBudget(long perSample, long batch)
    {
        _perSample = perSample;
        _batch = Math.Max(1, batch);
        _limit = Sizes.Times(perSample, _batch);
    }

    public long Used { get; private set; }

    public void Input(TensorSignature input, long[] shape)
    {
        long elements = Sizes.Elements(shape);
        Add(elements, () => $"input '{input.Name}' of shape {Shapes.Text(shape)} takes {elements:N0} elements");
    }

    /// <summary>Before a node runs: its own bound, where its op has one.</summary>
    public void Before(GraphNode node, long? bound)
    {
        if (bound is { } elements) Check(elements, () => $"{node} would make {elements:N0} elements");
    }

    /// <summary>After a node ran: the elements its outputs hold.</summary>
    public void After(GraphNode node, long elements) => Add(elements, () => $"{node} made {elements:N0} elements");

    private void Add(long elements, Func<string> what)
    {
        Check(elements, what);
        Used = Sizes.Plus(Used, elements);
    }

    private void Check(long elements, Func<string> what)
    {
        long total = Sizes.Plus(Used, elements);
        if (total <= _limit) return;
        var planning = _batch == 1 ? "planning one sample" : $"planning a batch of {_batch}";
        var limit = _batch == 1 ? $"{_perSample}" : $"{_perSample} per sample ({_limit:N0} for the batch)";
        throw new PlanTooLargeException($"{planning}: {what()}, bringing the plan to {total:N0}, over Limits:MaxPlannedElements {limit}");
    }
}
