using System.Text.RegularExpressions;
using JacService.Protos.V1;
using JacService.Testing;
using Xunit.Abstractions;

namespace JacService.Integration.Tests;

/// <summary>
/// Engine:ReturnMemoryWhenIdleSeconds: once no batch has run for that long, the server gives back what its largest calls
/// left reserved (ONNX Runtime's arena, the heap's free pages), and still answers correctly after it.
/// </summary>
public partial class IdleMemoryReturnTests(ITestOutputHelper output)
{
    private const string Returned = "No batch for 1 s: resident memory";

    [Fact]
    public async Task AfterAnIdleSpellTheServerGivesBackWhatItsLargestCallsLeft()
    {
        await using var server = new ServerProcess { ExtraArgs = ["--Engine:ReturnMemoryWhenIdleSeconds=1"] };
        await server.InitializeAsync();
        // The warm-ups ran batches: what they left goes back a second after the last one.
        await Waiting.Until(() => Task.FromResult(Returns(server).Count >= 1), "no memory went back after the warm-ups", server);

        var reference = Fixtures.Load("small_cnn");
        var images = reference.Inputs["image"];
        var many = new RefTensor([256, .. images.Shape[1..]], Enumerable.Range(0, 256).SelectMany(i => images.Sample(i % (int)images.Shape[0]).Data).ToArray());
        var vjp = new VjpRequest { Model = "small_cnn", Inputs = { ["image"] = ServingTests.ToProto(many) } };
        vjp.Cotangents["logits"] = ServingTests.ToProto(new RefTensor([256, 10], Enumerable.Range(0, 2560).Select(i => (double)(i % 7) - 3).ToArray()));
        int before = Returns(server).Count;
        for (int i = 0; i < 3; i++)
        {
            await server.Client.VjpAsync(vjp);
            await server.Client.PredictAsync(new PredictRequest { Model = "small_cnn", Inputs = { ["image"] = ServingTests.ToProto(many) } });
        }
        long afterCalls = server.ResidentBytes();

        await Waiting.Until(() => Task.FromResult(Returns(server).Count > before), "no memory went back after the large calls", server);
        var (from, to) = Returns(server)[^1];
        output.WriteLine($"resident after the calls {afterCalls >> 20} MiB; the idle return took it from {from} to {to} MiB");
        Assert.True(to < from, $"the idle return gave nothing back: {from} -> {to} MiB");
        Assert.True(server.ResidentBytes() < afterCalls, $"resident {server.ResidentBytes() >> 20} MiB, {afterCalls >> 20} MiB after the calls");

        // The arena and the heap fill again on the next calls, which are answered as before.
        var predict = await server.Client.PredictAsync(new PredictRequest { Model = "small_cnn", Inputs = { ["image"] = ServingTests.ToProto(images) } });
        Compare.Close(reference.Outputs["logits"], predict.Outputs["logits"].Shape.ToArray(), predict.Outputs["logits"].Data, 1e-4, "logits after the return");
    }

    private static List<(long From, long To)> Returns(ServerProcess server) =>
        ReturnLine().Matches(server.Log).Select(m => (long.Parse(m.Groups[1].Value), long.Parse(m.Groups[2].Value))).ToList();

    [GeneratedRegex(Returned + @" (\d+) -> (\d+) MiB")]
    private static partial Regex ReturnLine();
}
