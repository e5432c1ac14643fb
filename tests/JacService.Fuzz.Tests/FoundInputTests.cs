using JacService.Core;
using JacService.Core.Models;
using JacService.Server.Batching;
using JacService.Server.Telemetry;
using JacService.Testing;

namespace JacService.Fuzz.Tests;

/// <summary>
/// Inputs the fuzz runs found (tests/JacService.Fuzz.Tests/Inputs), kept as they came out of afl-fuzz, each with the
/// answer the fixed product gives.
/// </summary>
public sealed class FoundInputTests
{
    private static readonly JacServiceMetrics Metrics = new(new System.Diagnostics.Metrics.Meter("JacService.Fuzz.Tests"));

    public static TheoryData<string> ReduceMeanOverBatch => new() { "reducemean-over-batch-8x4.onnx", "reducemean-over-batch-scalar.onnx" };

    private static string Input(string harness, string name) => Path.Combine(Fixtures.Root, "tests", "JacService.Fuzz.Tests", "Inputs", harness, name);

    /// <summary>
    /// layernorm_gelu mutated so that its last ReduceMean averages over the batch axis: output 'y' is [8, 4] (or a
    /// scalar) whatever the batch. It loads (its batch-one plan evaluates); the engine served its outputs as they came,
    /// which the batcher then cut into rows that were not the caller's (or, for the scalar, failed on with an index out
    /// of range: INTERNAL). Now every result is refused naming the node and the shape.
    /// </summary>
    [Theory]
    [MemberData(nameof(ReduceMeanOverBatch))]
    public void AModelWhoseOutputLosesTheBatchAxisIsRefusedPerRequest(string name)
    {
        var outcome = new ModelHarness().Run(File.ReadAllBytes(Input("model", name)));
        Assert.StartsWith("loaded; request refused (NodeEvaluationException): node '/ReduceMean' (ReduceMean): output 'y' has shape [", outcome);
        Assert.EndsWith("for a batch of 2; every output must keep the inputs' batch axis first", outcome);
    }

    /// <summary>
    /// Found by the `model` harness (600 s, 2026-12-07): a Relu whose input is named "" (absent) feeding a MaxPool. The
    /// rewrite that moves the MaxPool before the Relu threw IndexOutOfRangeException at load, which the server logs as an
    /// internal error. Now the rewrite leaves such a node alone, and the model is refused naming it.
    /// </summary>
    [Fact]
    public void AReluWithoutItsInputBeforeAMaxPoolIsRefusedAtLoad()
    {
        var outcome = new ModelHarness().Run(File.ReadAllBytes(Input("model", "relu-without-input-before-maxpool.onnx")));
        Assert.Equal("refused: the graph does not evaluate for a batch of one: node '/Relu' (Relu): input 0 is required", outcome);
    }

    /// <summary>
    /// layernorm_gelu mutated so that an initializer declares dozens of dims, one of them 0: the size limits count it as empty,
    /// and the reader's checked product of its dims overflowed before reaching the 0 (an OverflowException, which the
    /// server logs as an internal error while loading). Now it is refused like any initializer with too many elements.
    /// </summary>
    [Fact]
    public void AnEmptyInitializerWhoseOtherDimsOverflowIsRefusedAtLoad()
    {
        var outcome = new ModelHarness().Run(File.ReadAllBytes(Input("model", "zero-length-axis-overflow.onnx")));
        Assert.StartsWith("refused: initializer: tensor 'ln.weight' has dims [32, 10014, 61, ", outcome);
        Assert.EndsWith("]: over 2,147,483,647 elements without its zero-length axes, more than supported", outcome);
    }

    /// <summary>
    /// The model harness's one-minute run in CI (2026-12-05) found files the reader loads but a second parse refused:
    /// inside a Constant's tensor, a field with wire type 7, which no protobuf message may hold. The reader drops unknown
    /// fields, so it loaded; the compiled derivative graph re-parsed the file keeping them, and its Jacobian threw
    /// InvalidProtocolBufferException. afl's inputs went with the run; this one is written by hand to the same shape
    /// (x + constant, then Tanh). The graph is now written from the file as the reader parses it, and anything else that
    /// stops a graph from being written leaves the interpreter to serve.
    /// </summary>
    [Fact]
    public void AFieldOfAnInvalidWireTypeInAConstantStillCompilesItsDerivatives()
    {
        var bytes = File.ReadAllBytes(Input("model", "invalid-wire-type-in-constant.onnx"));
        Assert.Equal("loaded; served", new ModelHarness().Run(bytes));
        using var model = ModelVersion.Load("wire-type", 1, bytes, new EngineLimits { CalibrateAuto = false });
        using var scope = TorchSharp.torch.NewDisposeScope();
        var result = model.Jacobian([new HostTensor([2, 4], [0, 1, 2, 3, -1, -2, -3, -4])], 0, [0], Core.Derivatives.DerivativeMode.Reverse);
        Assert.True(result.Compiled, model.CompiledDerivatives.Single().Note);
        // dz/dx = diag(1 - tanh²(x + c)) per sample, c = [0.5, -1, 2, 0.25].
        float[] c = [0.5f, -1f, 2f, 0.25f], x = [0, 1, 2, 3, -1, -2, -3, -4];
        var jacobian = result.Jacobians["z"];
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                {
                    float expected = i == j ? 1 - MathF.Pow(MathF.Tanh(x[b * 4 + i] + c[i]), 2) : 0;
                    Assert.Equal(expected, jacobian.Data[b * 16 + i * 4 + j], 5);
                }
    }

    /// <summary>
    /// The model harness's 900 s run of 2026-12-06 (6.0 M executions): the local-function export of convnext_blocks mutated
    /// so that one LayerNormalization's bias is named "" (omitted, which ONNX allows). The engine loads and serves it; the
    /// compiled Jacobian graph, which carries that node, killed the process with SIGSEGV while ONNX Runtime 1.32 made its
    /// session, in its SkipLayerNormFusion pass, and a server loading the file died with it (ONNX Runtime's own parser
    /// refuses the mutated file, so Predict was the engine's). That pass is now off for every session; the op row
    /// "LayerNormalization scale, bias omitted by an empty name" holds the same node alone.
    /// </summary>
    [Fact]
    public void ALayerNormalizationWhoseBiasIsNamedEmptyIsServedWithoutKillingTheProcess()
    {
        var bytes = File.ReadAllBytes(Input("model", "layernorm-bias-named-empty.onnx"));
        Assert.Equal("loaded; served", new ModelHarness().Run(bytes));
        Assert.Equal("loaded; served", new ModelHarness(onnxRuntime: true).Run(bytes));
    }

    /// <summary>
    /// The model harness's 600 s run of 2026-12-05 (3.3 M executions): mixed_activations mutated so that a ReduceMax has
    /// keepdims 2. The engine read it as "keep" (not 0) and loaded it; its compiled derivative graph, which carries the
    /// model's own nodes, ran in ONNX Runtime, which read it as "not 1" and failed on a broadcast, and the Jacobian threw
    /// OnnxRuntimeException. Flags other than 0 and 1 are now refused at load; and a graph ONNX Runtime fails to run leaves
    /// the call to the interpreter.
    /// </summary>
    [Fact]
    public void AFlagAttributeOtherThanZeroOrOneIsRefusedAtLoad()
    {
        var outcome = new ModelHarness().Run(File.ReadAllBytes(Input("model", "reducemax-keepdims-2.onnx")));
        Assert.Equal("refused: node '/ReduceMax' (ReduceMax): attribute keepdims is 2, where ONNX defines a flag, 0 or 1", outcome);
    }

    /// <summary>
    /// The control_flow seed mutated (2026-12-05): the Loop inside its Scan's body counted 2^60 iterations. The unrolling's
    /// size check multiplied the count by the body's size, which overflowed into a small number and passed, and the
    /// harness then copied the body until afl called it a hang (the process grew without bound). The check now divides.
    /// </summary>
    [Fact]
    public void ALoopCountNearTwoToTheSixtyIsRefusedBeforeCopying()
    {
        var outcome = new ModelHarness().Run(File.ReadAllBytes(Input("model", "loop-count-2-to-the-60.onnx")));
        Assert.Equal("refused: node 'Scan_0/0/Loop' (Loop): 1,152,921,504,606,846,976 iterations of a 3-node body would unroll to over Limits:MaxNodes 10,000 nodes", outcome);
    }

    /// <summary>
    /// Seven inputs of the same 15-minute run (2026-12-05, the control_flow seed and scripted_rnn mutated): a Shape node
    /// with no input on the path to a Loop's count or an If's condition. Working out the count read Shape's first input
    /// without asking whether it had one (ArgumentOutOfRangeException). Now the count is not fixed, and the node refused.
    /// </summary>
    [Theory]
    [InlineData("shape-without-input.onnx", "refused: node '/Loop' (Loop): its trip count '/Cast_1_output_0' is not a count fixed when the model loads")]
    [InlineData("shape-without-input-if.onnx", "refused: node 'If_1' (If): its condition 'long' is not fixed when the model loads")]
    public void AShapeWithoutAnInputLeavesACountOpen(string file, string refusal)
    {
        var outcome = new ModelHarness().Run(File.ReadAllBytes(Input("model", file)));
        Assert.StartsWith(refusal, outcome);
    }

    /// <summary>
    /// Two copies of a BatchHessian of wide_classifier on 3 rows (128 inputs: 8,256 direction pairs per output), queued
    /// behind one executor thread: legitimate work that ran ~11 s, past afl's 10 s per input, so the fuzz run called it a
    /// hang. The harness's calls now carry a deadline, as real callers' do, and such work ends as DEADLINE_EXCEEDED (a
    /// running batch stops between ops once its callers have gone) within the limit. The harness's own 4 s deadline was
    /// met by a faster CI machine (2026-12-04), so this test gives the calls 250 ms: the work takes seconds anywhere. In
    /// the interpreter, that is: since second derivatives compile (2026-12-06), wide_classifier's Hessian is a graph of
    /// zeros that answers at once, and the test keeps to the interpreter, whose running batch is what stops between ops.
    /// </summary>
    [Fact]
    public void SlowButLegitimateWorkEndsAtTheCallsDeadline()
    {
        using var harness = new RequestHarness(TimeSpan.FromMilliseconds(250), ModelHarness.Limits with { CompileDerivatives = false });
        var outcome = harness.Run(File.ReadAllBytes(Input("request", "wide-hessian-two-copies.bin")));
        Assert.StartsWith("BatchHessianRequest: DeadlineExceeded: ", outcome);
    }

    /// <summary>
    /// The upsampler fixture (as model-local functions) whose bicubic resize targets 3,080 x 8 pixels instead of 8 x 8
    /// (a 600 s model run of 2026-12-06, 117 s in): 12,320 outputs per sample. Its reverse-mode Jacobian is legitimate
    /// but a minute and a half of work, which afl called a hang; the harness now stops a batch at a deadline, as a
    /// caller's would. And before that work began, the reverse-mode graph wrote a 600 MB identity seed (12,320² floats)
    /// and ONNX Runtime spent 12 s reading it, before the working memory refused the graph: it is now refused unwritten.
    /// </summary>
    [Fact]
    public void TwelveThousandOutputsPerSampleStopAtTheDeadlineWithoutWritingAGraph()
    {
        var bytes = File.ReadAllBytes(Input("model", "upsampler-12320-outputs.onnx"));
        Assert.Equal("loaded; stopped at the deadline (0.25 s)", new ModelHarness(onnxRuntime: false, TimeSpan.FromMilliseconds(250)).Run(bytes));

        using var model = ModelVersion.Load("upsampler", 1, bytes, ModelHarness.Limits);
        using var scope = TorchSharp.torch.NewDisposeScope();
        using (var stopped = new CancellationTokenSource())
        using (Core.Planning.BatchCancellation.Enter(stopped.Token))
        {
            stopped.Cancel();
            Assert.Throws<OperationCanceledException>(() => model.Jacobian([new HostTensor([2, 2, 3, 3], new float[36])], 0, [0], Core.Derivatives.DerivativeMode.Reverse));
        }
        Assert.Matches(@"^the derivative graph would hold [\d,]+ bytes for one sample \(607,129,600 of them its identity seed\), over Engine:WorkingMemoryMiB",
            model.CompiledDerivatives.Single().Note);
    }

    /// <summary>
    /// Written by hand (2026-12-03), after ModelInfer joined the request harness and its decoding was read for what the
    /// fuzzer might not reach: element counts that overflow. Before the fix, a Predict of mlp_tanh with shape
    /// [2^59, 32] and no values passed the length check (2^59 x 32 wrapped to 0) and its 2^59 rows waited in the queue
    /// until the caller's deadline, forever without one; ModelInfer's raw contents of 2^62 FP32 values (2^62 x 4 bytes
    /// wrapped to 0) and a shape of 2^64 elements were INTERNAL (OverflowException).
    /// </summary>
    [Theory]
    [InlineData("predict-rows-wrap-to-no-values.bin",
        "PredictRequest: InvalidArgument: input 'x': shape [576460752303423488, 32] has more elements than a tensor can hold, got 0 values")]
    [InlineData("modelinfer-raw-size-wraps-to-no-bytes.bin",
        "ModelInferRequest: InvalidArgument: input 'x' has 0 bytes of raw contents; its shape takes 4611686018427387904 values of FP32, 4 bytes each")]
    [InlineData("modelinfer-shape-overflows.bin",
        "ModelInferRequest: InvalidArgument: input 'x' has shape [4294967296, 4294967296]: more elements than a tensor can hold")]
    public void ShapesWhoseElementCountOverflowsAreRefusedNamingTheShape(string name, string expected)
    {
        using var harness = new RequestHarness();
        Assert.Equal(expected, harness.Run(File.ReadAllBytes(Input("request", name))));
    }

    /// <summary>
    /// Found by the request harness's REST method in its first run (2026-12-07, 7 crashes in 600 s, all this): JSON whose
    /// structure parses but whose key or string is not UTF-8, which System.Text.Json reports only as one is read, with an
    /// InvalidOperationException. Before the fix the REST binding answered it INTERNAL, with a stack trace in the log.
    /// </summary>
    [Theory]
    [InlineData("rest-key-not-utf8.bin")]
    [InlineData("rest-parameter-not-utf8.bin")]
    public void RestBodiesWhoseStringsAreNotUtf8AreRefused(string name)
    {
        using var harness = new RequestHarness();
        Assert.StartsWith("RestInfer: InvalidArgument: the request body is not valid UTF-8: Unable to translate bytes [",
            harness.Run(File.ReadAllBytes(Input("request", name))));
    }

    /// <summary>The same models behind the batcher, with ONNX Runtime serving Predict where it takes the file, as the server runs them.</summary>
    [Theory]
    [MemberData(nameof(ReduceMeanOverBatch))]
    public async Task RequestsBatchedTogetherOnSuchAModelEachGetTheNodesError(string name)
    {
        using var model = ModelVersion.Load("mutated", 1, File.ReadAllBytes(Input("model", name)), new EngineLimits());
        await using var batcher = new ModelBatcher(model,
            new BatchingOptions { MaxBatchSize = 4, MaxQueueDelayMicroseconds = 20_000, AdaptiveDelay = false, ExecutorThreads = 1 }, TimeProvider.System, Metrics);
        var calls = Enumerable.Range(0, 3).Select(i =>
        {
            HostTensor[] x = [new HostTensor([1, 4, 16], Enumerable.Range(0, 64).Select(k => 0.01f * (k + i)).ToArray())];
            return batcher.SubmitAsync(WorkKey.For(WorkKind.Predict, x), x, null, CancellationToken.None);
        }).ToList();
        foreach (var call in calls)
        {
            var e = await Assert.ThrowsAsync<NodeEvaluationException>(() => call);
            Assert.Equal("/ReduceMean", e.NodeName);
            Assert.Contains("every output must keep the inputs' batch axis first", e.Message);
        }
    }
}
