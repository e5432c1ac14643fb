using System.Text.Json;
using JacService.Integration.Tests;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Jac.Tests;

/// <summary>The hessian and laplacian verbs against the real server: what they print or write is what the server computed.</summary>
[Collection(ServerCollection.Name)]
public sealed class SecondOrderVerbTests(ServerProcess server)
{
    private static string ReferenceFile(string model) => Path.Combine(Fixtures.Root, "tests", "fixtures", "reference", model + ".json");

    private static (long[] Shape, float[] Data) Tensor(JsonElement e) =>
        (e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray(),
         e.GetProperty("data").EnumerateArray().Select(x => (float)x.GetDouble()).ToArray());

    /// <summary>The pinn reference's Hessians [3, 1, 2, 2] as the server computes them, straight from the stub.</summary>
    private async Task<Tensor> PinnHessians()
    {
        var request = new BatchHessianRequest { Model = "pinn" };
        foreach (var (input, t) in Fixtures.Load("pinn").Inputs) request.Inputs[input] = JacService.Client.Tensors.Create(t.Floats, t.Shape);
        return (await server.Client.BatchHessianAsync(request)).Hessians["u"];
    }

    [Fact]
    public async Task Hessian_prints_the_hessians_as_json()
    {
        var r = await JacRunner.RunAsync("hessian", "-t", server.Target, "-m", "pinn", "-i", ReferenceFile("pinn"));
        Assert.True(r.ExitCode == 0, r.Err);
        using var doc = JsonDocument.Parse(r.Out);
        var (shape, data) = Tensor(doc.RootElement.GetProperty("hessians").GetProperty("u"));
        Assert.Equal([3, 1, 2, 2], shape);
        Assert.Equal((await PinnHessians()).Data, data);
        Assert.False(doc.RootElement.TryGetProperty("jacobians", out _));
        var reference = Fixtures.Load("pinn");
        var (outShape, output) = Tensor(doc.RootElement.GetProperty("outputs").GetProperty("u"));
        Compare.Close(reference.Outputs["u"], outShape, output, 1e-4, "u");
    }

    [Fact]
    public async Task Hessian_with_include_jacobian_writes_a_folder_of_npy_files()
    {
        var dir = Path.Combine(JacRunner.TempDir(), "result");
        var r = await JacRunner.RunAsync("hessian", "-t", server.Target, "-m", "pinn", "-i", ReferenceFile("pinn"), "--include-jacobian", "--out", dir);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Equal(["hessian_u.npy", "jacobian_u.npy", "output_u.npy"], Directory.GetFiles(dir).Select(Path.GetFileName).Order());
        var hessian = Npy.Read(Path.Combine(dir, "hessian_u.npy"));
        Assert.Equal([3L, 1, 2, 2], hessian.Shape);
        Assert.Equal((await PinnHessians()).Data, hessian.ToArray());
        var jacobian = Npy.Read(Path.Combine(dir, "jacobian_u.npy"));
        Compare.Close(Fixtures.Load("pinn").Jacobians["xt"]["u"], jacobian.Shape, jacobian.ToArray(), 1e-4, "du/dxt");
    }

    [Fact]
    public async Task A_single_npy_cannot_hold_the_hessian_and_the_jacobian()
    {
        var file = Path.Combine(JacRunner.TempDir(), "h.npy");
        var r = await JacRunner.RunAsync("hessian", "-t", server.Target, "-m", "pinn", "-i", ReferenceFile("pinn"), "--include-jacobian", "--out", file);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("the result has 2 tensors (u, jacobian of u)", r.Err);
        Assert.False(File.Exists(file));
    }

    [Theory]
    [InlineData("0")]
    [InlineData("0,1")]
    [InlineData(null)]
    public async Task Laplacian_sums_the_hessians_diagonal_over_the_axes(string? axes)
    {
        string[] args = ["laplacian", "-t", server.Target, "-m", "pinn", "-i", ReferenceFile("pinn")];
        var r = await JacRunner.RunAsync(axes is null ? args : [.. args, "--axes", axes]);
        Assert.True(r.ExitCode == 0, r.Err);
        using var doc = JsonDocument.Parse(r.Out);
        var (shape, data) = Tensor(doc.RootElement.GetProperty("laplacians").GetProperty("u"));
        Assert.Equal([3, 1], shape);
        var h = (await PinnHessians()).Data;
        // u_xx is entry [b, 0, 0, 0], u_tt entry [b, 0, 1, 1].
        var expected = Enumerable.Range(0, 3).Select(b => h[b * 4] + (axes == "0" ? 0 : (double)h[b * 4 + 3])).ToList();
        double scale = h.Max(v => Math.Abs((double)v));
        for (int b = 0; b < 3; b++) Assert.True(Math.Abs(data[b] - expected[b]) <= 2e-4 * scale, $"sample {b}: {data[b]} against {expected[b]}");
    }

    [Fact]
    public async Task Laplacian_with_include_jacobian_and_a_single_output_file()
    {
        var dir = JacRunner.TempDir();
        var r = await JacRunner.RunAsync("laplacian", "-t", server.Target, "-m", "pinn", "-i", ReferenceFile("pinn"), "--axes", "1", "--include-jacobian",
            "--out", Path.Combine(dir, "l.json"));
        Assert.True(r.ExitCode == 0, r.Err);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "l.json")));
        var (shape, jacobian) = Tensor(doc.RootElement.GetProperty("jacobians").GetProperty("u"));
        Compare.Close(Fixtures.Load("pinn").Jacobians["xt"]["u"], shape, jacobian, 1e-4, "du/dxt");

        r = await JacRunner.RunAsync("laplacian", "-t", server.Target, "-m", "pinn", "-i", ReferenceFile("pinn"), "--axes", "1", "--out", Path.Combine(dir, "l.npy"));
        Assert.True(r.ExitCode == 0, r.Err);
        var laplacian = Npy.Read(Path.Combine(dir, "l.npy"));
        Assert.Equal([3L, 1], laplacian.Shape);
        // The same Laplacians as with the Jacobians, to rounding (that pass carried more directions).
        var (withShape, withJacobians) = Tensor(doc.RootElement.GetProperty("laplacians").GetProperty("u"));
        Compare.Close(new RefTensor(withShape, withJacobians.Select(v => (double)v).ToArray()), laplacian.Shape, laplacian.ToArray(), 1e-4, "u_tt");
    }

    [Fact]
    public async Task Axes_that_are_not_indices_are_refused_before_the_call()
    {
        var r = await JacRunner.RunAsync("laplacian", "-t", server.Target, "-m", "pinn", "-i", ReferenceFile("pinn"), "--axes", "0,x");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--axes: 'x' is not an index", r.Err);
    }

    [Fact]
    public async Task Axes_out_of_range_are_explained_with_the_servers_message()
    {
        var r = await JacRunner.RunAsync("laplacian", "-t", server.Target, "-m", "pinn", "-i", ReferenceFile("pinn"), "--axes", "0,5");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("the server refused the request: axes holds 5, out of range: 'xt' has 2 elements per sample", r.Err);
    }
}
