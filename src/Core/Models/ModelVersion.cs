using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using JacService.Core.Onnx;
using JacService.Core.Ops;
using JacService.Core.Planning;
using static TorchSharp.torch;

namespace JacService.Core.Models;

/// <summary>
/// One loaded model version: its validated graph and parameter set on the device (immutable), and the plans
/// built for the input shapes seen so far. Predict and Jacobian must be called on an executor thread, inside
/// that thread's dispose scope; request validation is pure managed code and can run anywhere.
/// </summary>
public sealed class ModelVersion : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<ExecutionPlan>> _plans = new();
    private readonly ConcurrentDictionary<string, bool[]> _tangentPaths = new();

    private ModelVersion(string name, int version, ModelGraph graph, EngineLimits limits)
    {
        Name = name;
        Version = version;
        Graph = graph;
        Limits = limits;
    }

    public string Name { get; }
    public int Version { get; }
    public ModelGraph Graph { get; }
    public EngineLimits Limits { get; }
    public IReadOnlyList<TensorSignature> Inputs => Graph.Inputs;
    public IReadOnlyList<TensorSignature> Outputs => Graph.Outputs;

    /// <summary>Where parameters and passes live, as telemetry reports it. Every tensor is created on the CPU today.</summary>
    public string Device => "cpu";

    /// <summary>
    /// Reads and validates the model, moves its initializers to the device, and, where every non-batch axis is
    /// static, builds the batch-1 plan so a graph that cannot evaluate fails here rather than on a request.
    /// </summary>
    public static ModelVersion Load(string name, int version, byte[] bytes, EngineLimits limits, ScalarType computeType = ScalarType.Float32)
    {
        var graph = OnnxModelReader.Read(bytes, computeType);
        var model = new ModelVersion(name, version, graph, limits);
        try
        {
            if (graph.Inputs.All(i => i.Shape.Skip(1).All(d => d > 0)))
            {
                using var scope = NewDisposeScope();
                var shapes = graph.Inputs.Select(i => i.Shape.Select((d, axis) => axis == 0 ? 1 : d).ToArray()).ToArray();
                model.PlanFor(shapes);
            }
            return model;
        }
        catch (NodeEvaluationException e)
        {
            model.Dispose();
            throw new ModelLoadException($"the graph does not evaluate for a batch of one: {e.Message}", e);
        }
    }

    // ---- Request validation (managed only) ------------------------------------------------------------------

    /// <summary>
    /// Checks names, ranks, shapes, lengths and values of the inputs and returns them in the model's input order
    /// with a leading batch axis (added when <paramref name="batched"/> is false).
    /// </summary>
    public HostTensor[] ValidateInputs(IReadOnlyDictionary<string, HostTensor> inputs, bool batched)
    {
        foreach (var name in inputs.Keys.Where(k => Graph.InputIndex(k) < 0))
            throw new InvalidRequestException($"unknown input '{name}'; model '{Name}' takes {Describe(Inputs, batched)}");

        var ordered = new HostTensor[Inputs.Count];
        long batch = -1;
        for (int i = 0; i < Inputs.Count; i++)
        {
            var sig = Inputs[i];
            if (!inputs.TryGetValue(sig.Name, out var given))
                throw new InvalidRequestException($"missing input '{sig.Name}'; model '{Name}' takes {Describe(Inputs, batched)}");
            var expected = batched ? sig.Shape : sig.Shape[1..];
            var shape = given.Shape;
            bool fits = shape.Length == expected.Length && shape.Zip(expected).All(p => p.Second < 0 ? p.First >= 1 : p.First == p.Second);
            if (!fits)
                throw new InvalidRequestException(
                    $"input '{sig.Name}': expected shape {ShapeText(expected, batched)}, got {given.ShapeText}");
            if (given.Count != given.Data.Length)
                throw new InvalidRequestException(
                    $"input '{sig.Name}': shape {given.ShapeText} needs {given.Count} values, got {given.Data.Length}");
            long b = batched ? shape[0] : 1;
            if (batch >= 0 && b != batch)
                throw new InvalidRequestException($"input '{sig.Name}' has batch size {b}, other inputs have {batch}");
            batch = b;

            CheckValues(sig, given.Data);
            ordered[i] = batched ? given : given with { Shape = [1, .. shape] };
        }
        return ordered;
    }

    /// <summary>The input to differentiate: the named one, or the only float input when the name is empty.</summary>
    public int ResolveWrt(string? wrt)
    {
        var floats = Inputs.Where(i => i.ElementType.IsFloat()).Select(i => i.Name).ToList();
        if (string.IsNullOrEmpty(wrt))
        {
            if (floats.Count == 1) return Graph.InputIndex(floats[0]);
            throw new InvalidRequestException(
                $"model '{Name}' has {floats.Count} float inputs ({string.Join(", ", floats)}); name one in 'wrt'");
        }
        int index = Graph.InputIndex(wrt);
        if (index < 0)
            throw new InvalidRequestException($"unknown wrt '{wrt}'; the model's float inputs are: {string.Join(", ", floats)}");
        if (!Inputs[index].ElementType.IsFloat())
            throw new InvalidRequestException(
                $"wrt '{wrt}' is a {Inputs[index].ElementType.OnnxName()} input; only float inputs have derivatives ({string.Join(", ", floats)})");
        return index;
    }

    /// <summary>The outputs to differentiate: the named ones, or every float output when none are named.</summary>
    public int[] ResolveOf(IReadOnlyCollection<string> of)
    {
        if (of.Count == 0 || of.All(string.IsNullOrEmpty))
            return Enumerable.Range(0, Outputs.Count).Where(i => Outputs[i].ElementType.IsFloat()).ToArray();
        var floats = string.Join(", ", Outputs.Where(o => o.ElementType.IsFloat()).Select(o => o.Name));
        return of.Where(o => o.Length > 0).Distinct().Select(name =>
        {
            int index = Graph.OutputIndex(name);
            if (index < 0) throw new InvalidRequestException($"unknown output '{name}' in 'of'; the model's float outputs are: {floats}");
            if (!Outputs[index].ElementType.IsFloat())
                throw new InvalidRequestException($"output '{name}' is {Outputs[index].ElementType.OnnxName()}; only float outputs have derivatives ({floats})");
            return index;
        }).ToArray();
    }

    private static void CheckValues(TensorSignature sig, float[] data)
    {
        bool integral = !sig.ElementType.IsFloat();
        for (int i = 0; i < data.Length; i++)
        {
            float v = data[i];
            if (!float.IsFinite(v))
                throw new InvalidRequestException(
                    $"input '{sig.Name}' holds {(float.IsNaN(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf")} at flat index {i}; inputs must be finite");
            if (integral && (v != MathF.Round(v) || (sig.ElementType == ElementType.Bool && v is not (0 or 1))))
                throw new InvalidRequestException(
                    $"input '{sig.Name}' is {sig.ElementType.OnnxName()} but holds {v} at flat index {i}");
        }
    }

    private static string ShapeText(long[] shape, bool batched) =>
        "[" + string.Join(", ", shape.Select((d, i) => d >= 0 ? d.ToString() : batched && i == 0 ? "B" : "?")) + "]";

    private static string Describe(IEnumerable<TensorSignature> signatures, bool batched) =>
        string.Join(", ", signatures.Select(s => $"{s.Name} {ShapeText(batched ? s.Shape : s.Shape[1..], batched)} {s.ElementType.OnnxName()}"));

    // ---- Execution (executor thread) -----------------------------------------------------------------------

    /// <summary>Outputs of a batch. With <paramref name="into"/>, results are written into its reused arrays.</summary>
    public EngineResult Predict(HostTensor[] inputs, ResultBuffers? into = null)
    {
        var device = ToDevice(inputs);
        using var plan = LeasePlan(device);
        var result = Evaluator.Run(Graph, plan.Plan, device);
        return new EngineResult(
            Outputs.Select((o, i) => (o.Name, ToHost(result.Values[i], into, "out:" + o.Name))).ToDictionary(p => p.Name, p => p.Item2),
            new Dictionary<string, HostTensor>());
    }

    /// <summary>Outputs and per-sample Jacobians of a batch. With <paramref name="into"/>, results reuse its arrays.</summary>
    public EngineResult Jacobian(HostTensor[] inputs, int wrt, int[] of, ResultBuffers? into = null)
    {
        var device = ToDevice(inputs);
        var (outputs, jacobians) = JacobianTensors(device, wrt, of);
        return new EngineResult(
            Outputs.Select((o, i) => (o.Name, ToHost(outputs[i], into, "out:" + o.Name))).ToDictionary(p => p.Name, p => p.Item2),
            of.Select((o, i) => (Outputs[o].Name, ToHost(jacobians[i], into, "jac:" + Outputs[o].Name))).ToDictionary(p => p.Name, p => p.Item2));
    }

    /// <summary>
    /// Per-sample Jacobians [B, ..out, ..in] of the outputs <paramref name="of"/> with respect to input
    /// <paramref name="wrt"/>: the identity basis of one sample's input is pushed through the graph as the
    /// leading tangent axis, in chunks that keep one pass under the working-memory budget.
    /// </summary>
    internal (Tensor[] Outputs, Tensor[] Jacobians) JacobianTensors(Tensor[] inputs, int wrt, int[] of)
    {
        long batch = inputs[0].shape[0];
        var carries = TangentPath(wrt, of);
        var sampleShape = inputs[wrt].shape[1..];
        long n = Shapes.Product(sampleShape);
        long elementSize = Graph.ComputeType == ScalarType.Float64 ? 8 : 4;

        using var plan = LeasePlan(inputs);
        long bytesPerDirection = Math.Max(1, plan.Plan.TangentElementsPerDirection(carries) * elementSize);
        if (bytesPerDirection > Limits.WorkingMemoryBytes && batch > 1)
            return SplitBatch(inputs, wrt, of, batch, Math.Max(1, batch * Limits.WorkingMemoryBytes / bytesPerDirection));

        long chunk = Math.Clamp(Limits.WorkingMemoryBytes / bytesPerDirection, 1, n);
        var outputs = new Tensor[Outputs.Count];
        var jacobians = of.Select(o => empty([batch, plan.Plan.Elements(Graph.OutputIds[o]) / batch, n], Graph.ComputeType)).ToArray();
        using var identity = eye(n, dtype: Graph.ComputeType);
        int wrtValue = Graph.InputIds[wrt];
        var wanted = Graph.OutputIds;

        for (long k0 = 0; k0 < n; k0 += chunk)
        {
            long k = Math.Min(chunk, n - k0);
            using var scope = NewDisposeScope();
            var seed = identity.narrow(0, k0, k).reshape([k, 1, .. sampleShape]).expand([k, batch, .. sampleShape]);
            var result = Evaluator.Run(Graph, plan.Plan, inputs, wrtValue, seed, carries, wanted);
            if (k0 == 0)
                for (int i = 0; i < outputs.Length; i++) outputs[i] = result.Values[i].MoveToOuterDisposeScope();
            for (int j = 0; j < of.Length; j++)
            {
                if (result.Tangents[of[j]] is not { } t) { jacobians[j].narrow(2, k0, k).zero_(); continue; }
                jacobians[j].narrow(2, k0, k).copy_(t.reshape(k, batch, -1).permute(1, 2, 0));
            }
        }
        var outShapes = of.Select(o => plan.Plan.ValueShapes[Graph.OutputIds[o]]![1..]).ToArray();
        return (outputs, jacobians.Select((jac, j) => jac.reshape([batch, .. outShapes[j], .. sampleShape])).ToArray());
    }

    /// <summary>Outputs only, as device tensors in the caller's scope.</summary>
    internal Tensor[] Forward(Tensor[] inputs)
    {
        using var plan = LeasePlan(inputs);
        return Evaluator.Run(Graph, plan.Plan, inputs).Values;
    }

    /// <summary>Pushes caller-given tangents <paramref name="seed"/> [K, ..input] through the whole graph.</summary>
    internal Evaluator.Result Jvp(Tensor[] inputs, int wrt, Tensor seed)
    {
        var all = Enumerable.Range(0, Outputs.Count).ToArray();
        using var plan = LeasePlan(inputs);
        return Evaluator.Run(Graph, plan.Plan, inputs, Graph.InputIds[wrt], seed, TangentPath(wrt, all));
    }

    private (Tensor[], Tensor[]) SplitBatch(Tensor[] inputs, int wrt, int[] of, long batch, long rows)
    {
        var parts = new List<(Tensor[] Outputs, Tensor[] Jacobians)>();
        for (long start = 0; start < batch; start += rows)
        {
            long count = Math.Min(rows, batch - start);
            parts.Add(JacobianTensors(inputs.Select(t => t.narrow(0, start, count)).ToArray(), wrt, of));
        }
        return (Enumerable.Range(0, Outputs.Count).Select(i => cat(parts.Select(p => p.Outputs[i]).ToArray(), 0)).ToArray(),
                Enumerable.Range(0, of.Length).Select(j => cat(parts.Select(p => p.Jacobians[j]).ToArray(), 0)).ToArray());
    }

    /// <summary>
    /// Refuses, before any work, a result over the size limit. Sizes come from the batch-1 plan, built at load for
    /// models whose non-batch axes are static (so this is managed-only for them).
    /// </summary>
    public void CheckResultSize(HostTensor[] inputs, int wrt, int[] of)
    {
        long batch = inputs[0].Shape[0];
        long perSample = ResultFloatsPerSample(inputs, wrt, of);
        long bytes = batch * perSample * sizeof(float);
        if (bytes > Limits.MaxResultBytes)
            throw new ResultTooLargeException(
                $"the result would take {bytes:N0} bytes ({batch} samples x {perSample:N0} floats), over the limit of {Limits.MaxResultBytes:N0}; " +
                "send fewer samples per request or name fewer outputs in 'of'");
    }

    /// <summary>Floats in one sample's result (all outputs plus the Jacobians of <paramref name="of"/>), from the batch-1 plan.</summary>
    public long ResultFloatsPerSample(HostTensor[] inputs, int wrt, int[] of)
    {
        var sampleShapes = inputs.Select(i => (long[])[1, .. i.Shape[1..]]).ToArray();
        long perSampleIn = Shapes.Product(inputs[wrt].Shape[1..]);
        using var scope = NewDisposeScope();
        using var plan = LeasePlan(sampleShapes);
        return Graph.OutputIds.Sum(plan.Plan.Elements) + of.Sum(o => plan.Plan.Elements(Graph.OutputIds[o]) * perSampleIn);
    }

    /// <summary>Which nodes carry tangents: those downstream of wrt and upstream of an output in of.</summary>
    internal bool[] TangentPath(int wrt, int[] of) => _tangentPaths.GetOrAdd($"{wrt}|{string.Join(",", of)}", _ =>
    {
        var nodes = Graph.Nodes;
        var dependsOnWrt = new bool[Graph.ValueCount];
        dependsOnWrt[Graph.InputIds[wrt]] = true;
        foreach (var node in nodes)
        {
            if (OpTable.Rules[node.OpType].Kind == "constant") continue;
            if (node.Inputs.Any(i => i >= 0 && dependsOnWrt[i]))
                foreach (var o in node.Outputs.Where(o => o >= 0)) dependsOnWrt[o] = true;
        }
        var feedsOf = new bool[Graph.ValueCount];
        foreach (var o in of) feedsOf[Graph.OutputIds[o]] = true;
        var carries = new bool[nodes.Length];
        for (int k = nodes.Length - 1; k >= 0; k--)
        {
            var node = nodes[k];
            if (!node.Outputs.Any(o => o >= 0 && feedsOf[o])) continue;
            foreach (var i in node.Inputs.Where(i => i >= 0)) feedsOf[i] = true;
            carries[k] = node.Inputs.Any(i => i >= 0 && dependsOnWrt[i]);
            var rule = OpTable.Rules[node.OpType];
            foreach (var i in rule.NonDifferentiableInputs.Where(i => i < node.Inputs.Length && node.Inputs[i] >= 0 && dependsOnWrt[node.Inputs[i]]))
                throw new InvalidRequestException(
                    $"derivatives with respect to '{Inputs[wrt].Name}' are not supported by this model: {node} takes its input {i} " +
                    $"('{Graph.ValueNames[node.Inputs[i]]}') from '{Inputs[wrt].Name}', and {node.OpType} is differentiable only in its data input");
        }
        return carries;
    });

    // ---- Plans ----------------------------------------------------------------------------------------------

    private readonly struct PlanLease(ExecutionPlan plan, bool owned) : IDisposable
    {
        public ExecutionPlan Plan { get; } = plan;
        public void Dispose() { if (owned) Plan.Dispose(); }
    }

    private PlanLease LeasePlan(Tensor[] inputs) => LeasePlan(inputs.Select(t => t.shape).ToArray());

    /// <summary>The cached plan for these shapes; past the cache limit a plan is built for this call alone.</summary>
    private PlanLease LeasePlan(long[][] shapes)
    {
        var key = Planner.Key(shapes);
        if (_plans.TryGetValue(key, out var cached)) return new PlanLease(cached.Value, owned: false);
        if (_plans.Count >= Limits.MaxCachedPlans) return new PlanLease(BuildPlan(shapes), owned: true);
        var lazy = _plans.GetOrAdd(key, _ => new Lazy<ExecutionPlan>(() => BuildPlan(shapes)));
        try
        {
            return new PlanLease(lazy.Value, owned: false);
        }
        catch
        {
            _plans.TryRemove(key, out _);
            throw;
        }
    }

    internal ExecutionPlan PlanFor(long[][] shapes) => LeasePlan(shapes).Plan;

    private ExecutionPlan BuildPlan(long[][] shapes)
    {
        // Plans outlive the request that first needs them: build outside the caller's dispose scope.
        using var outer = NewDisposeScope();
        var plan = Planner.Build(Graph, shapes);
        return plan;
    }

    // ---- Host <-> device ------------------------------------------------------------------------------------

    private Tensor[] ToDevice(HostTensor[] inputs) => inputs.Select((h, i) =>
    {
        var t = tensor(h.Data, h.Shape);
        var type = Inputs[i].ElementType.DeviceType(Graph.ComputeType);
        return t.dtype == type ? t : t.to_type(type);
    }).ToArray();

    private static HostTensor ToHost(Tensor t, ResultBuffers? into = null, string name = "")
    {
        var floats = t.dtype == ScalarType.Float32 ? t.contiguous() : t.to_type(ScalarType.Float32).contiguous();
        var source = MemoryMarshal.Cast<byte, float>(floats.bytes);
        if (into is null) return new HostTensor(t.shape, source.ToArray());
        var target = into.For(name, source.Length);
        source.CopyTo(target);
        return new HostTensor(t.shape, target);
    }

    public void Dispose()
    {
        foreach (var lazy in _plans.Values.Where(l => l.IsValueCreated)) lazy.Value.Dispose();
        Graph.Dispose();
    }
}
