using JacService.Client;
using JacService.Protos.V1;
using JacService.Testing;
using Xunit.Sdk;
using static JacService.Integration.Tests.ClientTesting;

namespace JacService.Integration.Tests;

/// <summary>
/// A sweep of small PyTorch models, each built around one family of ops (activations, norms, pooling with ceil mode and
/// padding, resampling modes, grouped, dilated and transposed convolutions, attention, recurrent layers, padding modes,
/// sorting and selection), exported by the machine's torch when the tests run (tests/fixtures/export_sweep.py), served
/// by one server. Every model loads, and every call answers as torch's float64 autograd does. Each test goes through
/// every model and reports all that fail, not only the first.
/// </summary>
public sealed class ExportSweepTests(ExportSweepTests.Sweep sweep) : IClassFixture<ExportSweepTests.Sweep>
{
    private readonly JacServiceClient _client = ClientFor(sweep.Server);

    [Fact]
    public async Task EveryExportedModelIsReady()
    {
        var models = await _client.ListModelsAsync();
        Assert.Equal(sweep.Names, models.Select(m => m.Name).Order());
        Assert.All(models, m => Assert.True(m.State == "READY", $"{m.Name}: {m.State} {m.Error}"));
    }

    [Fact]
    public Task PredictEqualsTorch() => Each(async (name, r) =>
        Close(r.Outputs["y"], (await _client.PredictAsync(name, Inputs(r))).Outputs["y"], "y"));

    [Theory]
    [InlineData(DerivativeMode.Forward)]
    [InlineData(DerivativeMode.Reverse)]
    [InlineData(DerivativeMode.Auto)]
    public Task BatchJacobianEqualsTorchInEveryMode(DerivativeMode mode) => Each(async (name, r) =>
        Close(r.Jacobians["x"]["y"], (await _client.BatchJacobianAsync(name, Inputs(r), mode: mode)).Jacobians["y"], $"dy/dx ({mode})"));

    [Fact]
    public Task JvpEqualsTorch() => Each(async (name, r) =>
        Close(r.Jvp["x"].Outputs["y"], (await _client.JvpAsync(name, Inputs(r), ToTensor(r.Jvp["x"].Tangents))).Jvps["y"], "J·v"));

    [Fact]
    public Task VjpEqualsTorch() => Each(async (name, r) =>
    {
        var cotangents = r.Vjp["x"].Cotangents.ToDictionary(c => c.Key, c => ToTensor(c.Value));
        Close(r.Vjp["x"].Result, (await _client.VjpAsync(name, Inputs(r), cotangents)).Vjp, "uᵀ·J");
    });

    [Fact]
    public Task BatchHessianEqualsCentralDifferencesOfTorchsJacobian() => Each(async (name, r) =>
        Close(r.Hessians!["x"]["y"], (await _client.HessianAsync(name, Inputs(r))).Hessians["y"], "d²y/dx²"));

    [Fact]
    public Task BatchLaplacianEqualsTheTraceOfTheHessian() => Each(async (name, r) =>
        Close(r.Laplacians!["x"]["y"], (await _client.LaplacianAsync(name, Inputs(r))).Laplacians["y"], "Laplacian"));

    private async Task Each(Func<string, Reference, Task> check)
    {
        var failures = new List<string>();
        foreach (var name in sweep.Names)
        {
            try
            {
                await check(name, Fixtures.Load(name, sweep.References));
            }
            catch (Exception e) when (e is XunitException or Grpc.Core.RpcException)
            {
                failures.Add($"{name}: {e.Message}");
            }
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {sweep.Names.Count} models:\n{string.Join('\n', failures)}");
    }

    /// <summary>The sweep exported into a folder of its own, and a server of only its models.</summary>
    public sealed class Sweep : IAsyncLifetime
    {
        private readonly string _folder = Path.Combine(Path.GetTempPath(), "jacservice-sweep-" + Guid.NewGuid().ToString("N")[..8]);

        public string References => Path.Combine(_folder, "reference");
        public IReadOnlyList<string> Names { get; private set; } = [];
        public ServerProcess Server { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            var export = await ExampleProcess.Run("/usr/bin/python3", [Path.Combine(Fixtures.Root, "tests", "fixtures", "export_sweep.py"), _folder]);
            if (export.ExitCode != 0) throw new InvalidOperationException($"export_sweep.py failed:\n{export}");
            Names = Directory.GetFiles(References, "*.json").Select(Path.GetFileNameWithoutExtension).Order().ToArray()!;
            Server = new ServerProcess
            {
                CopyFixtures = false,
                PrepareRepository = root =>
                {
                    foreach (var name in Names)
                    {
                        var version = Directory.CreateDirectory(Path.Combine(root, name, "1")).FullName;
                        File.Copy(Path.Combine(_folder, "models", name, "1", "model.onnx"), Path.Combine(version, "model.onnx"));
                    }
                },
            };
            await Server.InitializeAsync();
        }

        public async Task DisposeAsync()
        {
            if (Server is not null) await Server.DisposeAsync();
            if (Directory.Exists(_folder)) Directory.Delete(_folder, recursive: true);
        }
    }
}
