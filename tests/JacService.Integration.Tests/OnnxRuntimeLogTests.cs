namespace JacService.Integration.Tests;

/// <summary>
/// ONNX Runtime's own log lines come through the server's logging under the category "OnnxRuntime", filtered by
/// Logging:LogLevel like any other category, instead of raw onto stderr. The spectral fixture holds an initializer no
/// node reads once ONNX Runtime has optimised its graph, which ONNX Runtime warns about when it makes the session.
/// </summary>
public class OnnxRuntimeLogTests
{
    private const string Warning = "Removing initializer 'kept'";

    [Fact]
    public async Task ItsWarningsAreLoggedUnderTheirCategoryWhenThatLevelIsOn()
    {
        await using var server = SpectralOnly("--Logging:LogLevel:OnnxRuntime=Warning");
        await server.InitializeAsync();
        await server.WaitForLog(Warning);
        var lines = server.Log.Split('\n');
        int at = Array.FindIndex(lines, l => l.Contains(Warning, StringComparison.Ordinal));
        // The console formatter's header line, then the message.
        Assert.StartsWith("warn: OnnxRuntime", lines[at - 1]);
        Assert.DoesNotContain("[W:onnxruntime", server.Log);
    }

    [Fact]
    public async Task ByDefaultItsWarningsAreNotWritten()
    {
        await using var server = SpectralOnly();
        await server.InitializeAsync();
        // The session was made when the version loaded, before SERVING; a Predict through it, to be sure.
        var request = new Protos.V1.PredictRequest { Model = "spectral" };
        request.Inputs["u"] = new Protos.V1.Tensor { Shape = { 1, 16 }, Data = { new float[16] } };
        Assert.Equal(16, (await server.Client.PredictAsync(request)).Outputs.Values.Single().Data.Count);
        Assert.DoesNotContain(Warning, server.Log);
        Assert.DoesNotContain("[W:onnxruntime", server.Log);
    }

    private static ServerProcess SpectralOnly(params string[] args) => new()
    {
        ExtraArgs = args,
        PrepareRepository = root =>
        {
            foreach (var model in Directory.GetDirectories(root).Where(d => Path.GetFileName(d) != "spectral"))
                Directory.Delete(model, recursive: true);
        },
    };
}
