using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>A long-running server's memory stays flat: every tensor of every request is disposed.</summary>
[Collection(ServerCollection.Name)]
public class MemoryTests(ServerProcess server)
{
    [Fact]
    public async Task ResidentMemoryStaysBoundedOverThousandsOfRequests()
    {
        var reference = Fixtures.Load("small_cnn");
        var request = new BatchJacobianRequest { Model = "small_cnn" };
        foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ServingTests.ToProto(t);
        var mlp = new JacobianRequest { Model = "pinn", Inputs = { ["xt"] = ServingTests.ToProto(Fixtures.Load("pinn").Inputs["xt"].Sample(0)) } };

        async Task Burst(int count)
        {
            for (int i = 0; i < count; i += 8)
                await Task.WhenAll(Enumerable.Range(0, 8).Select(j => j == 0
                    ? server.Client.BatchJacobianAsync(request).ResponseAsync
                    : (Task)server.Client.JacobianAsync(mlp).ResponseAsync));
        }

        await Burst(1000); // warm-up: plans, allocator pools, JIT
        long before = server.ResidentBytes();
        await Burst(4000);
        long after = server.ResidentBytes();
        // Without disposal every request would keep its tangents: ~1 MB per CNN Jacobian, gigabytes in all.
        Assert.True(after - before < 96L << 20,
            $"resident memory grew from {before >> 20} MiB to {after >> 20} MiB over 4000 requests");
    }
}
