using JacService.Core.Derivatives;
using JacService.Server.Batching;
using JacService.Server.Models;

namespace JacService.Server.Tests;

/// <summary>config.json's "derivativeMode", and the mode as part of what may share a pass.</summary>
public sealed class ModelConfigTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("jacservice-config-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Config(string json)
    {
        var path = Path.Combine(_dir, "config.json");
        File.WriteAllText(path, json);
        return path;
    }

    [Theory]
    [InlineData("""{ "derivativeMode": "auto" }""", DerivativeMode.Auto)]
    [InlineData("""{ "derivativeMode": "forward" }""", DerivativeMode.Forward)]
    [InlineData("""{ "derivativeMode": "reverse", "batching": { "maxBatchSize": 8 } }""", DerivativeMode.Reverse)]
    [InlineData("""{ "batching": { "maxBatchSize": 8 } }""", DerivativeMode.Auto)]
    public void TheDefaultModeIsReadFromTheTopLevelKey(string json, DerivativeMode expected) =>
        Assert.Equal(expected, ModelConfig.DefaultMode(Config(json)));

    [Fact]
    public void NoFileMeansAuto() => Assert.Equal(DerivativeMode.Auto, ModelConfig.DefaultMode(Path.Combine(_dir, "absent.json")));

    [Theory]
    [InlineData("""{ "derivativeMode": "Reverse" }""", "\"Reverse\"")]
    [InlineData("""{ "derivativeMode": 2 }""", "2")]
    [InlineData("""{ "derivativeMode": null }""", "null")]
    public void AnInvalidModeNamesTheFileTheKeyAndTheAllowedValues(string json, string got)
    {
        var path = Config(json);
        var e = Assert.Throws<InvalidDataException>(() => ModelConfig.DefaultMode(path));
        Assert.Equal($"{path}: \"derivativeMode\" must be one of \"auto\", \"forward\", \"reverse\", got {got}", e.Message);
    }

    [Fact]
    public void RequestsInDifferentModesDoNotShareAPass()
    {
        var forward = new WorkKey(WorkKind.Jacobian, 0, [0], "3", DerivativeMode.Forward);
        Assert.Equal(forward, new WorkKey(WorkKind.Jacobian, 0, [0], "3", DerivativeMode.Forward));
        Assert.Equal(forward.GetHashCode(), new WorkKey(WorkKind.Jacobian, 0, [0], "3", DerivativeMode.Forward).GetHashCode());
        Assert.NotEqual(forward, new WorkKey(WorkKind.Jacobian, 0, [0], "3", DerivativeMode.Reverse));
        Assert.NotEqual(forward, new WorkKey(WorkKind.Jvp, 0, [0], "3", DerivativeMode.Forward));
    }
}
