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

    public CompiledDerivative(DerivativeGraphWriter.Written written, SharedWeights? weights, string[] inputNames, string[] outputNames, Result[] results)
    {
        // A derivative graph's run holds up to Engine:WorkingMemoryMiB of directions: an arena per graph would keep that
        // much for each (small_cnn's two Jacobian graphs took the server from 0.7 to 1.6 GiB at warm-up).
        _session = OnnxRuntimeForward.NewSession(written.Model, weights, sharedArena: true);
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
    /// Jacobians, and a call takes what it asked for).
    /// </summary>
    public (Dictionary<string, HostTensor> Outputs, Dictionary<string, HostTensor> Derivatives) Run(HostTensor[] inputs, ResultBuffers? into,
        IReadOnlyCollection<string>? keys = null)
    {
        var values = new OrtValue[inputs.Length];
        var wanted = keys is null ? _results : _results.Where(r => keys.Contains(r.Key)).ToArray();
        int outputs = _outputNames.Length - _results.Length;
        var names = keys is null ? _outputNames : [.. _outputNames[..outputs], .. wanted.Select(r => r.Output)];
        try
        {
            // Views of the managed arrays (pinned for the call), not copies.
            for (int i = 0; i < inputs.Length; i++) values[i] = OrtValue.CreateTensorValueFromMemory(inputs[i].Data, inputs[i].Shape);
            using var results = CancellableRun.Run(_session, _runOptions, _inputNames, values, names);
            long batch = inputs[0].Shape[0];
            var named = new Dictionary<string, HostTensor>(outputs);
            for (int o = 0; o < outputs; o++)
                named[names[o]] = OnnxRuntimeForward.CopyOut(results[o], "out:" + names[o], into, results[o].GetTensorTypeAndShape().Shape);
            var derivatives = new Dictionary<string, HostTensor>(wanted.Length);
            for (int j = 0; j < wanted.Length; j++)
                derivatives[wanted[j].Key] = OnnxRuntimeForward.CopyOut(results[outputs + j], wanted[j].Buffer, into, [batch, .. wanted[j].Sample]);
            return (named, derivatives);
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
