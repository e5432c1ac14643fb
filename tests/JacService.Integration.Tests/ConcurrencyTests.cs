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

        // Within float32 rounding, not bit-for-bit: a batch of different size takes other GEMM blocking paths.
        for (int i = 0; i < calls; i++)
        {
            // By name, and the same names on both sides: pairing in order would pass over a missing or extra tensor.
            var expectedByName = Tensors(alone[i]);
            var actualByName = Tensors(together[i]);
            Assert.Equal(expectedByName.Keys.Order(), actualByName.Keys.Order());
            foreach (var (name, expected) in expectedByName)
            {
                var actual = actualByName[name];
                Assert.Equal(expected.Shape, actual.Shape);
                float scale = expected.Data.Max(MathF.Abs);
                for (int k = 0; k < expected.Data.Count; k++)
                    Assert.True(MathF.Abs(expected.Data[k] - actual.Data[k]) <= 1e-5f * scale, $"call {i} {name}[{k}]: {expected.Data[k]} vs {actual.Data[k]}");
            }
        }
    }

    /// <summary>Every tensor of a response by name; outputs and Jacobians of one output share its name, so each gets a prefix.</summary>
    private static Dictionary<string, Tensor> Tensors(IMessage m) => m switch
    {
        PredictResponse p => Named(p.Outputs, new Dictionary<string, Tensor>()),
        JacobianResponse j => Named(j.Outputs, j.Jacobians),
        BatchJacobianResponse b => Named(b.Outputs, b.Jacobians),
        _ => throw new ArgumentException(m.GetType().Name),
    };

    private static Dictionary<string, Tensor> Named(IDictionary<string, Tensor> outputs, IDictionary<string, Tensor> jacobians) =>
        outputs.Select(o => ("out " + o.Key, o.Value)).Concat(jacobians.Select(j => ("jac " + j.Key, j.Value)))
            .ToDictionary(p => p.Item1, p => p.Item2);
}
