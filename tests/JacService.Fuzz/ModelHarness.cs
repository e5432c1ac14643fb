using JacService.Core;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Core.Planning;
using static TorchSharp.torch;

namespace JacService.Fuzz;

/// <summary>
/// The ONNX reader, validator and planner on arbitrary bytes: <see cref="ModelVersion.Load"/>, which must accept a file
/// or refuse it with a <see cref="ModelLoadException"/>. A file it accepts is then served one small batch (Predict, both
/// Jacobian modes, a Laplacian), where only the exceptions the service maps to a caller's status may come out.
/// As "model-ort", ONNX Runtime also gets every file the engine accepts, as the server's default does, and serves its
/// Predict, whose outputs must have the engine's shapes: its native parser and kernels take what the engine let through.
/// </summary>
public sealed class ModelHarness(bool onnxRuntime = false) : IHarness
{
    /// <summary>
    /// Lower than the server's defaults, so that what a mutated file declares is refused before it costs seconds: the
    /// checks are the same code whatever the numbers. ONNX Runtime stays out (a native library with its own parser).
    /// </summary>
    public static readonly EngineLimits Limits = new()
    {
        PredictWithOnnxRuntime = false,
        CalibrateAuto = false,
        MaxResultBytes = 4L << 20,
        WorkingMemoryBytes = 64L << 20,
        // ONNX Runtime's preparation of a derivative graph grows with the square of its nodes (4 s at 5,000 here, more on a
        // slower machine) and no deadline stops it: graphs up to twice the seeds' largest (1,095 nodes) keep an input
        // well inside the 10 s afl gives it.
        MaxCompiledNodes = 2_000,
        Model = new ModelLimits
        {
            MaxFileBytes = 4L << 20,
            MaxNodes = 10_000,
            MaxGraphDepth = 2_000,
            MaxTensorBytes = 16L << 20,
            MaxInitializerBytes = 32L << 20,
            MaxPlannedElements = 1L << 22,
        },
    };

    private const int Batch = 2;

    private readonly EngineLimits _limits = Limits with { PredictWithOnnxRuntime = onnxRuntime };

    /// <summary>
    /// How long one file's batch may run, as a caller's deadline would bound it (afl's per-input limit is 10 s): a file
    /// may legitimately ask for minutes of work, such as a reverse-mode Jacobian of 12,320 outputs per sample.
    /// </summary>
    public static readonly TimeSpan DefaultServeTimeout = TimeSpan.FromSeconds(4);

    private readonly TimeSpan _serveTimeout = DefaultServeTimeout;

    /// <summary>A harness whose batches stop at <paramref name="serveTimeout"/> (a test's shorter one).</summary>
    public ModelHarness(bool onnxRuntime, TimeSpan serveTimeout) : this(onnxRuntime) => _serveTimeout = serveTimeout;

    public string Name => onnxRuntime ? "model-ort" : "model";

    public string Run(byte[] input)
    {
        ModelVersion model;
        try
        {
            model = ModelVersion.Load("fuzz", 1, input, _limits);
        }
        catch (ModelLoadException e)
        {
            return "refused: " + e.Message;
        }
        using (model)
        using (NewDisposeScope())
        using (var deadline = new CancellationTokenSource(_serveTimeout))
        using (BatchCancellation.Enter(deadline.Token))
        {
            try
            {
                return "loaded; " + Serve(model);
            }
            catch (OperationCanceledException) when (deadline.IsCancellationRequested)
            {
                // What the server does when a caller's deadline passes: the batch stops between ops.
                return $"loaded; stopped at the deadline ({_serveTimeout.TotalSeconds:0.##} s)";
            }
        }
    }

    /// <summary>One batch through the engine, as a request that passed validation would go.</summary>
    private static string Serve(ModelVersion model)
    {
        try
        {
            var given = model.Inputs.ToDictionary(i => i.Name, Sample);
            var inputs = model.ValidateInputs(given, batched: true);
            var predicted = model.PredictInEngine(inputs);
            CheckOutputs(model, predicted);
            if (model.PredictRuntime == "onnxruntime") CheckSameShapes(predicted, model.Predict(inputs));
            if (!model.Inputs.Any(i => i.ElementType.IsFloat())) return "predicted (no float input)";
            int wrt = model.ResolveWrt(model.Inputs.First(i => i.ElementType.IsFloat()).Name);
            int[] of = model.ResolveOf([]);
            if (of.Length == 0) return "predicted (no float output)";
            model.CheckResultSize(inputs, wrt, of);
            foreach (var mode in new[] { DerivativeMode.Forward, DerivativeMode.Reverse })
                CheckJacobians(model, inputs, wrt, of, model.Jacobian(inputs, wrt, of, mode));
            model.CheckSecondOrder(wrt, of);
            model.CheckSecondOrderSize(inputs, wrt, of, SecondOrderKind.Laplacian, includeJacobian: false);
            var laplacian = model.Laplacian(inputs, wrt, of, model.Requests.ResolveAxes([], inputs, wrt), includeJacobian: false);
            CheckOutputs(model, laplacian);
            return "served";
        }
        catch (Exception e) when (e is InvalidRequestException or NodeEvaluationException or ResultTooLargeException or PlanTooLargeException)
        {
            // What a caller would get as INVALID_ARGUMENT or RESOURCE_EXHAUSTED: the file loaded, the request did not fit.
            return $"request refused ({e.GetType().Name}): {e.Message}";
        }
    }

    /// <summary>A batch of <see cref="Batch"/> for one input: dynamic axes of 2, small valid values (0 for integer inputs).</summary>
    private static HostTensor Sample(TensorSignature input)
    {
        long[] shape = [Batch, .. input.Shape[1..].Select(d => d > 0 ? d : 2)];
        long count = shape.Aggregate(1L, (p, d) => p * d);
        if (count > 1 << 24) throw new InvalidRequestException($"input '{input.Name}' would take {count} values; the harness sends at most 2^24");
        var data = new float[count];
        if (input.ElementType.IsFloat()) Array.Fill(data, 0.5f);
        return new HostTensor(shape, data);
    }

    private static void CheckOutputs(ModelVersion model, EngineResult result)
    {
        if (result.Outputs.Count != model.Outputs.Count)
            throw new HarnessFindingException($"{result.Outputs.Count} outputs for a model with {model.Outputs.Count}");
        foreach (var (name, t) in result.Outputs) CheckRows(name, t);
        foreach (var (name, t) in result.SecondOrder) CheckRows(name, t);
    }

    private static void CheckSameShapes(EngineResult engine, EngineResult onnxRuntime)
    {
        foreach (var (name, t) in engine.Outputs)
            if (!onnxRuntime.Outputs.TryGetValue(name, out var other) || !other.Shape.SequenceEqual(t.Shape))
                throw new HarnessFindingException($"ONNX Runtime's '{name}' is {other?.ShapeText ?? "missing"}, the engine's {t.ShapeText}");
    }

    private static void CheckJacobians(ModelVersion model, HostTensor[] inputs, int wrt, int[] of, EngineResult result)
    {
        CheckOutputs(model, result);
        foreach (int o in of)
        {
            var output = result.Outputs[model.Outputs[o].Name];
            var jacobian = result.Jacobians[model.Outputs[o].Name];
            long[] expected = [.. output.Shape, .. inputs[wrt].Shape[1..]];
            if (!jacobian.Shape.SequenceEqual(expected))
                throw new HarnessFindingException(
                    $"{result.Mode} Jacobian of '{model.Outputs[o].Name}' has shape {jacobian.ShapeText}, expected [{string.Join(", ", expected)}]");
            CheckRows(model.Outputs[o].Name, jacobian);
        }
    }

    private static void CheckRows(string name, HostTensor t)
    {
        if (t.Shape.Length == 0 || t.Shape[0] != Batch || t.Count != t.Data.Length)
            throw new HarnessFindingException($"result '{name}' has shape {t.ShapeText} and {t.Data.Length} values for a batch of {Batch}");
    }

    public void WriteSeeds(string directory)
    {
        Directory.CreateDirectory(directory);
        var root = RepositoryRoot.Find();
        var fixtures = Path.Combine(root, "tests", "fixtures");
        var files = Directory.GetFiles(Path.Combine(fixtures, "models"), "model.onnx", SearchOption.AllDirectories)
            .Concat(Directory.GetFiles(Path.Combine(fixtures, "bad"), "model.onnx", SearchOption.AllDirectories));
        foreach (var file in files.Order())
        {
            // Mutating a large file is slow, and the larger fixtures (weights, mostly) hold no structure the small ones lack.
            if (new FileInfo(file).Length > 128 << 10) continue;
            var name = Path.GetFileName(Path.GetDirectoryName(Path.GetDirectoryName(file)))!;
            File.Copy(file, Path.Combine(directory, name + ".onnx"), overwrite: true);
        }
        // The fixtures exported with model-local functions, which the reader inlines.
        foreach (var file in Directory.GetFiles(Path.Combine(fixtures, "functions"), "*.onnx").Order().Where(f => new FileInfo(f).Length <= 128 << 10))
            File.Copy(file, Path.Combine(directory, "functions_" + Path.GetFileName(file)), overwrite: true);
        // Ops no exporter here writes, built node by node (tests/fixtures/make_seeds.py).
        foreach (var file in Directory.GetFiles(Path.Combine(fixtures, "seeds"), "*.onnx").Order())
            File.Copy(file, Path.Combine(directory, "seeds_" + Path.GetFileName(file)), overwrite: true);
    }
}
