using JacService.Protos.V1;
using JacService.Testing;
using Xunit.Abstractions;

namespace JacService.Integration.Tests;

/// <summary>
/// What AUTO chooses, as GetModel reports it, and the per-model default from config.json. Its own server: batches of
/// 256 rows must run as one pass (MaxBatchSize 256) so the choice is the one for batch 256, and the repository holds
/// models under config.json files of their own.
/// </summary>
public sealed class DerivativeChoiceTests(DerivativeChoiceTests.ModeServer fixture, ITestOutputHelper output) : IClassFixture<DerivativeChoiceTests.ModeServer>
{
    private const int Batch = 256;
    private readonly ServerProcess _server = fixture.Server;

    public sealed class ModeServer : IAsyncLifetime
    {
        public ServerProcess Server { get; } = new()
        {
            ExtraArgs = [$"--Batching:MaxBatchSize={Batch}"],
            PrepareRepository = root =>
            {
                AddModel(root, "mlp_reverse", "mlp_tanh", """{ "derivativeMode": "reverse" }""");
                AddModel(root, "mlp_forward", "mlp_tanh", """{ "derivativeMode": "forward", "batching": { "maxBatchSize": 8 } }""");
                AddModel(root, "mode_typo", "mlp_tanh", """{ "derivativeMode": "backward" }""");
            },
        };

        public Task InitializeAsync() => Server.InitializeAsync();
        public Task DisposeAsync() => Server.DisposeAsync();

        private static void AddModel(string root, string name, string fixture, string config)
        {
            var version = Directory.CreateDirectory(Path.Combine(root, name, "1")).FullName;
            File.Copy(Fixtures.ModelPath(fixture), Path.Combine(version, "model.onnx"));
            File.WriteAllText(Path.Combine(root, name, "config.json"), config);
        }
    }

    /// <summary>The fixture's samples repeated to <paramref name="rows"/> rows.</summary>
    private static BatchJacobianRequest Tiled(string name, int rows, DerivativeMode mode = DerivativeMode.Auto)
    {
        var reference = Fixtures.Load(name);
        var request = new BatchJacobianRequest { Model = name, Mode = mode };
        foreach (var (input, t) in reference.Inputs)
        {
            long per = t.Data.Length / t.Shape[0];
            var data = Enumerable.Range(0, rows).SelectMany(r => t.Data.Skip((int)(r % t.Shape[0] * per)).Take((int)per)).Select(d => (float)d);
            request.Inputs[input] = JacService.Client.Tensors.Create(data.ToArray(), [rows, .. t.Shape[1..]]);
        }
        return request;
    }

    private async Task<Protos.V1.DerivativeChoice> ChoiceAfterAuto(string name)
    {
        var response = await _server.Client.BatchJacobianAsync(Tiled(name, Batch));
        var info = await _server.Client.GetModelAsync(new GetModelRequest { Model = name });
        var choice = info.DerivativeChoices.Single(c => c.Batch == Batch);
        output.WriteLine($"{name} at batch {Batch}: {choice.Mode}, forward {choice.ForwardUs:F0} µs, reverse {choice.ReverseUs:F0} µs, timed {choice.Timed}");
        Assert.True(choice.Timed);
        Assert.Equal(choice.Mode, response.Mode);
        Assert.Equal(DerivativeMode.Auto, info.DefaultMode);
        return choice;
    }

    [Theory]
    [InlineData("small_cnn", "image", "logits")]          // 784 inputs, 10 outputs: 10 pulls against 784 pushes
    [InlineData("wide_classifier", "x", "logits")]        // 128 inputs, 10 outputs
    public async Task AutoChoosesReverseForTheWideModels(string name, string wrt, string of)
    {
        var choice = await ChoiceAfterAuto(name);
        Assert.True(choice.Mode == DerivativeMode.Reverse,
            $"{name} chose {choice.Mode}: forward {choice.ForwardUs:F0} µs, reverse {choice.ReverseUs:F0} µs");
        Assert.Equal(wrt, choice.Wrt);
        Assert.Equal([of], choice.Of);
    }

    /// <summary>
    /// pinn (2 inputs, 1 output) and relu_classifier (20 inputs, 10 outputs) are close calls on this CPU: pinn measured
    /// forward 1612 µs vs reverse 1520 µs in one run and the opposite order in another, so neither mode is asserted.
    /// What must hold is that AUTO runs what it reports, the faster of its two measurements.
    /// </summary>
    [Theory]
    [InlineData("pinn")]
    [InlineData("relu_classifier")]
    public async Task AutoOnACloseCallRunsTheFasterOfItsMeasurements(string name)
    {
        var choice = await ChoiceAfterAuto(name);
        Assert.True(choice.ForwardUs > 0 && choice.ReverseUs > 0);
        Assert.Equal(choice.ReverseUs < choice.ForwardUs ? DerivativeMode.Reverse : DerivativeMode.Forward, choice.Mode);
    }

    [Fact]
    public async Task ConfigDefaultModeAnswersAutoRequests()
    {
        var reverse = await _server.Client.BatchJacobianAsync(Renamed(Tiled("mlp_tanh", 3), "mlp_reverse"));
        Assert.Equal(DerivativeMode.Reverse, reverse.Mode);
        var forward = await _server.Client.BatchJacobianAsync(Renamed(Tiled("mlp_tanh", 3), "mlp_forward"));
        Assert.Equal(DerivativeMode.Forward, forward.Mode);
        // An explicit mode still wins over the default.
        var asked = await _server.Client.BatchJacobianAsync(Renamed(Tiled("mlp_tanh", 3, DerivativeMode.Forward), "mlp_reverse"));
        Assert.Equal(DerivativeMode.Forward, asked.Mode);

        var reference = Fixtures.Load("mlp_tanh");
        Compare.Close(reference.Jacobians["x"]["y"], reverse.Jacobians["y"].Shape.ToArray(), reverse.Jacobians["y"].Data, 1e-4, "mlp_reverse dy/dx");

        var info = await _server.Client.GetModelAsync(new GetModelRequest { Model = "mlp_reverse" });
        Assert.Equal(DerivativeMode.Reverse, info.DefaultMode);
        Assert.Empty(info.DerivativeChoices); // AUTO never ran: the default decided
        Assert.Equal(DerivativeMode.Forward, (await _server.Client.GetModelAsync(new GetModelRequest { Model = "mlp_forward" })).DefaultMode);
    }

    [Fact]
    public async Task AnInvalidConfigModeFailsTheModelNamingFileKeyAndValues()
    {
        var info = await _server.Client.GetModelAsync(new GetModelRequest { Model = "mode_typo" });
        Assert.Equal("FAILED", info.State);
        Assert.EndsWith("mode_typo/config.json: \"derivativeMode\" must be one of \"auto\", \"forward\", \"reverse\", got \"backward\"", info.Error);
    }

    private static BatchJacobianRequest Renamed(BatchJacobianRequest request, string model)
    {
        request.Model = model;
        return request;
    }
}
