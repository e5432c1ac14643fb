using JacService.Protos.V1;
using JacService.Testing;
using Xunit.Abstractions;

namespace JacService.Integration.Tests;

/// <summary>A long-running server's memory stays flat: every tensor of every request is disposed.</summary>
[Collection(ServerCollection.Name)]
public class MemoryTests(ServerProcess server, ITestOutputHelper output)
{
    [Theory]
    [InlineData(DerivativeMode.Forward)]
    [InlineData(DerivativeMode.Reverse)]
    public async Task ResidentMemoryStaysBoundedOverThousandsOfRequests(DerivativeMode mode)
    {
        var reference = Fixtures.Load("small_cnn");
        var request = new BatchJacobianRequest { Model = "small_cnn", Mode = mode };
        foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ServingTests.ToProto(t);
        var mlp = new JacobianRequest { Model = "pinn", Mode = mode, Inputs = { ["xt"] = ServingTests.ToProto(Fixtures.Load("pinn").Inputs["xt"].Sample(0)) } };
        // Reverse mode keeps primal values for its backward sweep; Vjp (one cotangent per sample) exercises that path too.
        var vjp = new VjpRequest { Model = "small_cnn" };
        foreach (var (input, t) in reference.Inputs) vjp.Inputs[input] = ServingTests.ToProto(t);
        vjp.Cotangents["logits"] = ServingTests.ToProto(new RefTensor([3, 10], Enumerable.Range(0, 30).Select(i => (double)(i % 7) - 3).ToArray()));

        async Task Burst(int count)
        {
            for (int i = 0; i < count; i += 8)
                await Task.WhenAll(Enumerable.Range(0, 8).Select(j => j switch
                {
                    0 => server.Client.BatchJacobianAsync(request).ResponseAsync,
                    1 when mode == DerivativeMode.Reverse => server.Client.VjpAsync(vjp).ResponseAsync,
                    _ => (Task)server.Client.JacobianAsync(mlp).ResponseAsync,
                }));
        }

        await Burst(1000); // warm-up: plans, allocator pools, JIT
        var resident = new List<long> { server.ResidentBytes() };
        for (int interval = 0; interval < 3; interval++)
        {
            await Burst(1600);
            resident.Add(server.ResidentBytes());
        }
        var growth = resident.Zip(resident.Skip(1), (a, b) => b - a).ToList();
        string trace = string.Join(" -> ", resident.Select(r => $"{r >> 20} MiB"));
        output.WriteLine($"{mode}: resident memory {trace} over 3 x 1600 requests");
        // Without disposal every request would keep its tangents: ~1 MB per CNN Jacobian, ~200 MB in every interval of
        // 1600 requests. The heap keeps its peak (Engine:ReuseLargeAllocations), and full-suite runs have reached it
        // only after the warm-up, in one step (~610 to ~900 MiB, the level an isolated run starts at). A leak grows in
        // every interval; the heap's step happens in one. So some interval must stay flat, and the whole climb within
        // one working memory (512 MiB).
        Assert.True(growth.Min() < 64L << 20, $"{mode}: resident memory grew in every interval: {trace}");
        Assert.True(resident[^1] - resident[0] < 512L << 20, $"{mode}: resident memory grew too far: {trace}");
    }
}
