using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Testing;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// A version with compiled derivative graphs leaves nothing in use once freed: its ONNX Runtime sessions, the weights
/// they share and the packed copies made of them go with it. Counted in glibc's bytes in use, which fall when memory is
/// freed (the resident size does not: the process keeps its heap), with no other test running. RetirementMemoryTests
/// watches the same through a server's resident size, with compiled graphs off.
/// </summary>
[Collection(nameof(NativeMemoryCollection))]
public class VersionMemoryTests(ITestOutputHelper output)
{
    private const string Model = "wide_classifier";

    [Fact]
    public void VersionsWithCompiledGraphsLeaveNothingInUseWhenFreed()
    {
        Assert.NotNull(NativeHeap.BytesInUse());
        var bytes = File.ReadAllBytes(Fixtures.ModelPath(Model));
        var limits = new EngineLimits { CalibrateAuto = false };
        // The first versions grow what the process keeps whatever is loaded: ONNX Runtime's shared arena, kernel
        // registries, libtorch's and the GC's own structures.
        for (int i = 0; i < 3; i++) Cycle(bytes, limits);
        long start = InUse();

        // Each cycle counts against the bytes in use just before it, and the verdict takes medians: other memory of the
        // process moves the count now and then by a step (3.5 MiB up once in CI; once 23 MiB down in the middle of a
        // cycle, something the tests before this one had left freed late), which moves one cycle, not the median.
        var held = new List<long>();
        var left = new List<long>();
        for (int i = 0; i < 10; i++)
        {
            long before = InUse();
            held.Add(Cycle(bytes, limits) - before);
            left.Add(InUse() - before);
        }
        long growth = InUse() - start;

        output.WriteLine($"{Model}: each version held {MiB(held)} MiB while loaded and left {MiB(left)} MiB once freed; " +
            $"after 10 loaded and freed, {growth / 1048576.0:F2} MiB more in use than before");
        // A version left behind would leave its whole footprint every cycle.
        long footprint = Median(held);
        Assert.True(footprint > 2 << 20, $"a version held only {footprint} bytes (median of {string.Join(", ", held)})");
        Assert.True(Median(left) < footprint / 4, $"a freed version left {Median(left)} bytes in use (median of {string.Join(", ", left)}), each holding {footprint}");
    }

    /// <summary>
    /// Predict's sessions take their tensors from the one arena the derivative graphs share, which holds what the
    /// largest run at one time needed; an arena of their own kept each session's largest run for as long as the version
    /// lived (eight torchvision classifiers warmed up: 19.1 GiB resident with their own arenas, 14.6 GiB with the shared
    /// one, docs/benchmarks.md). Here the first Predict of 256 images grows the shared arena; the same Predict on three
    /// more versions finds room in it.
    /// </summary>
    [Fact]
    public void PredictSessionsShareOneArena()
    {
        var bytes = File.ReadAllBytes(Fixtures.ModelPath("small_cnn"));
        var inputs = new[] { new HostTensor([256, 1, 28, 28], new float[256 * 784]) };
        var versions = new List<ModelVersion>();
        var grown = new List<long>();
        try
        {
            for (int i = 0; i < 4; i++)
            {
                versions.Add(ModelVersion.Load("small_cnn", 1, bytes, new EngineLimits()));
                Assert.Equal("onnxruntime", versions[^1].PredictRuntime);
                long before = InUse();
                versions[^1].Predict(inputs);
                grown.Add(InUse() - before);
            }
        }
        finally
        {
            foreach (var version in versions) version.Dispose();
        }
        output.WriteLine($"bytes in use grown by each version's first Predict of 256 images: {MiB(grown)} MiB");
        // An arena of the session's own grows by ~33 MiB at its first such Predict, whatever the process holds already;
        // the shared one grows once, or not at all where the tests before this one grew it.
        Assert.True(Median(grown[1..]) < 8 << 20, $"later versions' Predicts grew the bytes in use by {MiB(grown[1..])} MiB, the first by {MiB(grown[..1])}");
    }

    /// <summary>
    /// The shared arena keeps what its largest runs needed until it is shrunk (the server does so when a version is freed
    /// and after an idle spell, Engine:ReturnMemoryWhenIdleSeconds): then the bytes a Predict of 256 images grew it by go
    /// back to the heap, while the version stays loaded, and its next Predict gives the same answer.
    /// </summary>
    [Fact]
    public void ShrinkingTheArenaFreesWhatItsLargestRunsLeft()
    {
        using var version = ModelVersion.Load("small_cnn", 1, File.ReadAllBytes(Fixtures.ModelPath("small_cnn")), new EngineLimits());
        var inputs = new[] { new HostTensor([256, 1, 28, 28], Enumerable.Range(0, 256 * 784).Select(i => (float)Math.Sin(i)).ToArray()) };
        float[] first = Logits(version.Predict(inputs));
        Assert.True(OnnxRuntimeArena.Shrink());
        long before = InUse();
        version.Predict(inputs);
        long grown = InUse() - before;
        Assert.True(OnnxRuntimeArena.Shrink());
        long left = InUse() - before;
        output.WriteLine($"a Predict of 256 images grew the bytes in use by {grown / 1048576.0:F1} MiB; after shrinking, {left / 1048576.0:F1} MiB");
        Assert.True(grown > 8 << 20, $"the Predict grew the bytes in use by {grown} bytes only");
        Assert.True(left < grown / 4, $"shrinking left {left} of the {grown} bytes the Predict grew them by");
        Assert.Equal(first, Logits(version.Predict(inputs)));
    }

    // A pooled result array can be longer than its tensor.
    private static float[] Logits(EngineResult result)
    {
        var logits = result.Outputs["logits"];
        return logits.Data[..(int)logits.Count];
    }

    private static long Median(List<long> values) => values.Order().ElementAt(values.Count / 2);

    private static string MiB(List<long> values) => string.Join(", ", values.Select(v => $"{v / 1048576.0:F1}"));

    /// <summary>Loads a version, calls every kind of derivative it compiles, and frees it: the bytes in use while it was loaded.</summary>
    private static long Cycle(byte[] bytes, EngineLimits limits)
    {
        using var model = ModelVersion.Load(Model, 1, bytes, limits);
        using (var scope = NewDisposeScope())
        {
            var inputs = new[] { new HostTensor([2, .. model.Inputs[0].Shape[1..]], new float[2 * Elements(model.Inputs[0].Shape[1..])]) };
            model.Predict(inputs);
            Assert.True(model.Jacobian(inputs, 0, [0], DerivativeMode.Forward).Compiled);
            Assert.True(model.Jacobian(inputs, 0, [0], DerivativeMode.Reverse).Compiled);
            long[] outputSample = model.OutputSampleShape(inputs, 0);
            Assert.True(model.Vjp(inputs, 0, [0], [new HostTensor([2, .. outputSample], new float[2 * Elements(outputSample)])]).Compiled);
            Assert.True(model.Jvp(inputs, 0, [0], inputs[0]).Compiled);
        }
        return InUse();
    }

    private static long Elements(long[] sample) => sample.Aggregate(1L, (a, d) => a * d);

    private static long InUse()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return NativeHeap.BytesInUse()!.Value;
    }
}
