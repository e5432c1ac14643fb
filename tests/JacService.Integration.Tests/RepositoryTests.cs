using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Reflection.V1Alpha;
using JacService.Protos.V1;

namespace JacService.Integration.Tests;

/// <summary>What the repository holds, including models that could not load, and the standard services.</summary>
[Collection(ServerCollection.Name)]
public class RepositoryTests(ServerProcess server)
{
    [Theory]
    [InlineData("garbage", "not an ONNX model")]
    [InlineData("unsupported_op", "unsupported op: Det (node '")]
    [InlineData("invalid_graph", "consumes")]
    [InlineData("missing_file", "model.onnx not found")]
    [InlineData("config_unknown_key", "config.json: unknown batching setting 'colour'")]
    [InlineData("config_out_of_range", "config.json: The field MaxBatchSize must be between 1 and 65536")]
    [InlineData("config_not_json", "config.json: ")]
    public async Task BrokenModelsAreFailedWithTheCause(string name, string cause)
    {
        var info = await server.Client.GetModelAsync(new GetModelRequest { Model = name });
        Assert.Equal("FAILED", info.State);
        Assert.Contains(cause, info.Error);
        Assert.DoesNotContain("internal error", info.Error); // a broken model is the operator's to fix, not our bug

        var call = server.Client.PredictAsync(new PredictRequest { Model = name });
        var e = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync);
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains(cause, e.Status.Detail);
    }

    [Fact]
    public async Task ListModelsShowsEveryVersionWithItsSignature()
    {
        var list = await server.Client.ListModelsAsync(new ListModelsRequest());
        var ready = list.Models.Where(m => m.State == "READY").Select(m => $"{m.Name}/{m.Version}").ToHashSet();
        foreach (var name in Testing.Fixtures.Names) Assert.Contains($"{name}/1", ready);
        Assert.Contains("mlp_tanh/2", ready);
        Assert.Equal(7, list.Models.Count(m => m.State == "FAILED"));

        var cnn = list.Models.Single(m => m.Name == "small_cnn");
        Assert.Equal("image", cnn.Inputs.Single().Name);
        Assert.Equal([-1, 1, 28, 28], cnn.Inputs.Single().Shape);
        Assert.Equal("float", cnn.Inputs.Single().Dtype);
        Assert.Equal([-1, 10], cnn.Outputs.Single().Shape);
    }

    [Fact]
    public async Task HealthIsServingOnceLoaded()
    {
        var reply = await new Health.HealthClient(server.Channel).CheckAsync(new HealthCheckRequest());
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, reply.Status);
    }

    [Fact]
    public async Task ReflectionListsTheService()
    {
        using var call = new ServerReflection.ServerReflectionClient(server.Channel).ServerReflectionInfo();
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" });
        await call.RequestStream.CompleteAsync();
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        var services = call.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name).ToList();
        Assert.Contains("jacservice.v1.JacobianService", services);
        Assert.Contains("grpc.health.v1.Health", services);
    }
}
