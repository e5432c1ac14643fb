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
        long before = server.ResidentBytes();
        await Burst(4000);
        long after = server.ResidentBytes();
        output.WriteLine($"{mode}: resident memory {before >> 20} MiB -> {after >> 20} MiB over 4000 requests");
        // Without disposal every request would keep its tangents: ~1 MB per CNN Jacobian, gigabytes in all. A quiet
        // run grows ~20 MiB; on a machine busy with other builds the allocator's arenas and a lagging GC have added
        // up to ~130 MiB, so the bound sits well above that and still far below a leak.
        Assert.True(after - before < 256L << 20,
            $"{mode}: resident memory grew from {before >> 20} MiB to {after >> 20} MiB over 4000 requests");
    }
}
