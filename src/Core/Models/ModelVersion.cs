using JacService.Core.Compiled;
using JacService.Core.Derivatives;
using JacService.Core.Graphs;
using JacService.Core.Onnx;
using JacService.Core.Ops;
using JacService.Core.Planning;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace JacService.Core.Models;

/// <summary>
/// One loaded model version: its validated graph and parameter set on the device (immutable), its plans, and the
/// derivative modes over them. Predict, Jacobian, Jvp and Vjp must be called on an executor thread, inside that
/// thread's dispose scope; request validation (<see cref="Requests"/>) is managed code and can run anywhere.
/// </summary>
public sealed class ModelVersion : IDisposable
{
    private readonly ModelParts _parts;
    private readonly ForwardMode _forward;
    private readonly ReverseMode _reverse;
    private readonly AutoMode _auto;
    private readonly SecondOrderMode _secondOrder;
    private OnnxRuntimeForward? _onnxRuntime;
    private CompiledDerivatives? _compiled;
    // Read by the two above's sessions, so freed after them.
    private SharedWeights? _weights;
    private readonly CompiledPreference _preference;
    private CapturedPasses _passes;

    private ModelVersion(string name, int version, ModelGraph graph, EngineLimits limits, ModelVersion? replicaOf)
    {
        Name = name;
        Version = version;
        Graph = graph;
        Outputs = graph.Outputs;
        Limits = limits;
        Requests = new RequestValidator(name, graph);
        _parts = new ModelParts(graph, limits);
        _forward = new ForwardMode(_parts);
        _reverse = new ReverseMode(_parts);
        _auto = new AutoMode(_parts, _forward, _reverse, sharing: replicaOf?._auto, compiled: Compiled, failed: (unit, e) => _compiled?.Fail(unit, e));
        _secondOrder = new SecondOrderMode(_parts);
        _preference = new CompiledPreference(limits.CalibrateAuto, limits.CheckAgainstInterpreter);
        _passes = Passes(limits.CudaGraphs ? new CudaGraphRecorder(ComputeDevices.CudaIndex(limits.Device)) : null);
    }

    public string Name { get; }
    public int Version { get; }
    public ModelGraph Graph { get; }

    /// <summary>What <see cref="GraphRewrites"/> changed in the file's graph, a line each (Engine:GraphRewrites).</summary>
    public IReadOnlyList<string> Rewrites { get; private init; } = [];
    public EngineLimits Limits { get; }
    public RequestValidator Requests { get; }
    public IReadOnlyList<TensorSignature> Inputs => Graph.Inputs;
    /// <summary>
    /// The outputs as the file declares them, with each per-sample axis the file leaves open (an exporter that could not
    /// infer it through, say, a Resize to computed sizes) filled in from the batch-1 plan where every input's is static.
    /// </summary>
    public IReadOnlyList<TensorSignature> Outputs { get; private set; }

    /// <summary>Where parameters and passes live ("cpu", "cuda:0"), as GetModel and telemetry report it.</summary>
    public string Device => Limits.Device;

    /// <summary>
    /// What serves Predict: "onnxruntime" (see OnnxRuntimeForward; the engine may serve some batch sizes,
    /// <see cref="PredictChoices"/>) or "engine" (the interpreter, which every derivative uses).
    /// </summary>
    public string PredictRuntime => _onnxRuntime is null ? "engine" : "onnxruntime";

    /// <summary>Where ONNX Runtime serves Predict, which of it and the engine serves each batch size seen so far (<see cref="Predict"/>).</summary>
    public IReadOnlyList<PredictChoice> PredictChoices => _onnxRuntime is { } ort
        ? _preference.ChoicesOf(ort).Select(c => new PredictChoice(c.Batch, c.Compiled ? "onnxruntime" : "engine", c.CompiledUs, c.InterpreterUs,
            Timed: c.CompiledUs > 0 || c.InterpreterUs > 0)).ToArray()
        : [];

    /// <summary>Why Predict runs in the engine although Engine:PredictWithOnnxRuntime is on; empty otherwise.</summary>
    public string PredictRuntimeNote { get; private set; } = "";

    /// <summary>(why) once, when ONNX Runtime's Predict disagreed with the engine's and the engine serves Predict from then on.</summary>
    public event Action<string>? PredictFellBackToEngine;

    /// <summary>Whether passes are recorded as CUDA graphs (Engine:CudaGraphs on a GPU), how many are, and which run eagerly and why.</summary>
    public (bool Enabled, int Recorded, IReadOnlyList<(string Pass, string Reason)> Fallbacks) Graphs =>
        (_passes.Enabled, _passes.Recorded, _passes.Fallbacks);

    /// <summary>(pass, reason) once per pass that could not be recorded as a graph and runs eagerly from then on.</summary>
    public event Action<string, string>? PassFellBackToEager;

    /// <summary>Replaces how passes are recorded (tests: a CPU stand-in for CUDA graphs). Before the first pass only.</summary>
    internal void RecordPassesWith(IGraphRecorder recorder)
    {
        _passes.Dispose();
        _passes = Passes(recorder);
    }

    /// <summary>This version's graph bookkeeping over <paramref name="recorder"/> (none: every pass eager), its fallbacks reported.</summary>
    private CapturedPasses Passes(IGraphRecorder? recorder)
    {
        var passes = new CapturedPasses(recorder, Limits.MaxCachedPlans);
        passes.CaptureFailed += (key, reason) => PassFellBackToEager?.Invoke(key, reason);
        return passes;
    }

    /// <summary>Derivative graphs asked for so far (Jacobians per mode, Vjp per directions; per wrt, of and shapes): whether each runs compiled, or why not.</summary>
    public IReadOnlyList<CompiledEntry> CompiledDerivatives => _compiled?.Entries ?? [];

    /// <summary>Why no derivative of this version runs compiled (Engine:CompileDerivatives off, a GPU, non-float32 tensors); empty otherwise.</summary>
    public string CompiledDerivativesNote { get; private set; } = "";

    /// <summary>(what, why) once per derivative graph that could not be compiled, whose derivatives the interpreter serves from then on.</summary>
    public event Action<string, string>? DerivativeFellBackToEngine;

    /// <summary>What AUTO has chosen so far, per wrt, of and batch size.</summary>
    public IReadOnlyList<DerivativeChoice> DerivativeChoices => _auto.Choices;

    /// <summary>
    /// Takes over what AUTO chose on <paramref name="predecessor"/> when both files differ in their weights only (the
    /// same structure: the same plans and the same costs); returns how many choices were taken, 0 for another structure.
    /// </summary>
    public int AdoptDerivativeChoices(string predecessorStructure, IEnumerable<DerivativeChoice> predecessor) =>
        predecessorStructure == Graph.Structure ? _auto.Adopt(predecessor) : 0;

    /// <summary>
    /// Reads model.onnx, refusing a file over Limits:MaxModelFileMiB before reading it, then <see cref="Load"/>s it.
    /// </summary>
    public static ModelVersion LoadFile(string name, int version, string path, EngineLimits limits, ScalarType computeType = ScalarType.Float32) =>
        Load(name, version, ReadFile(path, limits), limits, computeType);

    /// <summary>The bytes of model.onnx, refused before reading when it is not a regular file or is over Limits:MaxModelFileMiB.</summary>
    public static byte[] ReadFile(string path, EngineLimits limits)
    {
        // Before the open: opening a named pipe waits for a writer, which would hold this load (and the loader) forever.
        if (RegularFile.WhatElse(path) is { } other)
            throw new ModelLoadException($"the model file is {other}, not a regular file; refused without opening it");
        byte[] bytes;
        using (var file = File.OpenRead(path))
        {
            // The length of the open file: one replaced after a size check by path could be any size.
            long length = file.Length;
            if (length > limits.Model.MaxFileBytes)
                throw new ModelLoadException($"the model has {length:N0} bytes, over Limits:MaxModelFileMiB ({limits.Model.MaxFileBytes:N0} bytes)");
            bytes = new byte[length];
            file.ReadExactly(bytes);
        }
        return bytes;
    }

    /// <summary>
    /// Reads, checks against <see cref="EngineLimits.Model"/> and validates the model, and moves its initializers to the
    /// device. Where every non-batch axis is static it builds the batch-1 plan, so a graph that cannot evaluate (or would
    /// plan over Limits:MaxPlannedElements) fails here rather than on a request; otherwise it evaluates the part that
    /// depends on no input under that limit. Only then does ONNX Runtime, which folds constants itself, see the file.
    /// </summary>
    /// <remarks>
    /// With <paramref name="replicaOf"/> this is that version's replica on <see cref="EngineLimits.Device"/> (the calling
    /// thread bound to it): its own parameters and plans there, AUTO's choices shared with it.
    /// </remarks>
    public static ModelVersion Load(string name, int version, byte[] bytes, EngineLimits limits, ScalarType computeType = ScalarType.Float32,
        ModelVersion? replicaOf = null) => Load(name, version, bytes, bytes, limits, computeType, replicaOf);

    /// <summary>
    /// Tests: a version whose ONNX Runtime sessions (Predict's, the derivative graphs') read <paramref name="onnxRuntimeBytes"/>
    /// while the engine reads <paramref name="bytes"/>: a model of the same inputs and outputs and other weights stands for
    /// a fault that makes them compute something else.
    /// </summary>
    internal static ModelVersion LoadMismatched(string name, byte[] bytes, byte[] onnxRuntimeBytes, EngineLimits limits) =>
        Load(name, 1, bytes, onnxRuntimeBytes, limits, ScalarType.Float32, null);

    private static ModelVersion Load(string name, int version, byte[] bytes, byte[] onnxRuntimeBytes, EngineLimits limits, ScalarType computeType,
        ModelVersion? replicaOf)
    {
        // Parsed once for the engine, the shared weights and the kept model: each parse of a large file is as many bytes
        // freshly allocated and copied.
        var file = OnnxModelReader.ParseAsWritten(bytes, limits.Model);
        var graph = OnnxModelReader.ReadParsed(file, computeType, limits.Model);
        var rewrites = new List<string>();
        if (limits.RewriteGraph)
        {
            try
            {
                graph = GraphRewrites.Apply(graph, rewrites);
            }
            catch
            {
                graph.Dispose();
                throw;
            }
        }
        var model = new ModelVersion(name, version, graph, limits, replicaOf) { Rewrites = rewrites };
        bool staticShapes = graph.Inputs.All(i => i.Shape.Skip(1).All(d => d > 0));
        try
        {
            if (staticShapes)
            {
                using var scope = NewDisposeScope();
                using var plan = model._parts.Plans.Lease(SampleShapes(graph.Inputs.Select(i => i.Shape).ToArray()));
                // What the graph computes fills the axes the file leaves open, and replaces a declaration it contradicts
                // (torch 1.13 declares a scripted loop's output with a rank too many).
                model.Outputs = graph.Outputs.Select((o, i) => plan.Plan.ValueShapes[graph.OutputIds[i]] is { } planned
                    && (o.Shape.Length != planned.Length || o.Shape.Skip(1).Zip(planned.Skip(1)).Any(p => p.First != p.Second))
                        ? o with { Shape = [o.Shape.Length > 0 ? o.Shape[0] : -1, .. planned.Skip(1)] }
                        : o).ToList();
            }
            else
            {
                Planner.CheckConstants(graph, limits.Model.MaxPlannedElements);
            }
            model.CompiledDerivativesNote = !limits.CompileDerivatives ? "Engine:CompileDerivatives is off, or the device is a GPU"
                : computeType != ScalarType.Float32 ? "the engine computes in float64"
                : graph.Inputs.Concat(graph.Outputs).FirstOrDefault(t => t.ElementType != ElementType.Float) is { } notFloat
                    ? $"'{notFloat.Name}' is {notFloat.ElementType.OnnxName()}; derivative graphs are compiled for float32 inputs and outputs only"
                : "";
            // The sessions read the engine's own tensors where they hold the file's values (a copy where a rewrite changed
            // one), and share ONNX Runtime's packed copies; the file kept for writing derivative graphs leaves those
            // weights to the same tensors.
            Func<string, Tensor?>? held = null;
            var sessionsFile = ReferenceEquals(onnxRuntimeBytes, bytes) ? file : OnnxModelReader.ParseAsWritten(onnxRuntimeBytes, limits.Model);
            if (model.CompiledDerivativesNote.Length == 0 && limits.ShareWeights)
            {
                held = graph.InitializerByName();
                model._weights = SharedWeights.TryFrom(sessionsFile, limits.Model, held);
            }
            if (limits.PredictWithOnnxRuntime)
            {
                model._onnxRuntime = OnnxRuntimeForward.TryCreate(onnxRuntimeBytes, graph, model._weights, limits.OnnxRuntimeThreads, limits.Model, out var reason);
                model.PredictRuntimeNote = reason;
            }
            if (model.CompiledDerivativesNote.Length == 0)
            {
                model._compiled = new CompiledDerivatives(KeptModel.From(sessionsFile, limits.Model, held), model._parts, model._weights);
                model._compiled.FellBack += (what, why) => model.DerivativeFellBackToEngine?.Invoke(what, why);
            }
            return model;
        }
        catch (NodeEvaluationException e)
        {
            model.Dispose();
            throw new ModelLoadException($"the graph does not evaluate{(staticShapes ? " for a batch of one" : "")}: {e.Message}", e);
        }
        catch (PlanTooLargeException e)
        {
            model.Dispose();
            throw new ModelLoadException(e.Message, e);
        }
    }

    // ---- Request validation (managed only) ------------------------------------------------------------------

    public HostTensor[] ValidateInputs(IReadOnlyDictionary<string, HostTensor> inputs, bool batched) => Requests.ValidateInputs(inputs, batched);

    public int ResolveWrt(string? wrt) => Requests.ResolveWrt(wrt);

    public int[] ResolveOf(IReadOnlyCollection<string> of) => Requests.ResolveOf(of);

    /// <summary>Per-sample shape of output <paramref name="output"/> for these inputs, from the batch-1 plan.</summary>
    public long[] OutputSampleShape(HostTensor[] inputs, int output) => FromSamplePlan(inputs, plan => _parts.SampleShape(plan, output));

    /// <summary>
    /// Refuses, before any work, a result over the size limit, else returns its bytes. Sizes come from the batch-1 plan, built at load for
    /// models whose non-batch axes are static (so this is managed-only for them). <paramref name="directions"/> is
    /// null for a Jacobian, else the directions per sample of a Jvp (per output) or a Vjp (per wrt).
    /// </summary>
    public long CheckResultSize(HostTensor[] inputs, int wrt, int[] of, long? directions = null, bool vjp = false)
    {
        long perSample = FromSamplePlan(inputs, plan =>
        {
            CheckEntries(plan, inputs, wrt, of);
            return ResultFloats(plan, inputs, wrt, of, directions, vjp);
        });
        return WithinResultLimit(inputs[0].Shape[0], perSample, "the result", "send fewer samples per request or name fewer outputs in 'of'");
    }

    /// <summary>
    /// Refuses, before any work, Predict outputs over the size limit, else returns their bytes. A decoder's outputs may
    /// be thousands of times its inputs: without this, a request of a few kilobytes could make the pass allocate
    /// gigabytes.
    /// </summary>
    public long CheckOutputSize(HostTensor[] inputs)
    {
        long perSample = FromSamplePlan(inputs, plan => Graph.OutputIds.Sum(plan.Elements));
        return WithinResultLimit(inputs[0].Shape[0], perSample, "the outputs", "send fewer samples per request");
    }

    /// <summary>The bytes of <paramref name="batch"/> samples of <paramref name="perSample"/> floats, refused over Limits:MaxResponseMiB.</summary>
    private long WithinResultLimit(long batch, long perSample, string what, string advice)
    {
        long bytes = batch * perSample * sizeof(float);
        if (bytes > Limits.MaxResultBytes)
            throw new ResultTooLargeException(
                $"{what} would take {bytes:N0} bytes ({batch} samples x {perSample:N0} floats), over the limit of {Limits.MaxResultBytes:N0}; {advice}");
        return bytes;
    }

    /// <summary>
    /// Refuses a derivative without entries: wrt, or every output asked for, empty per sample (a zero-length axis a
    /// request may give a dynamic axis). The passes have no direction to push or pull there.
    /// </summary>
    private void CheckEntries(ExecutionPlan plan, HostTensor[] inputs, int wrt, int[] of)
    {
        if (Shapes.Product(inputs[wrt].Shape[1..]) == 0)
            throw new InvalidRequestException(
                $"input '{Inputs[wrt].Name}' {Shapes.Text(inputs[wrt].Shape)} holds no values per sample: a derivative with respect to it has no entries");
        if (of.All(o => plan.Elements(Graph.OutputIds[o]) == 0))
            throw new InvalidRequestException(
                $"the outputs asked for ({string.Join(", ", of.Select(o => Outputs[o].Name))}) hold no values per sample for these inputs: their derivatives have no entries");
    }

    /// <summary>
    /// Floats in one sample's result: all outputs, plus per direction the outputs in <paramref name="of"/> (or, for a
    /// Vjp, wrt). A Jacobian is the case of one direction per element of wrt.
    /// </summary>
    public long ResultFloatsPerSample(HostTensor[] inputs, int wrt, int[] of, long? directions = null, bool vjp = false) =>
        FromSamplePlan(inputs, plan => ResultFloats(plan, inputs, wrt, of, directions, vjp));

    private long ResultFloats(ExecutionPlan plan, HostTensor[] inputs, int wrt, int[] of, long? directions, bool vjp)
    {
        long inSize = Shapes.Product(inputs[wrt].Shape[1..]);
        long perDirection = vjp ? inSize : of.Sum(o => plan.Elements(Graph.OutputIds[o]));
        return Graph.OutputIds.Sum(plan.Elements) + (directions ?? inSize) * perDirection;
    }

    /// <summary>
    /// Refuses, before any work, second derivatives through an op that has no second-order rule, naming the op and
    /// its node (INVALID_ARGUMENT); ops on the path from wrt to of are the only ones that matter.
    /// </summary>
    public void CheckSecondOrder(int wrt, int[] of)
    {
        var path = _parts.Path(wrt, of);
        var refused = Graph.Nodes.Where(node => path.Carries[node.Index] && OpTable.Rules[node.OpType].Curvature is null).ToList();
        if (refused.Count > 0)
            throw new InvalidRequestException(
                $"second derivatives of this model are not supported: {string.Join(", ", refused)} " +
                $"{(refused.Count == 1 ? "lies" : "lie")} between '{Inputs[wrt].Name}' and the outputs asked for, and " +
                $"{string.Join(", ", refused.Select(n => n.OpType).Distinct())} {(refused.Count == 1 ? "has" : "have")} no second-order rule");
    }

    /// <summary>
    /// Refuses, before any work, a Hessian or Laplacian result over the size limit (a Hessian grows with the square of
    /// wrt's size), else returns its bytes.
    /// </summary>
    public long CheckSecondOrderSize(HostTensor[] inputs, int wrt, int[] of, SecondOrderKind kind, bool includeJacobian)
    {
        long perSample = FromSamplePlan(inputs, plan =>
        {
            CheckEntries(plan, inputs, wrt, of);
            return SecondOrderFloats(plan, inputs, wrt, of, kind, includeJacobian);
        });
        return WithinResultLimit(inputs[0].Shape[0], perSample, $"the {(kind == SecondOrderKind.Hessian ? "Hessian" : "Laplacian")} result",
            "send fewer samples per request or name fewer outputs in 'of'");
    }

    /// <summary>Floats in one sample's second-order result: all outputs, per output in of its Hessian (in² each) or Laplacian, and optionally its Jacobian.</summary>
    public long SecondOrderFloatsPerSample(HostTensor[] inputs, int wrt, int[] of, SecondOrderKind kind, bool includeJacobian) =>
        FromSamplePlan(inputs, plan => SecondOrderFloats(plan, inputs, wrt, of, kind, includeJacobian));

    private long SecondOrderFloats(ExecutionPlan plan, HostTensor[] inputs, int wrt, int[] of, SecondOrderKind kind, bool includeJacobian)
    {
        long inSize = Shapes.Product(inputs[wrt].Shape[1..]);
        long ofSize = of.Sum(o => plan.Elements(Graph.OutputIds[o]));
        long perOutputElement = (kind == SecondOrderKind.Hessian ? checked(inSize * inSize) : 1) + (includeJacobian ? inSize : 0);
        return Graph.OutputIds.Sum(plan.Elements) + checked(ofSize * perOutputElement);
    }

    /// <summary>Reads the plan for one sample of these inputs' shapes (cached; built at load for static shapes).</summary>
    /// <remarks>
    /// Request validation calls this on gRPC threads, and a plan not cached yet is built there, on this version's
    /// device: with several GPUs the thread is bound to it first (a no-op on one device or the CPU).
    /// </remarks>
    private T FromSamplePlan<T>(HostTensor[] inputs, Func<ExecutionPlan, T> read)
    {
        ComputeDevices.BindThread(Device);
        using var scope = NewDisposeScope();
        using var plan = _parts.Plans.Lease(SampleShapes(inputs.Select(i => i.Shape).ToArray()));
        return read(plan.Plan);
    }

    private static long[][] SampleShapes(long[][] shapes) => shapes.Select(s => (long[])[1, .. s[1..]]).ToArray();

    // ---- Execution (executor thread) -----------------------------------------------------------------------

    /// <summary>
    /// Outputs of a batch. With <paramref name="into"/>, results are written into its reused arrays. Where ONNX Runtime
    /// serves Predict, each batch size goes to whichever of it and the engine ran that size faster the first time
    /// (<see cref="CompiledPreference"/>, as for compiled derivative graphs; ONNX Runtime unless the engine is a quarter
    /// faster). Neither wins everywhere: ONNX Runtime is faster on most fixtures, but upsampler's Predict of 256 rows
    /// (convolutions between Resize ops) served four times the rows from the engine (docs/benchmarks.md). ONNX
    /// Runtime's first batch of one row and its first of more are checked against the engine's
    /// (Engine:CheckAgainstInterpreter); a result that disagrees retires it from Predict. A batch size the engine cannot
    /// run is ONNX Runtime's, unchecked.
    /// </summary>
    public EngineResult Predict(HostTensor[] inputs, ResultBuffers? into = null)
    {
        if (_onnxRuntime is not { } ort) return PredictInEngine(inputs, into);
        long batch = inputs[0].Shape[0];
        // A settled size allocates no closures: a small model's call takes a few microseconds.
        if (_preference.Settled(ort, batch) is { } settled) return settled ? PredictInOnnxRuntime(ort, inputs, into) : PredictInEngine(inputs, into);
        bool onnxRuntimeServes = _preference.Compiled(ort, batch, () => PredictInOnnxRuntime(ort, inputs, null), () => PredictInEngine(inputs),
            why => RetireOnnxRuntime(ort, why), out var timed);
        if (timed is not null) return timed;
        return onnxRuntimeServes ? PredictInOnnxRuntime(ort, inputs, into) : PredictInEngine(inputs, into);
    }

    private EngineResult PredictInOnnxRuntime(OnnxRuntimeForward ort, HostTensor[] inputs, ResultBuffers? into)
    {
        var outputs = ort.Run(inputs, into);
        CheckBatchAxis(o => outputs[Outputs[o].Name].Shape, inputs[0].Shape[0]);
        return new EngineResult(outputs, new Dictionary<string, HostTensor>());
    }

    /// <summary>ONNX Runtime retired from Predict by <see cref="RetireOnnxRuntime"/>; calls that had started on it finish, and it is freed with the version.</summary>
    private OnnxRuntimeForward? _retiredOnnxRuntime;

    /// <summary>The engine serves Predict from now on: ONNX Runtime's result disagreed with the engine's (<see cref="ResultAgreement"/>).</summary>
    private void RetireOnnxRuntime(OnnxRuntimeForward ort, string why)
    {
        if (Interlocked.CompareExchange(ref _onnxRuntime, null, ort) != ort) return;
        _retiredOnnxRuntime = ort;
        PredictRuntimeNote = $"ONNX Runtime was retired from Predict: {why}";
        PredictFellBackToEngine?.Invoke(PredictRuntimeNote);
    }

    /// <summary>Outputs of a batch from the engine's own forward pass, whatever serves Predict (the reference).</summary>
    public EngineResult PredictInEngine(HostTensor[] inputs, ResultBuffers? into = null)
    {
        var device = DeviceTransfer.ToDevice(inputs, Graph);
        return _passes.Run("predict", -1, null, device, Forward,
            values => new EngineResult(Host(values, inputs[0].Shape[0], into).Outputs, new Dictionary<string, HostTensor>()));
    }

    /// <summary>
    /// Outputs and per-sample Jacobians [B, ..out, ..in] of a batch, in the given mode (AUTO: the faster one for these
    /// shapes, timed on first use). The result says which mode ran. With <paramref name="into"/>, results reuse its arrays.
    /// </summary>
    public EngineResult Jacobian(HostTensor[] inputs, int wrt, int[] of, DerivativeMode mode = DerivativeMode.Auto, ResultBuffers? into = null)
    {
        var device = DeviceTransfer.ToDevice(inputs, Graph);
        CheckBatchAxisBeforePass(device);
        if (mode == DerivativeMode.Auto) mode = _auto.Choose(device, wrt, of);
        EngineResult Interpreted(ResultBuffers? buffers) =>
            _passes.Run(mode == DerivativeMode.Forward ? "jacobian Forward" : "jacobian Reverse", wrt, of, device, d => Joined(JacobianTensors(d, wrt, of, mode)), all =>
            {
                var (outputs, jacobians) = Split(all);
                var host = Host(outputs, inputs[0].Shape[0], buffers, PerOutput(of, "jac:", j => jacobians[j]));
                return new EngineResult(host.Outputs, host.Groups[0]) { Mode = mode };
            });
        // CheckBatchAxisBeforePass has checked the outputs' shapes already.
        return CompiledOrInterpreted(Compiled(wrt, of, mode, inputs.Select(i => i.Shape).ToArray()), inputs, into, mode, Interpreted);
    }

    /// <summary>
    /// Outputs and directional derivatives of the outputs <paramref name="of"/> along <paramref name="tangents"/>
    /// ([B] ++ in_shape, or [B, T] ++ in_shape; checked by <see cref="RequestValidator.ValidateTangents"/>), in forward
    /// mode. Each output's result has the tangents' layout: [B] ++ out_shape or [B, T] ++ out_shape.
    /// </summary>
    public EngineResult Jvp(HostTensor[] inputs, int wrt, int[] of, HostTensor tangents, ResultBuffers? into = null)
    {
        var device = DeviceTransfer.ToDevice(inputs, Graph);
        CheckBatchAxisBeforePass(device);
        bool many = tangents.Shape.Length == inputs[wrt].Shape.Length + 1;
        var shapes = inputs.Select(i => i.Shape).ToArray();
        EngineResult Interpreted(ResultBuffers? buffers)
        {
            var seed = DeviceTransfer.ToDevice(tangents, Graph.ComputeType);
            seed = many ? seed.transpose(0, 1).contiguous() : seed.unsqueeze(0);
            return _passes.Run("jvp", wrt, of, [.. device, seed], d => Joined(_forward.Push(d[..^1], wrt, of, d[^1])), all =>
            {
                var (outputs, pushed) = Split(all);
                var host = Host(outputs, inputs[0].Shape[0], buffers, PerOutput(of, "jvp:", j => FromDirections(pushed[j], many)));
                return new EngineResult(host.Outputs, host.Groups[0]) { Mode = DerivativeMode.Forward };
            });
        }
        if (_compiled?.Jvp(wrt, of, many ? tangents.Shape[1] : 1, many, shapes) is { } unit && Fits(unit, shapes))
        {
            // The graph takes [B, T, ..wrt]; one tangent per sample is T = 1, the same floats.
            HostTensor[] graphInputs = [.. inputs, many ? tangents : new HostTensor([tangents.Shape[0], 1, .. tangents.Shape[1..]], tangents.Data)];
            return CompiledOrInterpreted(unit, graphInputs, into, DerivativeMode.Forward, Interpreted);
        }
        return Interpreted(into);
    }

    /// <summary>
    /// Outputs and the vector-Jacobian product, summed over the outputs <paramref name="of"/>, of the
    /// <paramref name="cotangents"/> (one per output in of, [B] ++ out_shape or [B, T] ++ out_shape; checked by
    /// <see cref="RequestValidator.ValidateCotangents"/>), in reverse mode: the gradient with respect to
    /// <paramref name="wrt"/>, keyed by its name, [B] ++ in_shape or [B, T] ++ in_shape.
    /// </summary>
    public EngineResult Vjp(HostTensor[] inputs, int wrt, int[] of, HostTensor[] cotangents, ResultBuffers? into = null)
    {
        var device = DeviceTransfer.ToDevice(inputs, Graph);
        CheckBatchAxisBeforePass(device);
        bool many = cotangents[0].Shape.Length == OutputSampleShape(inputs, of[0]).Length + 2;
        long directions = many ? cotangents[0].Shape[1] : 1;
        var shapes = inputs.Select(i => i.Shape).ToArray();
        var name = Inputs[wrt].Name;
        int count = device.Length;
        EngineResult Interpreted(ResultBuffers? buffers)
        {
            var seeds = cotangents.Select(c =>
            {
                var t = DeviceTransfer.ToDevice(c, Graph.ComputeType);
                return many ? t.transpose(0, 1).contiguous() : t.unsqueeze(0);
            });
            return _passes.Run("vjp", wrt, of, [.. device, .. seeds], d =>
            {
                var (outputs, pulled) = _reverse.Pull(d[..count], wrt, of, d[count..]);
                return [.. outputs, pulled];
            }, all =>
            {
                var host = Host(all[..^1], inputs[0].Shape[0], buffers, [(name, "vjp:" + name, FromDirections(all[^1], many))]);
                return new EngineResult(host.Outputs, host.Groups[0]) { Mode = DerivativeMode.Reverse };
            });
        }
        if (_compiled?.Vjp(wrt, of, directions, many, shapes) is { } unit && Fits(unit, shapes))
        {
            // The graph takes [B, T, ..out]; one cotangent per sample is T = 1, the same floats.
            HostTensor[] graphInputs = [.. inputs, .. cotangents.Select(c => many ? c : new HostTensor([c.Shape[0], 1, .. c.Shape[1..]], c.Data))];
            return CompiledOrInterpreted(unit, graphInputs, into, DerivativeMode.Reverse, Interpreted);
        }
        return Interpreted(into);
    }

    /// <summary>
    /// Outputs and per-sample Hessians [B, ..out, ..in, ..in] of the outputs <paramref name="of"/> with respect to
    /// <paramref name="wrt"/> (in <see cref="EngineResult.SecondOrder"/>), and the Jacobians when
    /// <paramref name="includeJacobian"/>. Refuses a model with an op that has no second-order rule on the path.
    /// </summary>
    public EngineResult Hessian(HostTensor[] inputs, int wrt, int[] of, bool includeJacobian, ResultBuffers? into = null)
    {
        CheckSecondOrder(wrt, of);
        var device = DeviceTransfer.ToDevice(inputs, Graph);
        CheckBatchAxisBeforePass(device);
        EngineResult Interpreted(ResultBuffers? buffers)
        {
            var (outputs, derivatives) = _secondOrder.Hessian(device, wrt, of, includeJacobian);
            return SecondOrderResult(outputs, derivatives, of, includeJacobian, "hess:", inputs[0].Shape[0], buffers);
        }
        return SecondOrderCompiledOrInterpreted(inputs, wrt, of, null, includeJacobian, into, Interpreted);
    }

    /// <summary>
    /// Outputs and per-sample Laplacians [B, ..out] of the outputs <paramref name="of"/>: the sum over the flat indices
    /// <paramref name="axes"/> of wrt's sample (from <see cref="RequestValidator.ResolveAxes"/>) of the second
    /// derivatives, and the Jacobians when <paramref name="includeJacobian"/>.
    /// </summary>
    public EngineResult Laplacian(HostTensor[] inputs, int wrt, int[] of, int[] axes, bool includeJacobian, ResultBuffers? into = null)
    {
        CheckSecondOrder(wrt, of);
        var device = DeviceTransfer.ToDevice(inputs, Graph);
        CheckBatchAxisBeforePass(device);
        EngineResult Interpreted(ResultBuffers? buffers)
        {
            var (outputs, derivatives) = _secondOrder.Laplacian(device, wrt, of, axes, includeJacobian);
            return SecondOrderResult(outputs, derivatives, of, includeJacobian, "lap:", inputs[0].Shape[0], buffers);
        }
        return SecondOrderCompiledOrInterpreted(inputs, wrt, of, axes, includeJacobian, into, Interpreted);
    }

    /// <summary>
    /// A Hessian (or, with <paramref name="laplacianAxes"/>, a Laplacian) from the compiled second-order graph where there
    /// is one, it fits in the working memory (whole or in parts) and it serves this batch
    /// (<see cref="CompiledOrInterpreted"/>), else the interpreter's. A Laplacian over every element of wrt shares the
    /// Hessian's graph.
    /// </summary>
    private EngineResult SecondOrderCompiledOrInterpreted(HostTensor[] inputs, int wrt, int[] of, int[]? laplacianAxes, bool includeJacobian,
        ResultBuffers? into, Func<ResultBuffers?, EngineResult> interpreted)
    {
        var shapes = inputs.Select(i => i.Shape).ToArray();
        bool everyElement = laplacianAxes is not null && laplacianAxes.Length == Shapes.Product(inputs[wrt].Shape[1..]);
        var unit = _compiled?.SecondOrder(wrt, of, everyElement ? null : laplacianAxes, shapes) is { } u && Fits(u, shapes) ? u : null;
        string prefix = laplacianAxes is null ? "hess:" : "lap:";
        string[] names = [.. of.Select(o => Outputs[o].Name)];
        string[] keys = [.. names.Select(n => prefix + n), .. includeJacobian ? names.Select(n => "jac:" + n) : []];
        // Timed per kind of call: the interpreter's Laplacian is far cheaper than its Hessian, the graph's is not.
        return CompiledOrInterpreted(unit, inputs, into, DerivativeMode.Forward, interpreted, new CompiledCall(keys, (unit, prefix), (outputs, derivatives) =>
            new EngineResult(outputs, includeJacobian ? names.ToDictionary(n => n, n => derivatives["jac:" + n]) : [])
            {
                SecondOrder = names.ToDictionary(n => n, n => derivatives[prefix + n]), Mode = DerivativeMode.Forward, Compiled = true,
            }));
    }

    /// <summary>
    /// What a call takes from a compiled graph (<see cref="Keys"/>: its derivatives by key, or all), what its timing
    /// against the interpreter is kept under (<see cref="CompiledPreference"/>), and how its result is made.
    /// </summary>
    private sealed record CompiledCall(string[]? Keys, object Timing,
        Func<Dictionary<string, HostTensor>, Dictionary<string, HostTensor>, EngineResult> Result);

    /// <summary>Derivatives come per output in of: the second-order ones, then (when asked for) the Jacobians.</summary>
    private EngineResult SecondOrderResult(Tensor[] outputs, Tensor[] derivatives, int[] of, bool includeJacobian, string prefix, long batch, ResultBuffers? into)
    {
        var host = Host(outputs, batch, into, PerOutput(of, prefix, j => derivatives[j]),
            includeJacobian ? PerOutput(of, "jac:", j => derivatives[of.Length + j]) : []);
        return new EngineResult(host.Outputs, host.Groups[1]) { SecondOrder = host.Groups[0], Mode = DerivativeMode.Forward };
    }

    /// <summary>Outputs then derivatives as one array, the form a recorded pass returns them in.</summary>
    private static Tensor[] Joined((Tensor[] Outputs, Tensor[] Derivatives) pass) => [.. pass.Outputs, .. pass.Derivatives];

    private (Tensor[] Outputs, Tensor[] Derivatives) Split(Tensor[] all) => (all[..Outputs.Count], all[Outputs.Count..]);

    /// <summary>[T, B, ..] back to the caller's layout: [B, T, ..], or [B, ..] when there was one direction per sample.</summary>
    private static Tensor FromDirections(Tensor t, bool many) => many ? t.transpose(0, 1) : t.squeeze(0);

    /// <summary>
    /// The compiled Jacobian for (wrt, of, mode) where there is one and a sample fits in the working memory (a batch runs
    /// in parts that fit, <see cref="RowsPerRun"/>; the interpreter splits the basis and the batch to stay under it);
    /// otherwise null.
    /// </summary>
    private CompiledDerivative? Compiled(int wrt, int[] of, DerivativeMode mode, long[][] shapes) =>
        _compiled?.Jacobian(wrt, of, mode, shapes) is { } unit && Fits(unit, shapes) ? unit : null;

    /// <summary>
    /// A batch fits whole, or in parts where one sample fits and every input carries the batch on axis 0 (op rows test
    /// inputs that broadcast along it; the server's inputs all carry it).
    /// </summary>
    private bool Fits(CompiledDerivative unit, long[][] shapes) =>
        unit.BytesPerSample * shapes[0][0] <= Limits.WorkingMemoryBytes
        || unit.BytesPerSample <= Limits.WorkingMemoryBytes && shapes.All(s => s.Length > 0 && s[0] == shapes[0][0]);

    /// <summary>The most samples of one run of a compiled graph that its derivative nodes can hold within the working memory.</summary>
    private long RowsPerRun(CompiledDerivative unit) => Limits.WorkingMemoryBytes / Math.Max(1, unit.BytesPerSample);

    /// <summary>
    /// The compiled graph's result where there is one and it serves this batch (whichever of graph and interpreter ran a
    /// batch this size faster the first time, the graph's result having agreed with the interpreter's where checked,
    /// <see cref="CompiledPreference"/>), else the interpreter's. A graph ONNX Runtime loaded but fails to run leaves this
    /// call to the interpreter; if the interpreter answers, the graph (a node ONNX Runtime reads differently from the
    /// engine), not the request, was at fault, and it is taken out of service: a faster way to the same answer never fails
    /// a call.
    /// </summary>
    /// <remarks>By default a call takes every derivative of the graph, each a Jacobian, Jvp or Vjp by its key (<paramref name="call"/>).</remarks>
    private EngineResult CompiledOrInterpreted(CompiledDerivative? unit, HostTensor[] graphInputs, ResultBuffers? into, DerivativeMode mode,
        Func<ResultBuffers?, EngineResult> interpreted, CompiledCall? call = null)
    {
        if (unit is null) return interpreted(into);
        call ??= new CompiledCall(null, unit, (outputs, derivatives) => new EngineResult(outputs, derivatives) { Mode = mode, Compiled = true });
        OnnxRuntimeException? failure = null;
        try
        {
            long rows = RowsPerRun(unit);
            EngineResult FromGraph()
            {
                var (outputs, derivatives) = unit.Run(graphInputs, null, call.Keys, rows);
                return call.Result(outputs, derivatives);
            }
            bool serves = _preference.Compiled(call.Timing, graphInputs[0].Shape[0], FromGraph, () => interpreted(null), why => _compiled!.Fail(unit, why),
                out var timed);
            // The first batch of a size: the timing's own run of the way chosen is its answer.
            if (timed is not null) return timed;
            if (serves)
            {
                // One call, not stopped part-way like the interpreter's steps: a batch every caller has left is not started.
                BatchCancellation.ThrowIfRequested();
                var (outputs, derivatives) = unit.Run(graphInputs, into, call.Keys, rows);
                return call.Result(outputs, derivatives);
            }
        }
        catch (OnnxRuntimeException e)
        {
            failure = e;
        }
        var answer = interpreted(into);
        if (failure is not null) _compiled!.Fail(unit, failure);
        return answer;
    }

    /// <summary>
    /// Refuses outputs that lose the batch axis before any derivative pass: a pass over them sizes its per-sample results
    /// wrongly, and fails in libtorch with a message about shapes the caller never sent (one such model, a 1-D input
    /// contracted by MatMul, ended the process in reverse mode).
    /// </summary>
    private void CheckBatchAxisBeforePass(Tensor[] inputs)
    {
        using var plan = _parts.Plans.Lease(inputs);
        CheckBatchAxis(o => plan.Plan.ValueShapes[Graph.OutputIds[o]] ?? [], inputs[0].size(0));
    }

    /// <summary>One derivative per output in <paramref name="of"/>: its output's name, its reused buffer's name, its tensor.</summary>
    private (string Name, string Buffer, Tensor Value)[] PerOutput(int[] of, string bufferPrefix, Func<int, Tensor> value) =>
        of.Select((o, j) => (Outputs[o].Name, bufferPrefix + Outputs[o].Name, value(j))).ToArray();

    /// <summary>
    /// A pass's outputs and its groups of derivatives on the host, each by name; off a GPU straight into their arrays
    /// (see <see cref="DeviceTransfer.ToHost(IReadOnlyList{Tensor}, IReadOnlyList{string}, ResultBuffers?, bool)"/>).
    /// </summary>
    private (Dictionary<string, HostTensor> Outputs, Dictionary<string, HostTensor>[] Groups) Host(Tensor[] outputs, long batch,
        ResultBuffers? into, params (string Name, string Buffer, Tensor Value)[][] groups)
    {
        CheckBatchAxis(o => outputs[o].Dims(), batch);
        var derivatives = groups.SelectMany(g => g).ToArray();
        Tensor[] all = [.. outputs, .. derivatives.Select(d => d.Value)];
        string[] buffers = [.. Outputs.Select(o => "out:" + o.Name), .. derivatives.Select(d => d.Buffer)];
        var host = DeviceTransfer.ToHost(all, buffers, into, direct: Device != ComputeDevices.Cpu);
        var named = Outputs.Select((o, i) => (o.Name, host[i])).ToDictionary(p => p.Name, p => p.Item2);
        var grouped = new Dictionary<string, HostTensor>[groups.Length];
        int next = outputs.Length;
        for (int g = 0; g < groups.Length; g++)
        {
            grouped[g] = [];
            foreach (var d in groups[g]) grouped[g][d.Name] = host[next++];
        }
        return (named, grouped);
    }

    /// <summary>
    /// Refuses a result whose outputs do not keep the inputs' batch axis first (an output that is a constant, or reduces
    /// over the batch): the batcher cuts a batch's results into its callers' rows along that axis, and would hand a
    /// caller someone else's rows, or fail on an output with no axis at all. Names the node that made the output.
    /// </summary>
    private void CheckBatchAxis(Func<int, long[]> shapeOf, long batch)
    {
        for (int o = 0; o < Outputs.Count; o++)
        {
            var shape = shapeOf(o);
            if (shape.Length > 0 && shape[0] == batch) continue;
            var producer = Graph.Nodes.FirstOrDefault(n => n.Outputs.Contains(Graph.OutputIds[o]));
            throw new NodeEvaluationException(producer?.Name ?? Outputs[o].Name, producer?.OpType ?? "graph output",
                $"output '{Outputs[o].Name}' has shape {Shapes.Text(shape)} for a batch of {batch}; every output must keep the inputs' batch axis first");
        }
    }

    // ---- Tensor-level entry points (executor thread; the op and engine tests use them) ------------------------

    /// <summary>Outputs only, as device tensors in the caller's scope.</summary>
    internal Tensor[] Forward(Tensor[] inputs)
    {
        using var plan = _parts.Plans.Lease(inputs);
        return Evaluator.Run(Graph, plan.Plan, inputs).Values;
    }

    /// <summary>
    /// Pushes tangents <paramref name="seed"/> [K, ..input] through the whole graph (every output); with
    /// <paramref name="pairs"/>, the last of them are second-order directions over the first.
    /// </summary>
    internal Evaluator.Result Jvp(Tensor[] inputs, int wrt, Tensor seed, PairBasis? pairs = null)
    {
        var all = Enumerable.Range(0, Outputs.Count).ToArray();
        using var plan = _parts.Plans.Lease(inputs);
        return Evaluator.Run(Graph, plan.Plan, inputs, Graph.InputIds[wrt], seed, _parts.Path(wrt, all).Carries, pairs: pairs);
    }

    /// <summary>Pulls cotangents [K, ..output] (one per output in <paramref name="of"/>) back to input <paramref name="wrt"/>: [K, ..input].</summary>
    internal Tensor Vjp(Tensor[] inputs, int wrt, int[] of, Tensor?[] cotangents) => _reverse.Pull(inputs, wrt, of, cotangents).Vjp;

    /// <summary>Second derivatives as device tensors: per output in of the Hessians (or Laplacians over <paramref name="axes"/>), then the Jacobians.</summary>
    internal (Tensor[] Outputs, Tensor[] Derivatives) SecondOrderTensors(Tensor[] inputs, int wrt, int[] of, SecondOrderKind kind, int[]? axes = null,
        bool includeJacobian = false, HessianMethod method = HessianMethod.Auto) =>
        kind == SecondOrderKind.Hessian ? _secondOrder.Hessian(inputs, wrt, of, includeJacobian, method)
            : _secondOrder.Laplacian(inputs, wrt, of, axes ?? Enumerable.Range(0, (int)Shapes.Product(inputs[wrt].Dims()[1..])).ToArray(), includeJacobian);

    /// <summary>The method a Hessian of these inputs is computed by (<see cref="HessianMethod.Auto"/> resolved).</summary>
    internal HessianMethod HessianMethodFor(Tensor[] inputs, int wrt, int[] of) => _secondOrder.Chosen(inputs, wrt, of);

    internal (Tensor[] Outputs, Tensor[] Jacobians) JacobianTensors(Tensor[] inputs, int wrt, int[] of, DerivativeMode mode) =>
        mode == DerivativeMode.Reverse ? _reverse.Jacobian(inputs, wrt, of) : _forward.Jacobian(inputs, wrt, of);

    public void Dispose()
    {
        _onnxRuntime?.Dispose();
        _retiredOnnxRuntime?.Dispose();
        _compiled?.Dispose();
        _weights?.Dispose();
        _passes.Dispose();
        _parts.Dispose();
        Graph.Dispose();
    }
}
