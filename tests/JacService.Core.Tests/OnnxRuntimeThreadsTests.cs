using JacService.Core.Models;
using JacService.Testing;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// A version's ONNX Runtime sessions run on the threads Engine limits give them (the server's Batching:IntraOpThreads):
/// a lone caller of a large model gets both cores, as libtorch's passes do (ResNet-18's saliency Vjp of one image: 93 ms
/// on one thread, 63 ms on two, docs/benchmarks.md). Counts the process's threads, so it runs alone.
/// </summary>
[Collection(nameof(NativeMemoryCollection))]
public class OnnxRuntimeThreadsTests
{
    [Fact]
    public void SessionsRunOnTheirOwnPoolOfThreadsAndAgreeWithOne()
    {
        var bytes = File.ReadAllBytes(Fixtures.ModelPath("small_cnn"));
        using var one = ModelVersion.Load("small_cnn", 1, bytes, new EngineLimits { CalibrateAuto = false });
        int before = Threads();
        // Predict's session makes its pool at load: seven threads beside the caller's.
        using var eight = ModelVersion.Load("small_cnn", 1, bytes, new EngineLimits { CalibrateAuto = false, OnnxRuntimeThreads = 8 });
        int after = Threads();
        Assert.True(after - before >= 5, $"{before} threads before loading with 8 ONNX Runtime threads, {after} after");

        var rng = new Random(3);
        var inputs = new[] { new HostTensor([4, 1, 28, 28], Enumerable.Range(0, 4 * 784).Select(_ => (float)rng.NextDouble()).ToArray()) };
        var cotangents = new[] { new HostTensor([4, 10], Enumerable.Range(0, 40).Select(i => (float)Math.Cos(i)).ToArray()) };
        using var scope = NewDisposeScope();
        CompiledDerivativesTests.AssertClose("Predict", one.Predict(inputs).Outputs, eight.Predict(inputs).Outputs);
        var (a, b) = (one.Vjp(inputs, 0, [0], cotangents), eight.Vjp(inputs, 0, [0], cotangents));
        Assert.True(a.Compiled && b.Compiled);
        CompiledDerivativesTests.AssertClose("Vjp", a.Jacobians, b.Jacobians);
    }

    private static int Threads() => Directory.GetDirectories("/proc/self/task").Length;
}
