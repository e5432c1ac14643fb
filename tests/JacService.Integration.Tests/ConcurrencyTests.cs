using Google.Protobuf;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>Many concurrent callers, merged by the micro-batcher: each gets the answer its request gets alone.</summary>
[Collection(ServerCollection.Name)]
public class ConcurrencyTests(ServerProcess server)
{
    private static Tensor Random(Random rng, params long[] shape)
    {
        var t = new Tensor();
        t.Shape.AddRange(shape);
        t.Data.AddRange(Enumerable.Range(0, (int)shape.Aggregate(1L, (p, d) => p * d)).Select(_ => (float)(rng.NextDouble() * 2 - 1)));
        return t;
    }

    private Func<Task<IMessage>> Call(int i)
    {
        var rng = new Random(i);
        return (i % 4) switch
        {
            0 => async () => await server.Client.PredictAsync(new PredictRequest { Model = "mlp_tanh", Inputs = { ["x"] = Random(rng, 1 + i % 5, 32) } }),
            1 => async () => await server.Client.JacobianAsync(new JacobianRequest { Model = "mlp_tanh", Inputs = { ["x"] = Random(rng, 32) } }),
            2 => async () => await server.Client.BatchJacobianAsync(new BatchJacobianRequest { Model = "mlp_tanh", Inputs = { ["x"] = Random(rng, 1 + i % 7, 32) } }),
            _ => async () => await server.Client.BatchJacobianAsync(new BatchJacobianRequest
            {
                Model = "two_inputs", Wrt = i % 8 == 3 ? "x" : "z", Inputs = { ["x"] = Random(rng, 2, 8), ["z"] = Random(rng, 2, 4) },
            }),
        };
    }

    [Fact]
    public async Task MixedConcurrentCallsGetTheAnswersTheyGetAlone()
    {
        const int calls = 160;
        var alone = new List<IMessage>();
        for (int i = 0; i < calls; i++) alone.Add(await Call(i)());

        var together = await Task.WhenAll(Enumerable.Range(0, calls).Select(i => Task.Run(() => Call(i)())));

        for (int i = 0; i < calls; i++) AssertSame(alone[i], together[i], i);
    }

    private static readonly DerivativeMode[] Modes = [DerivativeMode.Forward, DerivativeMode.Reverse, DerivativeMode.Auto];

    /// <summary>Jacobians in all three modes, Jvps and Vjps with and without a T axis, on two models, interleaved.</summary>
    private Func<Task<IMessage>> ModeCall(int i)
    {
        var rng = new Random(1000 + i);
        var mode = Modes[i % 3];
        return (i % 6) switch
        {
            0 or 1 => async () => await server.Client.BatchJacobianAsync(new BatchJacobianRequest
            {
                Model = "mlp_tanh", Mode = mode, Inputs = { ["x"] = Random(rng, 1 + i % 5, 32) },
            }),
            2 => async () => await server.Client.JacobianAsync(new JacobianRequest { Model = "two_outputs", Mode = mode, Inputs = { ["x"] = Random(rng, 6) } }),
            3 => async () => await server.Client.JvpAsync(new JvpRequest
            {
                Model = "mlp_tanh", Inputs = { ["x"] = Random(rng, 2, 32) }, Tangents = i % 4 == 1 ? Random(rng, 2, 32) : Random(rng, 2, 3, 32),
            }),
            4 => async () => await server.Client.VjpAsync(new VjpRequest
            {
                Model = "two_outputs", Inputs = { ["x"] = Random(rng, 3, 6) },
                Cotangents = { ["mean"] = Random(rng, 3, 2, 3), ["log_var"] = Random(rng, 3, 2, 3) },
            }),
            _ => async () => await server.Client.VjpAsync(new VjpRequest
            {
                Model = "mlp_tanh", Inputs = { ["x"] = Random(rng, 1 + i % 3, 32) }, Cotangents = { ["y"] = Random(rng, 1 + i % 3, 16) },
            }),
        };
    }

    [Fact]
    public async Task MixedModesJvpsAndVjpsConcurrentlyGetTheAnswersTheyGetAlone()
    {
        const int calls = 120;
        var alone = new List<IMessage>();
        for (int i = 0; i < calls; i++) alone.Add(await ModeCall(i)());

        var together = await Task.WhenAll(Enumerable.Range(0, calls).Select(i => Task.Run(() => ModeCall(i)())));

        for (int i = 0; i < calls; i++)
        {
            if (Modes[i % 3] != DerivativeMode.Auto) Assert.Equal(ModeOf(alone[i]), ModeOf(together[i]));
            AssertSame(alone[i], together[i], i);
        }
    }

    /// <summary>
    /// Calls whose inputs or results are large enough to come from the server's array pool (FloatArrayPool, from 21,250
    /// floats): wide_classifier Predicts and Vjps of 170 rows (21,760 floats of input, and of Vjp), mlp_tanh
    /// BatchJacobians of 48 rows (24,576 floats of Jacobian) and Jvps of 40 rows with 20 directions (25,600 floats of
    /// tangents). Split across batches (the test server's MaxBatchSize is 64) and merged with each other; 16 of each
    /// kind stay inside the queue's capacity of 8192 rows per model.
    /// </summary>
    private Func<Task<IMessage>> LargeCall(int i)
    {
        var rng = new Random(2000 + i);
        return (i % 4) switch
        {
            0 => async () => await server.Client.PredictAsync(new PredictRequest { Model = "wide_classifier", Inputs = { ["x"] = Random(rng, 170, 128) } }),
            1 => async () => await server.Client.VjpAsync(new VjpRequest
            {
                Model = "wide_classifier", Inputs = { ["x"] = Random(rng, 170, 128) }, Cotangents = { ["logits"] = Random(rng, 170, 10) },
            }),
            2 => async () => await server.Client.BatchJacobianAsync(new BatchJacobianRequest { Model = "mlp_tanh", Inputs = { ["x"] = Random(rng, 48, 32) } }),
            _ => async () => await server.Client.JvpAsync(new JvpRequest { Model = "mlp_tanh", Inputs = { ["x"] = Random(rng, 40, 32) }, Tangents = Random(rng, 40, 20, 32) }),
        };
    }

    [Fact]
    public async Task ConcurrentCallsWithPooledArraysGetTheAnswersTheyGetAlone()
    {
        const int calls = 64;
        var alone = new List<IMessage>();
        for (int i = 0; i < calls; i++) alone.Add(await LargeCall(i)());

        // Again and again: each round rents the arrays the previous round's responses gave back.
        for (int round = 0; round < 3; round++)
        {
            var together = await Task.WhenAll(Enumerable.Range(0, calls).Select(i => Task.Run(() => LargeCall(i)())));
            for (int i = 0; i < calls; i++) AssertSame(alone[i], together[i], i);
        }
    }

    /// <summary>Within float32 rounding, not bit-for-bit: a batch of different size takes other GEMM blocking paths.</summary>
    private static void AssertSame(IMessage alone, IMessage together, int call)
    {
        // By name, and the same names on both sides: pairing in order would pass over a missing or extra tensor.
        var expectedByName = Tensors(alone);
        var actualByName = Tensors(together);
        Assert.Equal(expectedByName.Keys.Order(), actualByName.Keys.Order());
        foreach (var (name, expected) in expectedByName)
        {
            var actual = actualByName[name];
            Assert.Equal(expected.Shape, actual.Shape);
            float scale = expected.Data.Max(MathF.Abs);
            for (int k = 0; k < expected.Data.Count; k++)
                Assert.True(MathF.Abs(expected.Data[k] - actual.Data[k]) <= 1e-5f * scale, $"call {call} {name}[{k}]: {expected.Data[k]} vs {actual.Data[k]}");
        }
    }

    private static DerivativeMode ModeOf(IMessage m) => m switch
    {
        JacobianResponse j => j.Mode,
        BatchJacobianResponse b => b.Mode,
        JvpResponse j => j.Mode,
        VjpResponse v => v.Mode,
        _ => throw new ArgumentException(m.GetType().Name),
    };

    /// <summary>Every tensor of a response by name; outputs and Jacobians of one output share its name, so each gets a prefix.</summary>
    private static Dictionary<string, Tensor> Tensors(IMessage m) => m switch
    {
        PredictResponse p => Named(p.Outputs, new Dictionary<string, Tensor>()),
        JacobianResponse j => Named(j.Outputs, j.Jacobians),
        BatchJacobianResponse b => Named(b.Outputs, b.Jacobians),
        JvpResponse j => Named(j.Outputs, j.Jvps),
        VjpResponse v => Named(v.Outputs, new Dictionary<string, Tensor> { ["vjp"] = v.Vjp }),
        _ => throw new ArgumentException(m.GetType().Name),
    };

    private static Dictionary<string, Tensor> Named(IDictionary<string, Tensor> outputs, IDictionary<string, Tensor> jacobians) =>
        outputs.Select(o => ("out " + o.Key, o.Value)).Concat(jacobians.Select(j => ("jac " + j.Key, j.Value)))
            .ToDictionary(p => p.Item1, p => p.Item2);
}
