using Google.Protobuf;
using JacService.Core.Onnx;
using JacService.Core.Onnx.Proto;
using Microsoft.ML.OnnxRuntime;

namespace JacService.Core.Models;

/// <summary>
/// Predict through ONNX Runtime: one session per model version, built from the same file, running the whole graph as
/// one preplanned, fused call. The engine's interpreter pays 5-10 µs of managed bookkeeping per op and libtorch's
/// kernels run these models' products at about half the speed of ORT's (docs/benchmarks.md, "Compiled Predict plans:
/// feasibility"), so a forward pass alone is served by ORT; derivatives, which ORT cannot take, stay in the engine,
/// whose forward pass also gives their outputs. Both agree to float32 rounding (tested per op row and per fixture).
/// Used only when every input and output is float32; the session is thread-safe and runs on the caller's thread.
/// </summary>
internal sealed class OnnxRuntimeForward : IDisposable
{
    private readonly InferenceSession _session;
    // Read-only settings of a call (none set): one object serves concurrent calls.
    private readonly RunOptions _runOptions = new();
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;

    private OnnxRuntimeForward(InferenceSession session, ModelGraph graph)
    {
        _session = session;
        _inputNames = graph.Inputs.Select(i => i.Name).ToArray();
        _outputNames = graph.Outputs.Select(o => o.Name).ToArray();
    }

    /// <summary>A session for the model, or null and why not (the engine then serves Predict).</summary>
    public static OnnxRuntimeForward? TryCreate(byte[] bytes, ModelGraph graph, SharedWeights? weights, int threads, ModelLimits limits, out string reason)
    {
        var notFloat = graph.Inputs.Concat(graph.Outputs).FirstOrDefault(t => t.ElementType != ElementType.Float);
        if (notFloat is not null)
        {
            reason = $"'{notFloat.Name}' is {notFloat.ElementType.OnnxName()}; ONNX Runtime serves Predict for float32 inputs and outputs only";
            return null;
        }
        try
        {
            reason = "";
            // With shared weights, the file is parsed here (every field kept) and its shared weights' data left out of what
            // ONNX Runtime parses: 1.8 s became 1.1 s for a 200 MB model's session.
            var session = ParsedWhole(bytes, weights, limits) is { } whole ? NewSession(whole, weights, threads) : NewSession(bytes, weights, threads);
            return new OnnxRuntimeForward(session, graph);
        }
        catch (Exception e) when (e is OnnxRuntimeException or InvalidOperationException)
        {
            // InvalidOperationException: a call to its C API the managed one lacks failed (OrtExternalInitializers).
            reason = $"ONNX Runtime could not load the model: {e.Message}";
            return null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException)
        {
            // No usable native library (another platform, a trimmed image): the engine still serves everything.
            reason = $"ONNX Runtime is not available here: {e.Message}";
            return null;
        }
    }

    /// <summary>
    /// The file parsed with every field kept, where there are shared weights to leave out of it; else null, and ONNX Runtime
    /// reads the file as it is. A field the engine's parser skips can stop this parse (an unknown field of an invalid wire
    /// type, which fuzzed files hold).
    /// </summary>
    private static ModelProto? ParsedWhole(byte[] bytes, SharedWeights? weights, ModelLimits limits)
    {
        if (weights is null) return null;
        try
        {
            return OnnxModelReader.ParseWhole(bytes, limits);
        }
        catch (ModelLoadException)
        {
            return null;
        }
    }

    /// <summary>Every output of a batch, as float32 arrays (written into <paramref name="into"/> when given).</summary>
    public Dictionary<string, HostTensor> Run(HostTensor[] inputs, ResultBuffers? into)
    {
        var values = new OrtValue[inputs.Length];
        try
        {
            // Views of the managed arrays (pinned for the call), not copies.
            for (int i = 0; i < inputs.Length; i++) values[i] = OrtValue.CreateTensorValueFromMemory(inputs[i].Data, inputs[i].Shape);
            using var results = CancellableRun.Run(_session, _runOptions, _inputNames, values, _outputNames);
            var outputs = new Dictionary<string, HostTensor>(_outputNames.Length);
            for (int o = 0; o < _outputNames.Length; o++)
                outputs[_outputNames[o]] = CopyOut(results[o], "out:" + _outputNames[o], into, results[o].GetTensorTypeAndShape().Shape);
            return outputs;
        }
        finally
        {
            foreach (var value in values) value?.Dispose();
        }
    }

    /// <summary>
    /// A session whose runs take <paramref name="threads"/> threads, the executor thread calling it among them (one by
    /// default, like every other pass: Batching:IntraOpThreads=1), reading the version's <paramref name="weights"/> (when
    /// given) instead of copies of its own, its tensors from the arena every session shares (<see cref="OnnxRuntimeArena"/>).
    /// Throws <see cref="OnnxRuntimeException"/> for a model ONNX Runtime refuses.
    /// </summary>
    internal static InferenceSession NewSession(byte[] model, SharedWeights? weights, int threads) => NewSession(model, weights, threads, []);

    /// <summary>
    /// As <see cref="NewSession(byte[], SharedWeights?, int)"/> for a graph written here, whose shared weights' data is
    /// left out of the bytes ONNX Runtime parses (<see cref="SharedWeights.LeaveOut"/>, which changes <paramref name="model"/>)
    /// and handed to the session from memory instead: parsing and copying them took 0.9 s per derivative graph of a 200 MB model.
    /// </summary>
    internal static InferenceSession NewSession(ModelProto model, SharedWeights? weights, int threads)
    {
        var leftOut = weights?.LeaveOut(model) ?? [];
        return NewSession(model.ToByteArray(), weights, threads, leftOut);
    }

    private static InferenceSession NewSession(byte[] model, SharedWeights? weights, int threads, IReadOnlyList<(string Name, nint Value)> leftOut)
    {
        using var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL };
        // A pool's threads would spin after each run, taking the cores from the other executor threads' batches.
        if (threads > 1) options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        if (OnnxRuntimeArena.Use()) options.AddSessionConfigEntry("session.use_env_allocators", "1");
        // ONNX Runtime 1.32's SkipLayerNormFusion (a residual Add and the LayerNormalization after it made one contrib op)
        // reads a LayerNormalization's bias named "" (omitted, as ONNX allows) and kills the process with SIGSEGV while the
        // session is made, even for x -> LayerNormalization(x, scale, "") alone: a model file took the server down at load
        // (found by the model fuzz harness). Only that pass is turned off; every other optimisation stays.
        options.AddSessionConfigEntry("optimization.disable_specified_optimizers", "SkipLayerNormFusion");
        if (weights is null) return new InferenceSession(model, options);
        weights.AddTo(options, leftOut);
        return new InferenceSession(model, options, weights.Prepacked);
    }

    /// <summary>A float32 result copied into the call's buffer <paramref name="buffer"/> (or a pooled array), as <paramref name="shape"/>.</summary>
    internal static HostTensor CopyOut(OrtValue result, string buffer, ResultBuffers? into, long[] shape)
    {
        var source = result.GetTensorDataAsSpan<float>();
        var target = into?.For(buffer, source.Length) ?? FloatArrayPool.Shared.Rent(source.Length);
        source.CopyTo(target);
        return new HostTensor(shape, target);
    }

    public void Dispose()
    {
        _session.Dispose();
        _runOptions.Dispose();
    }
}
