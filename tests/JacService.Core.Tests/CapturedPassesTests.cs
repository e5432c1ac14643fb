using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Ops;
using JacService.Testing;
using TorchSharp;

namespace JacService.Core.Tests;

/// <summary>
/// The bookkeeping around CUDA graphs (which pass is recorded when, static inputs refreshed, outputs read before the
/// next replay, fallbacks, the cap), with <see cref="RerunRecorder"/> standing in for the GPU: every graphed result
/// must equal the same call on a model without graphs.
/// </summary>
public class CapturedPassesTests
{
    // The interpreter's passes are what a GPU records; compiled derivative graphs are the CPU's own unit, off on a GPU.
    private static ModelVersion Load(string name, EngineLimits? limits = null) =>
        ModelVersion.Load(name, 1, File.ReadAllBytes(Fixtures.ModelPath(name)), (limits ?? new EngineLimits()) with { CompileDerivatives = false });

    /// <summary>The reference inputs scaled by <paramref name="scale"/>: another batch of the same shapes.</summary>
    private static HostTensor[] Inputs(ModelVersion model, Reference reference, float scale) =>
        model.ValidateInputs(reference.Inputs.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape, p.Value.Floats.Select(v => v * scale).ToArray())),
            batched: true);

    private static void Same(EngineResult expected, EngineResult actual, string what)
    {
        Assert.Equal(expected.Mode, actual.Mode);
        foreach (var (part, want, got) in new[] { ("output", expected.Outputs, actual.Outputs), ("derivative", expected.Jacobians, actual.Jacobians) })
        {
            Assert.Equal(want.Keys.Order(), got.Keys.Order());
            foreach (var (name, tensor) in want)
            {
                Assert.Equal(tensor.Shape, got[name].Shape);
                Assert.True(tensor.Data.AsSpan().SequenceEqual(got[name].Data), $"{what}: {part} {name} differs from the eager call");
            }
        }
    }

    public static TheoryData<string> Models => new(["mlp_tanh", "two_inputs", "two_outputs", "small_cnn"]);

    [Theory]
    [MemberData(nameof(Models))]
    public void GraphedPassesEqualEagerOnesCallAfterCall(string name)
    {
        var reference = Fixtures.Load(name);
        using var eager = Load(name);
        using var graphed = Load(name);
        var recorder = new RerunRecorder();
        graphed.RecordPassesWith(recorder);
        var calls = Calls(eager);
        using var scope = torch.NewDisposeScope();
        for (int call = 0; call < 4; call++)
        {
            float scale = 1f + 0.25f * call;
            foreach (var (what, run) in calls)
                Same(run(eager, Inputs(eager, reference, scale)), run(graphed, Inputs(graphed, reference, scale)), $"{name} {what}, call {call}");
        }
        // Each pass ran eagerly once, was recorded on its second call and replayed from then on.
        Assert.Equal(calls.Length, recorder.Recordings);
        Assert.Equal(calls.Length * 3, recorder.Replays);
        Assert.Equal((true, calls.Length), (graphed.Graphs.Enabled, graphed.Graphs.Recorded));
        Assert.Empty(graphed.Graphs.Fallbacks);
    }

    /// <summary>Every kind of pass, on input 0 and all outputs: Predict, Jacobian both ways, Jvp and Vjp.</summary>
    private static (string What, Func<ModelVersion, HostTensor[], EngineResult> Call)[] Calls(ModelVersion model)
    {
        int wrt = 0;
        var of = model.ResolveOf([]);
        return
        [
            ("Predict", (m, x) => m.PredictInEngine(x)),
            ("Jacobian forward", (m, x) => m.Jacobian(x, wrt, of, DerivativeMode.Forward)),
            ("Jacobian reverse", (m, x) => m.Jacobian(x, wrt, of, DerivativeMode.Reverse)),
            ("Jvp", (m, x) => m.Jvp(x, wrt, of, new HostTensor(x[wrt].Shape, x[wrt].Data.Select((v, i) => MathF.Sin(i + v)).ToArray()))),
            ("Vjp", (m, x) =>
            {
                var cotangents = of.Select(o =>
                {
                    long[] shape = [x[0].Shape[0], .. m.OutputSampleShape(x, o)];
                    return new HostTensor(shape, Enumerable.Range(0, (int)shape.Aggregate(1L, (a, b) => a * b)).Select(i => MathF.Cos(i * x[0].Data[0])).ToArray());
                }).ToArray();
                return m.Vjp(x, wrt, of, cotangents);
            }),
        ];
    }

    public static TheoryData<string> AllModels => new(Fixtures.Names);

    /// <summary>
    /// A pass that reads a value off the device cannot be recorded (on the H200 small_cnn's Pad and two_inputs' Slice
    /// fell back to eager passes for that), and on a GPU it stalls the stream: after the first call of each kind has
    /// built its plan, no pass over any fixture reads a value back but its results.
    /// </summary>
    [Theory]
    [MemberData(nameof(AllModels))]
    public void PassesOverAPlanReadNothingOffTheDevice(string name)
    {
        var reference = Fixtures.Load(name);
        using var model = Load(name);
        using var scope = torch.NewDisposeScope();
        foreach (var (what, run) in Calls(model))
        {
            run(model, Inputs(model, reference, 1f));
            long before = HostValues.DeviceReads;
            run(model, Inputs(model, reference, 1.5f));
            Assert.True(HostValues.DeviceReads == before, $"{name} {what}: {HostValues.DeviceReads - before} values read off the device");
        }
    }

    /// <summary>
    /// Executors that want the same graph at once take turns rather than run the pass eagerly beside the replay
    /// (on a GPU an eager run costs several replays): after the key's first run, which is eager, every call replays.
    /// </summary>
    [Fact]
    public async Task ExecutorsWantingTheSameGraphTakeTurns()
    {
        var reference = Fixtures.Load("mlp_tanh");
        using var eager = Load("mlp_tanh");
        using var graphed = Load("mlp_tanh");
        var recorder = new RerunRecorder();
        graphed.RecordPassesWith(recorder);
        const int threads = 4, callsEach = 25;
        var x = Inputs(eager, reference, 1f);
        EngineResult expected;
        using (torch.NewDisposeScope()) expected = eager.Jacobian(x, 0, [0], DerivativeMode.Reverse);
        await Task.WhenAll(Enumerable.Range(0, threads).Select(_ => Task.Factory.StartNew(() =>
        {
            for (int call = 0; call < callsEach; call++)
            {
                using var scope = torch.NewDisposeScope();
                Same(expected, graphed.Jacobian(x, 0, [0], DerivativeMode.Reverse), $"call {call}");
            }
        }, TaskCreationOptions.LongRunning)).ToArray());
        Assert.Equal(1, recorder.Recordings);
        Assert.Equal(threads * callsEach - 1, recorder.Replays);
    }

    [Fact]
    public void APassThatCannotBeRecordedRunsEagerlyAndSaysWhyOnce()
    {
        var reference = Fixtures.Load("mlp_tanh");
        using var eager = Load("mlp_tanh");
        using var graphed = Load("mlp_tanh");
        // As libtorch words it: the message, then its C++ stack, which stays out of the log line and GetModel.
        graphed.RecordPassesWith(new RerunRecorder
        {
            Failure = "operation not permitted when stream is capturing\nException raised from capture_begin at /pytorch/aten/src/ATen/cuda/CUDAGraph.cpp:120 (most recent call first):\nframe #0: c10::Error::Error(c10::SourceLocation) + 0x9d (0x7e870817105d in /opt/torch/lib/libc10.so)",
        });
        var reported = new List<(string Pass, string Reason)>();
        graphed.PassFellBackToEager += (pass, reason) => reported.Add((pass, reason));
        using var scope = torch.NewDisposeScope();
        for (int call = 0; call < 4; call++)
        {
            var x = Inputs(eager, reference, 1f + call);
            Same(eager.Jacobian(x, 0, [0], DerivativeMode.Reverse), graphed.Jacobian(x, 0, [0], DerivativeMode.Reverse), $"call {call}");
        }
        var (pass, reason) = Assert.Single(reported);
        Assert.Equal("operation not permitted when stream is capturing", reason);
        Assert.StartsWith("jacobian Reverse wrt 0 of 0 shapes ", pass);
        Assert.Equal([(pass, reason)], graphed.Graphs.Fallbacks);
        Assert.Equal(0, graphed.Graphs.Recorded);
    }

    [Fact]
    public void GraphsPerVersionAreCappedAndFreedWithIt()
    {
        var reference = Fixtures.Load("mlp_tanh");
        var recorder = new RerunRecorder();
        var graphed = Load("mlp_tanh", new EngineLimits { MaxCachedPlans = 2 });
        graphed.RecordPassesWith(recorder);
        using (var scope = torch.NewDisposeScope())
        {
            // Three batch sizes, each called twice: two are recorded, the third stays eager (not a failure).
            foreach (int rows in new[] { 1, 2, 3 })
            {
                var all = Inputs(graphed, reference, 1f);
                var x = new[] { new HostTensor([rows, .. all[0].Shape[1..]], all[0].Data[..(rows * (int)all[0].Shape[1])]) };
                graphed.PredictInEngine(x);
                graphed.PredictInEngine(x);
            }
        }
        Assert.Equal((2, 2), (recorder.Recordings, graphed.Graphs.Recorded));
        Assert.Empty(graphed.Graphs.Fallbacks);
        graphed.Dispose();
        Assert.Equal(2, recorder.Freed);
    }

    [Fact]
    public void TheGraphLibraryIsAbsentHereAndTheReasonSaysWhereItComesFrom()
    {
        // A CPU build: src/Native is built only where libtorch has CUDA.
        Assert.StartsWith("libJacServiceCudaGraphs.so is not loadable (", Graphs.GraphLibrary.Availability);
        Assert.EndsWith("it is built from src/Native where libtorch has CUDA", Graphs.GraphLibrary.Availability);
    }

    [Fact]
    public void WithoutGraphsNothingIsRecordedOrKept()
    {
        using var model = Load("pinn");
        Assert.Equal((false, 0), (model.Graphs.Enabled, model.Graphs.Recorded));
        Assert.Equal("the device is the CPU", model.Limits.CudaGraphsNote);
    }
}
