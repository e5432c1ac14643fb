using System.Text.Json;
using JacService.Client;
using JacService.Integration.Tests;
using JacService.Testing;

namespace JacService.Jac.Tests;

/// <summary>--mode on the Jacobian verbs, and the jvp and vjp verbs, against the real server and the fixture references.</summary>
[Collection(ServerCollection.Name)]
public sealed class DirectionalVerbTests(ServerProcess server)
{
    private static string ReferenceFile(string model) => Path.Combine(Fixtures.Root, "tests", "fixtures", "reference", model + ".json");

    private static (long[] Shape, float[] Data) Tensor(JsonElement e) =>
        (e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray(),
         e.GetProperty("data").EnumerateArray().Select(x => (float)x.GetDouble()).ToArray());

    private static string TensorJson(long[] shape, IEnumerable<double> data) =>
        JsonSerializer.Serialize(new { shape, data = data.Select(d => (float)d) });

    /// <summary>[B, k] ++ sample shape, direction k of each sample a 1 at flat position k.</summary>
    private static (long[] Shape, double[] Data) Basis(long[] batchedShape)
    {
        long batch = batchedShape[0], k = batchedShape[1..].Aggregate(1L, (p, d) => p * d);
        var data = new double[batch * k * k];
        for (long b = 0; b < batch; b++)
            for (long i = 0; i < k; i++) data[(b * k + i) * k + i] = 1;
        return ([batch, k, .. batchedShape[1..]], data);
    }

    [Theory]
    [InlineData("batch-jacobian", "forward")]
    [InlineData("batch-jacobian", "reverse")]
    [InlineData("batch-jacobian", "auto")]
    [InlineData("jacobian", "reverse")]
    public async Task Mode_is_sent_and_the_mode_that_ran_is_in_the_json(string verb, string mode)
    {
        var reference = Fixtures.Load("two_outputs");
        var dir = JacRunner.TempDir();
        string input = ReferenceFile("two_outputs");
        if (verb == "jacobian")
        {
            input = "x=" + Path.Combine(dir, "x.json");
            var x = reference.Inputs["x"].Sample(0);
            File.WriteAllText(input[2..], TensorJson(x.Shape, x.Data));
        }
        var r = await JacRunner.RunAsync(verb, "-t", server.Target, "-m", "two_outputs", "-i", input, "--mode", mode);
        Assert.True(r.ExitCode == 0, r.Err);
        using var doc = JsonDocument.Parse(r.Out);
        string ran = doc.RootElement.GetProperty("mode").GetString()!;
        if (mode == "auto") Assert.Contains(ran, new[] { "forward", "reverse" });
        else Assert.Equal(mode, ran);
        var expected = reference.Jacobians["x"]["mean"];
        var (shape, data) = Tensor(doc.RootElement.GetProperty("jacobians").GetProperty("mean"));
        Compare.Close(verb == "jacobian" ? expected.Sample(0) : expected, shape, data, 1e-4, $"{verb} --mode {mode}");
    }

    [Fact]
    public async Task An_unknown_mode_is_refused_before_any_call()
    {
        var r = await JacRunner.RunAsync("batch-jacobian", "-t", server.Target, "-m", "mlp_tanh", "-i", ReferenceFile("mlp_tanh"), "--mode", "sideways");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("sideways", r.Err + r.Out);
    }

    [Fact]
    public async Task Jvp_along_the_basis_gives_the_jacobian_columns()
    {
        var reference = Fixtures.Load("mlp_tanh");
        var dir = JacRunner.TempDir();
        var (shape, data) = Basis(reference.Inputs["x"].Shape);
        var tangents = Path.Combine(dir, "v.json");
        File.WriteAllText(tangents, TensorJson(shape, data));

        var r = await JacRunner.RunAsync("jvp", "-t", server.Target, "-m", "mlp_tanh", "-i", ReferenceFile("mlp_tanh"), "--tangents", tangents);
        Assert.True(r.ExitCode == 0, r.Err);
        using var doc = JsonDocument.Parse(r.Out);
        Assert.Equal("forward", doc.RootElement.GetProperty("mode").GetString());
        var (jvpShape, jvp) = Tensor(doc.RootElement.GetProperty("jvps").GetProperty("y"));
        Assert.Equal([3, 32, 16], jvpShape);
        var j = reference.Jacobians["x"]["y"];
        var columns = new double[3 * 32 * 16];
        for (int b = 0; b < 3; b++)
            for (int i = 0; i < 16; i++)
                for (int k = 0; k < 32; k++) columns[(b * 32 + k) * 16 + i] = j.Data[(b * 16 + i) * 32 + k];
        Compare.Close(new RefTensor([3, 32, 16], columns), jvpShape, jvp, 1e-4, "J·e");
    }

    [Fact]
    public async Task Vjp_with_a_cotangent_npy_per_output_gives_the_jacobian_rows()
    {
        var reference = Fixtures.Load("two_outputs");
        var dir = JacRunner.TempDir();
        var (shape, data) = Basis(reference.Outputs["log_var"].Shape);
        Npy.Write(Path.Combine(dir, "u.npy"), new FloatTensor(data.Select(d => (float)d).ToArray(), shape));

        var r = await JacRunner.RunAsync("vjp", "-t", server.Target, "-m", "two_outputs", "-i", ReferenceFile("two_outputs"),
            "--cotangents", "log_var=" + Path.Combine(dir, "u.npy"), "--out", Path.Combine(dir, "g.npy"));
        Assert.True(r.ExitCode == 0, r.Err);
        var g = Npy.Read(Path.Combine(dir, "g.npy"));
        Compare.Close(new RefTensor([3, 3, 6], reference.Jacobians["x"]["log_var"].Data), g.Shape, g.ToArray(), 1e-4, "eᵀ·J");
    }

    [Fact]
    public async Task Vjp_with_a_json_object_of_cotangents_and_a_bad_one_says_what_is_wrong()
    {
        var reference = Fixtures.Load("two_outputs");
        var dir = JacRunner.TempDir();
        var file = Path.Combine(dir, "u.json");
        File.WriteAllText(file, $$"""{ "mean": {{TensorJson([3, 3], Enumerable.Repeat(1.0, 9))}}, "log_var": {{TensorJson([3, 2, 3], Enumerable.Repeat(1.0, 18))}} }""");

        var r = await JacRunner.RunAsync("vjp", "-t", server.Target, "-m", "two_outputs", "-i", ReferenceFile("two_outputs"), "--cotangents", file);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("cotangents for 'log_var'", r.Err);

        File.WriteAllText(file, $$"""{ "mean": {{TensorJson([3, 3], Enumerable.Repeat(1.0, 9))}} }""");
        r = await JacRunner.RunAsync("vjp", "-t", server.Target, "-m", "two_outputs", "-i", ReferenceFile("two_outputs"), "--cotangents", file);
        Assert.True(r.ExitCode == 0, r.Err);
        using var doc = JsonDocument.Parse(r.Out);
        Assert.Equal("reverse", doc.RootElement.GetProperty("mode").GetString());
        var (shape, data) = Tensor(doc.RootElement.GetProperty("vjp").GetProperty("x"));
        var j = reference.Jacobians["x"]["mean"];
        var sums = new double[3 * 6];
        for (int b = 0; b < 3; b++)
            for (int i = 0; i < 3; i++)
                for (int k = 0; k < 6; k++) sums[b * 6 + k] += j.Data[(b * 3 + i) * 6 + k];
        Compare.Close(new RefTensor([3, 6], sums), shape, data, 1e-4, "1ᵀ·J");
    }
}
