using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>Known amounts of work against the mlp_tanh fixture, for tests that count what telemetry saw.</summary>
internal static class Traffic
{
    public const string Model = "mlp_tanh";

    /// <summary>Sends <paramref name="count"/> Jacobian calls of one row each, a few at a time so batches form.</summary>
    public static async Task SendJacobians(JacobianService.JacobianServiceClient client, int count)
    {
        var x = Fixtures.Load(Model).Inputs["x"];
        for (int start = 0; start < count; start += 4)
            await Task.WhenAll(Enumerable.Range(start, Math.Min(4, count - start)).Select(i => client.JacobianAsync(
                new JacobianRequest { Model = Model, Inputs = { ["x"] = ServingTests.ToProto(x.Sample(i % (int)x.Shape[0])) } }).ResponseAsync));
    }

    /// <summary>Sends <paramref name="count"/> Predict calls with every reference row (3 each); returns the rows sent.</summary>
    public static async Task<int> SendPredicts(JacobianService.JacobianServiceClient client, int count)
    {
        var x = Fixtures.Load(Model).Inputs["x"];
        for (int i = 0; i < count; i++)
            await client.PredictAsync(new PredictRequest { Model = Model, Inputs = { ["x"] = ServingTests.ToProto(x) } });
        return count * (int)x.Shape[0];
    }
}
