using System.Collections.Concurrent;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace JacService.Core.Compiled;

/// <summary>
/// A model version's derivative graphs, one per (kind: a Jacobian's mode or a Vjp's directions, wrt, of, per-sample input
/// shapes), each written and loaded into ONNX Runtime the first time it is asked for and kept; where a graph cannot be
/// written or loaded, the reason is kept instead and the engine's interpreter serves that derivative (visible in
/// <see cref="Entries"/>, and through <see cref="FellBack"/> in the log and a metric).
/// </summary>
internal sealed class CompiledDerivatives(KeptModel model, ModelParts parts, SharedWeights? weights) : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<CompiledEntry>> _entries = new();

    /// <summary>Raised once per graph that could not be compiled: what, and why.</summary>
    public event Action<string, string>? FellBack;

    public IReadOnlyList<CompiledEntry> Entries =>
        _entries.Values.Where(l => l.IsValueCreated).Select(l => l.Value)
            .OrderBy(e => e.Wrt).ThenBy(e => string.Join(",", e.Of)).ThenBy(e => e.Kind).ToList();

    /// <summary>
    /// The compiled Jacobian for (wrt, of, mode) on inputs of these shapes (any batch size), or null where the interpreter
    /// serves it. Builds it on first use; past Engine:MaxCachedPlans graphs (a model whose per-sample shapes vary), new
    /// ones are not built, so a stream of new shapes cannot grow the sessions without bound.
    /// </summary>
    public CompiledDerivative? Jacobian(int wrt, int[] of, DerivativeMode mode, long[][] shapes) =>
        For($"jacobian {mode}", wrt, of, shapes, mode, null, (wrtName, ofNames, written) => ofNames
            .Select((o, j) => new CompiledDerivative.Result(DerivativeGraphWriter.JacobianPrefix + o, o, "jac:" + o, [.. written.OfSamples[j], .. written.WrtSample]))
            .ToArray());

    /// <summary>
    /// The compiled Vjp pulling <paramref name="directions"/> cotangents per sample back from of to wrt, or null. Its
    /// graph takes the cotangents as [B, T, ..out] and gives [B, T, ..wrt] (<paramref name="many"/>) or [B, ..wrt] (T = 1).
    /// </summary>
    public CompiledDerivative? Vjp(int wrt, int[] of, long directions, bool many, long[][] shapes) =>
        For(many ? $"vjp of {directions}" : "vjp", wrt, of, shapes, DerivativeMode.Reverse, directions, (wrtName, _, written) =>
            [new CompiledDerivative.Result(DerivativeGraphWriter.VjpPrefix + wrtName, wrtName, "vjp:" + wrtName, many ? [directions, .. written.WrtSample] : written.WrtSample)]);

    /// <summary>
    /// The compiled Jvp pushing <paramref name="directions"/> tangents per sample from wrt to each output in of, or null.
    /// Its graph takes the tangents as [B, T, ..wrt] and gives [B, T, ..out] per output (<paramref name="many"/>) or [B, ..out] (T = 1).
    /// </summary>
    public CompiledDerivative? Jvp(int wrt, int[] of, long directions, bool many, long[][] shapes) =>
        For(many ? $"jvp of {directions}" : "jvp", wrt, of, shapes, DerivativeMode.Forward, directions, (_, ofNames, written) => ofNames
            .Select((o, j) => new CompiledDerivative.Result(DerivativeGraphWriter.JvpPrefix + o, o, "jvp:" + o, many ? [directions, .. written.OfSamples[j]] : written.OfSamples[j]))
            .ToArray());

    /// <summary>
    /// The compiled second derivatives of each output in of with respect to wrt: one graph giving the Hessians
    /// [B, ..out, ..wrt, ..wrt] under "hess:NAME", the Laplacians [B, ..out] over <paramref name="laplacianAxes"/> (flat
    /// indices of wrt's sample; null for all of them) under "lap:NAME" and the Jacobians under "jac:NAME", of which a call
    /// takes what it asks for (<see cref="CompiledDerivative.Run"/>'s keys); null where the interpreter serves them.
    /// </summary>
    /// <remarks>
    /// One graph for all four calls, not one each: a graph read back holds its own transposed copy of each weight (four
    /// graphs of a 33 MB PINN held about 100 MB more than one).
    /// </remarks>
    public CompiledDerivative? SecondOrder(int wrt, int[] of, int[]? laplacianAxes, long[][] shapes) =>
        For(laplacianAxes is null ? "second order" : $"second order, laplacian over {Runs(laplacianAxes)}", wrt, of, shapes, DerivativeMode.Forward, null,
            (_, ofNames, written) => ofNames.SelectMany((o, j) => (CompiledDerivative.Result[])
            [
                new(SecondOrderGraph.HessianPrefix + o, "hess:" + o, "hess:" + o, [.. written.OfSamples[j], .. written.WrtSample, .. written.WrtSample]),
                new(SecondOrderGraph.LaplacianPrefix + o, "lap:" + o, "lap:" + o, written.OfSamples[j]),
                new(DerivativeGraphWriter.JacobianPrefix + o, "jac:" + o, "jac:" + o, [.. written.OfSamples[j], .. written.WrtSample]),
            ]).ToArray(),
            (wrtName, ofNames) => SecondOrderGraph.Write(model.Expanded(), parts, shapes, wrtName, ofNames, laplacianAxes));

    /// <summary>Sorted indices as runs: "0-47", "0,2,4-6".</summary>
    private static string Runs(int[] indices)
    {
        var runs = new List<string>();
        for (int start = 0; start < indices.Length;)
        {
            int end = start;
            while (end + 1 < indices.Length && indices[end + 1] == indices[end] + 1) end++;
            runs.Add(end == start ? $"{indices[start]}" : $"{indices[start]}-{indices[end]}");
            start = end + 1;
        }
        return string.Join(",", runs);
    }

    private CompiledDerivative? For(string kind, int wrt, int[] of, long[][] shapes, DerivativeMode mode, long? directions,
        Func<string, string[], DerivativeGraphWriter.Written, CompiledDerivative.Result[]> results,
        Func<string, string[], DerivativeGraphWriter.Written>? write = null)
    {
        string key = $"{kind}|{wrt}|{string.Join(",", of)}|{Planning.Planner.Key(shapes.Select(s => s[1..]).ToArray())}";
        if (_entries.TryGetValue(key, out var known)) return known.Value.Unit;
        if (_entries.Count >= parts.Limits.MaxCachedPlans) return null;
        return _entries.GetOrAdd(key, _ => new Lazy<CompiledEntry>(() => Build(kind, wrt, of, shapes, mode, directions, results, write))).Value.Unit;
    }

    private CompiledEntry Build(string kind, int wrt, int[] of, long[][] shapes, DerivativeMode mode, long? directions,
        Func<string, string[], DerivativeGraphWriter.Written, CompiledDerivative.Result[]> results, Func<string, string[], DerivativeGraphWriter.Written>? write)
    {
        var graph = parts.Graph;
        string wrtName = graph.Inputs[wrt].Name;
        string[] ofNames = of.Select(o => graph.Outputs[o].Name).ToArray();
        string note;
        try
        {
            var written = write?.Invoke(wrtName, ofNames) ?? Write(wrt, of, shapes, mode, directions);
            string[] directionInputs = directions is null ? []
                : mode == DerivativeMode.Forward ? [DerivativeGraphWriter.TangentPrefix + wrtName]
                : ofNames.Select(o => DerivativeGraphWriter.CotangentPrefix + o).ToArray();
            string[] inputs = [.. graph.Inputs.Select(i => i.Name), .. directionInputs];
            var unit = new CompiledDerivative(written, weights, inputs, graph.Outputs.Select(o => o.Name).ToArray(), results(wrtName, ofNames, written),
                parts.Limits.OnnxRuntimeThreads);
            return new CompiledEntry(kind, wrtName, ofNames, mode, "") { Unit = unit };
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
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A graph is only a faster way to the same answer: whatever stops one from being written leaves the
            // interpreter to serve, never fails the call.
            note = $"the derivative graph could not be written: {e.GetType().Name}: {e.Message}";
        }
        FellBack?.Invoke($"{kind} of {string.Join(",", ofNames)} w.r.t. {wrtName}", note);
        return new CompiledEntry(kind, wrtName, ofNames, mode, note);
    }

    /// <summary>The derivative graph for (wrt, of, mode) on inputs of these shapes; throws <see cref="NotCompilableException"/> where there is none.</summary>
    internal DerivativeGraphWriter.Written Write(int wrt, int[] of, long[][] shapes, DerivativeMode mode, long? directions)
    {
        var (foldedInts, batchAxes) = FromTwoBatches(parts, shapes);
        // The model as the reader parsed it at load: a file whose unknown fields it dropped must not fail here.
        return DerivativeGraphWriter.Write(model.Expanded(), ShapesOf(parts, shapes), foldedInts, batchAxes,
            Math.Max(2, shapes[0][0]), parts.Graph.Inputs[wrt].Name, of.Select(o => parts.Graph.Outputs[o].Name).ToArray(), mode,
            parts.Limits.MaxCompiledNodes, parts.Limits.WorkingMemoryBytes, directions);
    }

    /// <summary>
    /// Every value's shape, by name, from the plan for these inputs with a batch of at least two: a batch of one would
    /// hide which values broadcast along the batch axis. (Not always two: a model whose first axis is fixed by another
    /// input's shape has no plan for other batch sizes.)
    /// </summary>
    internal static Func<string, long[]?> ShapesOf(ModelParts parts, long[][] inputs)
    {
        var graph = parts.Graph;
        using var scope = NewDisposeScope();
        using var plan = parts.Plans.Lease(inputs.Select(s => (long[])[Math.Max(2, s[0]), .. s[1..]]).ToArray());
        var shapes = new Dictionary<string, long[]>(StringComparer.Ordinal);
        for (int id = 0; id < graph.ValueCount; id++)
            if (plan.Plan.ValueShapes[id] is { } shape) shapes[graph.ValueNames[id]] = shape;
        return name => shapes.GetValueOrDefault(name);
    }

    /// <summary>
    /// What the plans for batches of two and three tell apart, by value name; nothing where they do not build (a model
    /// whose batch another input fixes). The small batches keep the two plans cheap whatever the request's batch.
    /// <para><c>FoldedInts</c>: the small int64 values both plans fold to the same values (shape arithmetic: torch computes a
    /// head split's Slice bounds from the input's shape), which a graph that serves every batch may take as fixed.</para>
    /// <para><c>BatchAxes</c>: each value's axes whose length follows the batch. The batch is axis 0 of most values, but a
    /// seq-first layer carries it on axis 1, and a rule may then work along axis 0 (<see cref="OnnxRuleContext.SampleAxis"/>).</para>
    /// </summary>
    internal static (Func<string, long[]?> FoldedInts, Func<string, long[]?> BatchAxes) FromTwoBatches(ModelParts parts, long[][] inputs)
    {
        const int MaxElements = 64;
        var graph = parts.Graph;
        using var scope = NewDisposeScope();
        try
        {
            using var first = parts.Plans.Lease(inputs.Select(s => (long[])[2, .. s[1..]]).ToArray());
            using var second = parts.Plans.Lease(inputs.Select(s => (long[])[3, .. s[1..]]).ToArray());
            var values = new Dictionary<string, long[]>(StringComparer.Ordinal);
            var axes = new Dictionary<string, long[]>(StringComparer.Ordinal);
            for (int id = 0; id < graph.ValueCount; id++)
            {
                if (first.Plan.ValueShapes[id] is { } p && second.Plan.ValueShapes[id] is { } q && p.Length == q.Length)
                    axes[graph.ValueNames[id]] = [.. Enumerable.Range(0, p.Length).Where(i => p[i] != q[i]).Select(i => (long)i)];
                if (first.Plan.Constants[id] is not { dtype: ScalarType.Int64 } a || a.numel() > MaxElements) continue;
                if (second.Plan.Constants[id] is not { dtype: ScalarType.Int64 } b) continue;
                long[] x = a.data<long>().ToArray(), y = b.data<long>().ToArray();
                if (x.AsSpan().SequenceEqual(y) && a.shape.AsSpan().SequenceEqual(b.shape)) values[graph.ValueNames[id]] = x;
            }
            return (name => values.GetValueOrDefault(name), name => axes.GetValueOrDefault(name));
        }
        catch (Exception e) when (e is NodeEvaluationException or PlanTooLargeException)
        {
            return (_ => null, _ => null);
        }
    }

    /// <summary>
    /// Takes a graph that ONNX Runtime loaded but failed to run out of service: the interpreter serves its derivative from
    /// now on, with the reason in <see cref="Entries"/> and <see cref="FellBack"/>. The graph itself is disposed with the
    /// version, as another call may still be running it.
    /// </summary>
    public void Fail(CompiledDerivative unit, OnnxRuntimeException e) => Fail(unit, $"ONNX Runtime failed running the derivative graph: {e.Message}");

    /// <summary>As above, for a graph that ran and gave another answer than the interpreter (<see cref="CompiledPreference"/>).</summary>
    public void Fail(CompiledDerivative unit, string why)
    {
        foreach (var (key, lazy) in _entries)
        {
            if (!lazy.IsValueCreated || !ReferenceEquals(lazy.Value.Unit, unit)) continue;
            var entry = lazy.Value;
            if (!_entries.TryUpdate(key, new Lazy<CompiledEntry>(entry with { Note = why, Unit = null }), lazy)) return;
            _failed.Add(unit);
            FellBack?.Invoke($"{entry.Kind} of {string.Join(",", entry.Of)} w.r.t. {entry.Wrt}", why);
            return;
        }
    }

    private readonly ConcurrentBag<CompiledDerivative> _failed = [];

    public void Dispose()
    {
        foreach (var entry in _entries.Values.Where(l => l.IsValueCreated)) entry.Value.Unit?.Dispose();
        foreach (var unit in _failed) unit.Dispose();
    }
}
