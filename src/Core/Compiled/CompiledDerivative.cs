using JacService.Core.Derivatives;
using JacService.Core.Models;
using Microsoft.ML.OnnxRuntime;

namespace JacService.Core.Compiled;

/// <summary>
/// One derivative graph (<see cref="DerivativeGraphWriter"/>) in its ONNX Runtime session: a model version's outputs
/// and Jacobians for one (wrt, of, mode), any batch size, in one call. The session is thread-safe.
/// </summary>
internal sealed class CompiledJacobian : IDisposable
{
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;
    private readonly string[] _ofNames;
    private readonly long[] _wrtSample;
    private readonly long[][] _ofSamples;

    public CompiledJacobian(DerivativeGraphWriter.Written written, string[] inputNames, string[] outputNames, string[] ofNames, DerivativeMode mode)
    {
        _session = OnnxRuntimeForward.NewSession(written.Model);
        _inputNames = inputNames;
        _outputNames = [.. outputNames, .. ofNames.Select(o => DerivativeGraphWriter.JacobianPrefix + o)];
        _ofNames = ofNames;
        _wrtSample = written.WrtSample;
        _ofSamples = written.OfSamples;
        Mode = mode;
        BytesPerSample = written.BytesPerSample;
    }

    public DerivativeMode Mode { get; }

    /// <summary>The most the derivative nodes hold per sample: every direction of every value on the path, and the Jacobian.</summary>
    public long BytesPerSample { get; }

    /// <summary>Outputs by name, and per output in of its Jacobian [B, ..out, ..wrt], written into <paramref name="into"/> when given.</summary>
    public (Dictionary<string, HostTensor> Outputs, Dictionary<string, HostTensor> Jacobians) Run(HostTensor[] inputs, ResultBuffers? into)
    {
        var values = new OrtValue[inputs.Length];
        try
        {
            for (int i = 0; i < inputs.Length; i++) values[i] = OrtValue.CreateTensorValueFromMemory(inputs[i].Data, inputs[i].Shape);
            using var results = _session.Run(_runOptions, _inputNames, values, _outputNames);
            long batch = inputs[0].Shape[0];
            int outputs = _outputNames.Length - _ofNames.Length;
            var named = new Dictionary<string, HostTensor>(outputs);
            for (int o = 0; o < outputs; o++)
                named[_outputNames[o]] = OnnxRuntimeForward.CopyOut(results[o], "out:" + _outputNames[o], into, results[o].GetTensorTypeAndShape().Shape);
            var jacobians = new Dictionary<string, HostTensor>(_ofNames.Length);
            for (int j = 0; j < _ofNames.Length; j++)
                jacobians[_ofNames[j]] = OnnxRuntimeForward.CopyOut(results[outputs + j], "jac:" + _ofNames[j], into, [batch, .. _ofSamples[j], .. _wrtSample]);
            return (named, jacobians);
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
