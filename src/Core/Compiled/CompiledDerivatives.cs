using System.Collections.Concurrent;
using JacService.Core.Derivatives;
using JacService.Core.Onnx.Proto;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace JacService.Core.Compiled;

/// <summary>
/// A model version's derivative graphs, one per (wrt, of, mode, per-sample input shapes), each written and loaded into ONNX Runtime the first
/// time it is asked for and kept; where a graph cannot be written or loaded, the reason is kept instead and the engine's
/// interpreter serves that Jacobian (visible in <see cref="Entries"/>, and through <see cref="FellBack"/> in the log and
/// a metric).
/// </summary>
internal sealed class CompiledDerivatives(byte[] model, ModelParts parts) : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<CompiledEntry>> _entries = new();

    /// <summary>Raised once per (wrt, of, mode) whose graph could not be compiled: what, and why.</summary>
    public event Action<string, string>? FellBack;

    public IReadOnlyList<CompiledEntry> Entries =>
        _entries.Values.Where(l => l.IsValueCreated).Select(l => l.Value)
            .OrderBy(e => e.Wrt).ThenBy(e => string.Join(",", e.Of)).ThenBy(e => e.Mode).ToList();

    /// <summary>
    /// The compiled Jacobian for (wrt, of, mode) on inputs of these shapes (any batch size), or null where the interpreter
    /// serves it. Builds it on first use; past Engine:MaxCachedPlans graphs (a model whose per-sample shapes vary), new
    /// ones are not built, so a stream of new shapes cannot grow the sessions without bound.
    /// </summary>
    public CompiledJacobian? For(int wrt, int[] of, DerivativeMode mode, long[][] shapes)
    {
        string key = $"{wrt}|{string.Join(",", of)}|{mode}|{Planning.Planner.Key(shapes.Select(s => s[1..]).ToArray())}";
        if (_entries.TryGetValue(key, out var known)) return known.Value.Unit;
        if (_entries.Count >= parts.Limits.MaxCachedPlans) return null;
        return _entries.GetOrAdd(key, _ => new Lazy<CompiledEntry>(() => Build(wrt, of, mode, shapes))).Value.Unit;
    }

    private CompiledEntry Build(int wrt, int[] of, DerivativeMode mode, long[][] shapes)
    {
        var graph = parts.Graph;
        string wrtName = graph.Inputs[wrt].Name;
        string[] ofNames = of.Select(o => graph.Outputs[o].Name).ToArray();
        string note;
        try
        {
            var written = DerivativeGraphWriter.Write(ModelProto.Parser.ParseFrom(model), ShapesOf(shapes), wrtName, ofNames, mode);
            var unit = new CompiledJacobian(written, graph.Inputs.Select(i => i.Name).ToArray(), graph.Outputs.Select(o => o.Name).ToArray(), ofNames, mode);
            return new CompiledEntry(wrtName, ofNames, mode, "") { Unit = unit };
        }
        catch (NotCompilableException e)
        {
            note = e.Message;
        }
        catch (Exception e) when (e is NodeEvaluationException or PlanTooLargeException)
        {
            note = $"the plan for a batch of two or more does not build: {e.Message}";
        }
        catch (OnnxRuntimeException e)
        {
            note = $"ONNX Runtime refused the derivative graph: {e.Message}";
        }
        FellBack?.Invoke($"jacobian {mode} of {string.Join(",", ofNames)} w.r.t. {wrtName}", note);
        return new CompiledEntry(wrtName, ofNames, mode, note);
    }

    /// <summary>
    /// Every value's shape, by name, from the plan for these inputs with a batch of at least two: a batch of one would
    /// hide which values broadcast along the batch axis.
    /// </summary>
    private Func<string, long[]?> ShapesOf(long[][] inputs)
    {
        var graph = parts.Graph;
        using var scope = NewDisposeScope();
        using var plan = parts.Plans.Lease(inputs.Select(s => (long[])[Math.Max(2, s[0]), .. s[1..]]).ToArray());
        var shapes = new Dictionary<string, long[]>(StringComparer.Ordinal);
        for (int id = 0; id < graph.ValueCount; id++)
            if (plan.Plan.ValueShapes[id] is { } shape) shapes[graph.ValueNames[id]] = shape;
        return name => shapes.GetValueOrDefault(name);
    }

    public void Dispose()
    {
        foreach (var entry in _entries.Values.Where(l => l.IsValueCreated)) entry.Value.Unit?.Dispose();
    }
}
