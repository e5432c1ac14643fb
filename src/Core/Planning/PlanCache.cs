using System.Collections.Concurrent;
using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Core.Ops;
using static TorchSharp.torch;

namespace JacService.Core.Planning;

/// <summary>The plans of one model version, one per set of input shapes, built on first use and kept up to a limit.</summary>
internal sealed class PlanCache(ModelGraph graph, EngineLimits limits) : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<ExecutionPlan>> _plans = new();

    public PlanLease Lease(Tensor[] inputs) => Lease(inputs.Select(t => t.Dims()).ToArray());

    /// <summary>The cached plan for these shapes; past the cache limit a plan is built for this call alone.</summary>
    public PlanLease Lease(long[][] shapes)
    {
        var key = Planner.Key(shapes);
        if (_plans.TryGetValue(key, out var cached)) return new PlanLease(cached.Value, owned: false);
        if (_plans.Count >= limits.MaxCachedPlans) return new PlanLease(Build(shapes), owned: true);
        return new PlanLease(SharedEntries.GetOrCompute(_plans, key, () => Build(shapes)), owned: false);
    }

    private ExecutionPlan Build(long[][] shapes)
    {
        // Plans outlive the request that first needs them: build outside the caller's dispose scope.
        using var outer = NewDisposeScope();
        return Planner.Build(graph, shapes, limits.Model.MaxPlannedElements);
    }

    public void Dispose()
    {
        foreach (var lazy in _plans.Values.Where(l => l.IsValueCreated)) lazy.Value.Dispose();
    }
}

/// <summary>A plan lent for one call: a cached plan stays, one built past the cache limit is disposed with the lease.</summary>
internal readonly struct PlanLease(ExecutionPlan plan, bool owned) : IDisposable
{
    public ExecutionPlan Plan { get; } = plan;
    public void Dispose() { if (owned) Plan.Dispose(); }
}
