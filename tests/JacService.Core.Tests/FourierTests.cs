using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Ops;
using JacService.Testing;
using TorchSharp;

namespace JacService.Core.Tests;

/// <summary>What DFT refuses, at load and per request, with the reason (OpRows checks what it serves).</summary>
public class FourierTests
{
    [Theory]
    [InlineData("axis as an attribute at opset 20", 20, "axis is an input from opset 20, not an attribute")]
    [InlineData("axis as an input at opset 17", 17, "DFT takes its axis as an input from opset 20 (the model's is 17)")]
    [InlineData("DFT at opset 16", 16, "DFT is defined from opset 17; the model imports opset 16")]
    public void WhatTheDefinitionsLeaveOpenIsRefusedAtLoad(string what, int opset, string message)
    {
        var g = new OnnxBuilder(opset);
        var x = g.X(2, 8, 1);
        _ = what switch
        {
            "axis as an attribute at opset 20" => g.Node("DFT", [x], ("axis", 1)),
            "axis as an input at opset 17" => g.Node("DFT", [x, "", g.IntsShaped([], 1)]),
            _ => g.Node("DFT", [x]),
        };
        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load(what, 1, g.ToBytes(), new EngineLimits()));
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData("along the batch axis", "DFT along the batch axis (axis 0) would mix samples")]
    [InlineData("a onesided transform of a complex signal", "a onesided DFT takes a real signal [.., n, 1], got [2, 8, 2]")]
    [InlineData("a onesided inverse of a real signal", "a onesided inverse DFT takes a half spectrum [.., n, 2], got [2, 8, 1]")]
    [InlineData("more bins than an odd length uses", "a onesided inverse DFT to length 5 takes its 3 bins, got 4; pad or cut the spectrum first")]
    [InlineData("fewer bins than the length uses", "a onesided inverse DFT to length 8 takes its 5 bins or more, got 4; pad or cut the spectrum first")]
    [InlineData("a last axis of 3", "DFT takes a signal [batch, .., n, 1] (real) or [batch, .., n, 2] (complex), got [2, 8, 3]")]
    [InlineData("a dft_length of 0", "DFT dft_length 0 is not a length of 1 or more")]
    public void WhatARequestCannotTransformIsRefusedWithTheReason(string what, string message)
    {
        var g = new OnnxBuilder(17);
        _ = what switch
        {
            "along the batch axis" => g.Node("DFT", [g.X(2, 8, 1)], ("axis", 0)),
            "a onesided transform of a complex signal" => g.Node("DFT", [g.X(2, 8, 2)], ("onesided", 1)),
            "a last axis of 3" => g.Node("DFT", [g.X(2, 8, 3)]),
            "a onesided inverse of a real signal" => g.Node("DFT", [g.X(2, 8, 1)], ("inverse", 1), ("onesided", 1)),
            "more bins than an odd length uses" => g.Node("DFT", [g.X(2, 4, 2), g.IntsShaped([], 5)], ("inverse", 1), ("onesided", 1)),
            "fewer bins than the length uses" => g.Node("DFT", [g.X(2, 4, 2), g.IntsShaped([], 8)], ("inverse", 1), ("onesided", 1)),
            _ => g.Node("DFT", [g.X(2, 8, 1), g.IntsShaped([], 0)]),
        };
        // The input's first axis is dynamic, so the node is first planned for a request.
        using var model = ModelVersion.Load(what, 1, OpForwardOrtTests.OrtModel(g.ToBytes(), OnnxType.Float), new EngineLimits());
        using var scope = torch.NewDisposeScope();
        var shape = g.Inputs[0].Shape;
        var e = Assert.Throws<NodeEvaluationException>(() =>
            model.Jacobian([new HostTensor(shape, new float[shape.Aggregate(1L, (p, d) => p * d)])], 0, [0], DerivativeMode.Forward));
        Assert.Contains(message, e.Message);
    }

    /// <summary>
    /// Short transforms run as a matrix product, long ones through libtorch's FFT (<see cref="Fourier.IsDense"/>); the
    /// rows check only the first, so here both ways meet on the same signals, forward and transposed, in float64.
    /// </summary>
    [Theory]
    [InlineData(8, 1, 8, false, false, 1)]
    [InlineData(8, 1, 6, false, true, 1)]
    [InlineData(8, 1, 11, false, true, 1)]
    [InlineData(5, 2, 7, true, false, 2)]
    [InlineData(6, 2, 4, false, false, 1)]
    [InlineData(7, 2, 7, true, false, 1)]
    [InlineData(5, 2, 8, true, true, 1)]
    [InlineData(5, 2, 9, true, true, 2)]
    [InlineData(9, 2, 8, true, true, 1)]
    [InlineData(6, 2, 10, true, true, 1)]
    public void TheMatrixAndTheFftAgree(long n, int channels, long length, bool inverse, bool oneSided, long axis)
    {
        using var scope = torch.NewDisposeScope();
        long[] shape = axis == 1 ? [3, n, 4, channels] : [3, 4, n, channels];
        var transform = Fourier.For(shape, axis, length, inverse, oneSided);
        var x = torch.randn([2, .. shape], torch.ScalarType.Float64, generator: new torch.Generator(7));
        var dense = Fourier.ApplyDense(transform, x, axis + 1);
        var fft = Fourier.ApplyByFft(transform, x, axis + 1);
        Assert.True(dense.allclose(fft, rtol: 1e-12, atol: 1e-12), $"forward: {(dense - fft).abs().max().item<double>():E2}");
        var ct = torch.randn(dense.shape, torch.ScalarType.Float64, generator: new torch.Generator(8));
        var back = Fourier.PullDense(transform, ct, n, channels);
        var backFft = Fourier.PullByFft(transform, ct, n, channels);
        Assert.True(back.allclose(backFft, rtol: 1e-12, atol: 1e-12), $"transposed: {(back - backFft).abs().max().item<double>():E2}");
        // The transpose: <A x, c> = <x, Aᵀ c>.
        Assert.Equal((dense * ct).sum().item<double>(), (x * back).sum().item<double>(), 1e-10);
    }

    /// <summary>
    /// A transform too long for the matrix (here 300 points, onesided, then the inverse of its 151 bins padded to 200, or
    /// their irfft back to 300 points) compiles as ONNX Runtime's own DFT nodes, both ways; the rows, all short, compile as
    /// a MatMul.
    /// </summary>
    [Theory]
    [InlineData(DerivativeMode.Forward, false)]
    [InlineData(DerivativeMode.Reverse, false)]
    [InlineData(DerivativeMode.Forward, true)]
    [InlineData(DerivativeMode.Reverse, true)]
    public void ALongTransformCompilesAsDftNodes(DerivativeMode mode, bool realInverse)
    {
        var g = new OnnxBuilder(17);
        var spectrum = g.Node("DFT", [g.X(2, 300, 1)], ("onesided", 1));
        // Or back to 300 real points by irfft (151 bins by 300 points, over the matrix's 2^16 elements too).
        _ = realInverse
            ? g.Node("DFT", [spectrum], ("inverse", 1), ("onesided", 1))
            : g.Node("DFT", [spectrum, g.IntsShaped([], 200)], ("inverse", 1));
        var bytes = OpForwardOrtTests.OrtModel(g.ToBytes(), OnnxType.Float);
        using var compiled = ModelVersion.Load("long", 1, bytes, new EngineLimits { CalibrateAuto = false });
        using var interpreted = ModelVersion.Load("long", 1, bytes, new EngineLimits { CompileDerivatives = false });
        var rng = new Random(3);
        var inputs = new[] { new HostTensor([2, 300, 1], Enumerable.Range(0, 600).Select(_ => (float)rng.NextDouble()).ToArray()) };
        using var scope = torch.NewDisposeScope();
        var reference = interpreted.Jacobian(inputs, 0, [0], mode);
        var served = compiled.Jacobian(inputs, 0, [0], mode);
        Assert.True(served.Compiled, string.Join("; ", compiled.CompiledDerivatives.Select(d => d.Note)));
        var (expected, actual) = (reference.Jacobians.Values.Single(), served.Jacobians.Values.Single());
        Assert.Equal(expected.Shape, actual.Shape);
        double scale = expected.Data.Max(Math.Abs);
        double error = expected.Data.Zip(actual.Data, (e, a) => Math.Abs(e - a)).Max();
        Assert.True(error <= 1e-4 * scale, $"max abs error {error:E2} against {scale:G3}");
    }
}
