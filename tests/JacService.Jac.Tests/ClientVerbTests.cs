using JacService.Client;
using System.Text.Json;
using JacService.Integration.Tests;
using JacService.Testing;

namespace JacService.Jac.Tests;

/// <summary>predict, jacobian, batch-jacobian and models against the real server, checked against the fixture references.</summary>
[Collection(ServerCollection.Name)]
public sealed class ClientVerbTests(ServerProcess server)
{
    private static string ReferenceFile(string model) => Path.Combine(Fixtures.Root, "tests", "fixtures", "reference", model + ".json");

    private static (long[] Shape, float[] Data) Tensor(JsonElement e) =>
        (e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray(),
         e.GetProperty("data").EnumerateArray().Select(x => (float)x.GetDouble()).ToArray());

    /// <summary>The fixtures' tolerance: max abs error ≤ 1e-4 × max |reference| per tensor.</summary>
    private static void AssertClose(RefTensor expected, long[] shape, float[] actual) =>
        Compare.Close(expected, shape, actual, 1e-4, "jac's result");

    [Theory]
    [InlineData("pinn")]
    [InlineData("two_outputs")]
    [InlineData("two_inputs")]
    public async Task Predict_with_the_reference_file_as_input_gives_the_reference_outputs(string model)
    {
        var r = await JacRunner.RunAsync("predict", "--target", server.Target, "--model", model, "--input", ReferenceFile(model));
        Assert.True(r.ExitCode == 0, r.Err);
        var reference = Fixtures.Load(model);
        using var doc = JsonDocument.Parse(r.Out);
        foreach (var (name, expected) in reference.Outputs)
        {
            var (shape, data) = Tensor(doc.RootElement.GetProperty("outputs").GetProperty(name));
            AssertClose(expected, shape, data);
        }
    }

    [Theory]
    [InlineData("mlp_tanh", "x")]
    [InlineData("two_inputs", "z")]
    public async Task Batch_jacobian_gives_the_reference_jacobians(string model, string wrt)
    {
        var r = await JacRunner.RunAsync("batch-jacobian", "-t", server.Target, "-m", model, "-i", ReferenceFile(model), "--wrt", wrt);
        Assert.True(r.ExitCode == 0, r.Err);
        using var doc = JsonDocument.Parse(r.Out);
        foreach (var (output, expected) in Fixtures.Load(model).Jacobians[wrt])
        {
            var (shape, data) = Tensor(doc.RootElement.GetProperty("jacobians").GetProperty(output));
            AssertClose(expected, shape, data);
        }
    }

    [Fact]
    public void The_device_column_names_every_replicas_gpu_and_the_graphs()
    {
        var cpu = new Protos.V1.ModelInfo { Device = "cpu", Batching = new Protos.V1.BatchingStats { Devices = { new Protos.V1.DeviceBatches { Device = "cpu" } } } };
        Assert.Equal("cpu", ClientVerbs.DeviceColumn(cpu));

        var gpus = new Protos.V1.ModelInfo
        {
            Device = "cuda:0",
            Batching = new Protos.V1.BatchingStats { Devices = { new Protos.V1.DeviceBatches { Device = "cuda:0" }, new Protos.V1.DeviceBatches { Device = "cuda:1" } } },
            CudaGraphs = new Protos.V1.CudaGraphs { Enabled = true, Recorded = 4, Fallbacks = { new Protos.V1.CudaGraphFallback { Pass = "p", Reason = "r", Device = "cuda:1" } } },
        };
        Assert.Equal("cuda:0 + cuda:1, 4 graphs, 1 eager", ClientVerbs.DeviceColumn(gpus));
    }

    [Fact]
    public async Task Jacobian_of_one_sample_from_a_json_tensor_equals_the_reference_row()
    {
        var reference = Fixtures.Load("pinn");
        var sample = reference.Inputs["xt"].Sample(1);
        var dir = JacRunner.TempDir();
        var input = Path.Combine(dir, "xt.json");
        // Nested arrays, the form a person writes by hand.
        File.WriteAllText(input, JsonSerializer.Serialize(sample.Floats));

        var r = await JacRunner.RunAsync("jacobian", "-t", server.Target, "-m", "pinn", "-i", "xt=" + input);
        Assert.True(r.ExitCode == 0, r.Err);
        using var doc = JsonDocument.Parse(r.Out);
        var (shape, data) = Tensor(doc.RootElement.GetProperty("jacobians").GetProperty("u"));
        AssertClose(reference.Jacobians["xt"]["u"].Sample(1), shape, data);
    }

    [Fact]
    public async Task Npy_in_and_out_round_trips_through_the_server()
    {
        var reference = Fixtures.Load("mlp_tanh");
        var dir = JacRunner.TempDir();
        var x = reference.Inputs["x"];
        Npy.Write(Path.Combine(dir, "x.npy"), new FloatTensor(x.Floats, x.Shape));

        var r = await JacRunner.RunAsync("batch-jacobian", "-t", server.Target, "-m", "mlp_tanh", "-i", Path.Combine(dir, "x.npy"),
            "--out", Path.Combine(dir, "J.npy"));
        Assert.True(r.ExitCode == 0, r.Err);
        var j = Npy.Read(Path.Combine(dir, "J.npy"));
        AssertClose(reference.Jacobians["x"]["y"], j.Shape, j.ToArray());

        // A folder gets one file per tensor.
        r = await JacRunner.RunAsync("batch-jacobian", "-t", server.Target, "-m", "mlp_tanh", "-i", Path.Combine(dir, "x.npy"),
            "--out", Path.Combine(dir, "result"));
        Assert.True(r.ExitCode == 0, r.Err);
        var y = Npy.Read(Path.Combine(dir, "result", "output_y.npy"));
        AssertClose(reference.Outputs["y"], y.Shape, y.ToArray());
        Assert.True(File.Exists(Path.Combine(dir, "result", "jacobian_y.npy")));
    }

    [Fact]
    public async Task Models_lists_the_fixtures_as_json()
    {
        var r = await JacRunner.RunAsync("models", "-t", server.Target, "--output", "json");
        Assert.True(r.ExitCode == 0, r.Err);
        using var doc = JsonDocument.Parse(r.Out);
        var names = doc.RootElement.EnumerateArray().Select(m => m.GetProperty("name").GetString()).ToHashSet();
        Assert.Contains("pinn", names);
        Assert.Contains("garbage", names);

        r = await JacRunner.RunAsync("models", "-t", server.Target);
        Assert.Contains("two_inputs", r.Out);
        Assert.Contains("FAILED", r.Out);
    }

    [Fact]
    public async Task A_server_that_is_down_is_named_with_what_to_do()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        int port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();

        var r = await JacRunner.RunAsync("predict", "-t", $"127.0.0.1:{port}", "-m", "pinn", "-i", ReferenceFile("pinn"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"cannot reach a JacService server at http://127.0.0.1:{port}", r.Err);
        Assert.Contains("Is it running?", r.Err);
        Assert.DoesNotContain("   at ", r.Err); // no stack trace
    }

    [Fact]
    public async Task A_wrong_model_name_says_which_models_exist()
    {
        var r = await JacRunner.RunAsync("jacobian", "-t", server.Target, "-m", "pinnn", "-i", ReferenceFile("pinn"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("model 'pinnn' not found", r.Err);
        Assert.Contains("pinn", r.Err.Replace("pinnn", ""));
    }

    [Fact]
    public async Task A_file_of_the_wrong_shape_is_refused_before_sending()
    {
        var dir = JacRunner.TempDir();
        var path = Path.Combine(dir, "wrong.npy");
        Npy.Write(path, new FloatTensor(new float[9], 3, 3));

        var r = await JacRunner.RunAsync("predict", "-t", server.Target, "-m", "pinn", "-i", path);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("input 'xt' has shape [3, 3], but pinn expects [B, 2] for predict", r.Err);

        // A batch where one sample is expected gets a hint towards batch-jacobian.
        Npy.Write(path, new FloatTensor(new float[6], 3, 2));
        r = await JacRunner.RunAsync("jacobian", "-t", server.Target, "-m", "pinn", "-i", path);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("expects [2] for jacobian; it has a batch axis (use jac batch-jacobian", r.Err);

        // A shape no tensor can have is a message, not a crash.
        var json = Path.Combine(dir, "negative.json");
        File.WriteAllText(json, """{ "shape": [-1, -2], "data": [1, 2] }""");
        r = await JacRunner.RunAsync("predict", "-t", server.Target, "-m", "pinn", "-i", json);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("negative.json: a tensor is {\"shape\": [...], \"data\": [...]}", r.Err);
        Assert.Contains("has a negative axis", r.Err);
        Assert.DoesNotContain("   at ", r.Err);
    }
}
