using JacService.Core.Models;
using Microsoft.ML.OnnxRuntime;

namespace JacService.Core.Compiled;

/// <summary>
/// One derivative graph (<see cref="DerivativeGraphWriter"/>) in its ONNX Runtime session: a model version's outputs and
/// derivatives (Jacobians, or a Vjp) for one (wrt, of, kind), any batch size, in one call. The session is thread-safe.
/// </summary>
internal sealed class CompiledDerivative : IDisposable
{
    /// <summary>A graph output read back as a derivative: its result key, the call's buffer it is copied into, its per-sample shape.</summary>
    public sealed record Result(string Output, string Key, string Buffer, long[] Sample);

    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;
    private readonly Result[] _results;

    public CompiledDerivative(DerivativeGraphWriter.Written written, SharedWeights? weights, string[] inputNames, string[] outputNames, Result[] results,
        int threads = 1)
    {
        // A derivative graph's run holds up to Engine:WorkingMemoryMiB of directions: an arena per graph would keep that
        // much for each (small_cnn's two Jacobian graphs took the server from 0.7 to 1.6 GiB at warm-up).
        _session = OnnxRuntimeForward.NewSession(written.Model, weights, threads);
        _inputNames = inputNames;
        _outputNames = [.. outputNames, .. results.Select(r => r.Output)];
        _results = results;
        BytesPerSample = written.BytesPerSample;
    }

    /// <summary>The most the derivative nodes hold per sample: every direction of every value on the path, and the result.</summary>
    public long BytesPerSample { get; }

    /// <summary>
    /// Outputs by name, and the derivatives by their keys as [B, ..sample], written into <paramref name="into"/> when
    /// given; with <paramref name="keys"/>, only those derivatives (a second-order graph computes Hessians, Laplacians and
    /// Jacobians, and a call takes what it asked for). A batch of more than <paramref name="rows"/> samples runs in parts
    /// of at most that many, each written into its rows of the results: the graph holds <see cref="BytesPerSample"/> per
    /// sample, and a batch over the working memory would otherwise leave the interpreter to serve it whole (ResNet-18's
    /// Vjp of 32 images: 5.3 s in the interpreter, 3.0 s from the graph in parts).
    /// </summary>
    public (Dictionary<string, HostTensor> Outputs, Dictionary<string, HostTensor> Derivatives) Run(HostTensor[] inputs, ResultBuffers? into,
        IReadOnlyCollection<string>? keys = null, long rows = long.MaxValue)
    {
        var wanted = keys is null ? _results : _results.Where(r => keys.Contains(r.Key)).ToArray();
        int outputs = _outputNames.Length - _results.Length;
        var names = keys is null ? _outputNames : [.. _outputNames[..outputs], .. wanted.Select(r => r.Output)];
        long batch = inputs[0].Shape[0];
        rows = Math.Max(rows, 1);
        var results = new HostTensor[names.Length];
        long start = 0;
        do
        {
            long count = Math.Min(rows, batch - start);
            using var part = RunPart(inputs, start, count, names);
            for (int o = 0; o < names.Length; o++)
            {
                if (results[o] is null)
                {
                    long[] produced = part[o].GetTensorTypeAndShape().Shape;
                    if (count < batch && (produced.Length == 0 || produced[0] != count))
                        throw new InvalidOperationException($"'{names[o]}' of {count} samples is [{string.Join(", ", produced)}]: a graph whose results do not carry the batch cannot run in parts");
                    long[] shape = o >= outputs ? [batch, .. wanted[o - outputs].Sample] : count == batch ? produced : [batch, .. produced[1..]];
                    string buffer = o < outputs ? "out:" + names[o] : wanted[o - outputs].Buffer;
                    long length = HostTensor.Elements(shape);
                    results[o] = new HostTensor(shape, into?.For(buffer, length) ?? FloatArrayPool.Shared.Rent(checked((int)length)));
                }
                var source = part[o].GetTensorDataAsSpan<float>();
                long offset = start == 0 ? 0 : start * HostTensor.Elements(results[o].Shape[1..]);
                source.CopyTo(results[o].Data.AsSpan(checked((int)offset)));
            }
            start += count;
        }
        while (start < batch);
        var named = new Dictionary<string, HostTensor>(outputs);
        for (int o = 0; o < outputs; o++) named[names[o]] = results[o];
        var derivatives = new Dictionary<string, HostTensor>(wanted.Length);
        for (int j = 0; j < wanted.Length; j++) derivatives[wanted[j].Key] = results[outputs + j];
        return (named, derivatives);
    }

    /// <summary>The graph run on rows [start, start + count) of every input: views of the managed arrays (pinned for the call), not copies.</summary>
    private IDisposableReadOnlyCollection<OrtValue> RunPart(HostTensor[] inputs, long start, long count, string[] names)
    {
        var values = new OrtValue[inputs.Length];
        try
        {
            bool whole = count == inputs[0].Shape[0];
            for (int i = 0; i < inputs.Length; i++)
            {
                var input = inputs[i];
                long row = whole ? 0 : HostTensor.Elements(input.Shape[1..]);
                values[i] = whole ? OrtValue.CreateTensorValueFromMemory(input.Data, input.Shape)
                    : OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance,
                        input.Data.AsMemory(checked((int)(start * row)), checked((int)(count * row))), [count, .. input.Shape[1..]]);
            }
            return CancellableRun.Run(_session, _runOptions, _inputNames, values, names);
        }
        finally
        {
            foreach (var value in values) value?.Dispose();
        }
    }

    public void Dispose()
    {
        _session.Dispose();
        _runOptions.Dispose();
    }
}
