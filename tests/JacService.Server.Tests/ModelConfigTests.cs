using JacService.Core.Tests;
using JacService.Core.Derivatives;
using JacService.Server.Batching;
using JacService.Server.Models;

namespace JacService.Server.Tests;

/// <summary>A model's config.json over the server's settings: what it may change, and what it is refused for.</summary>
public sealed class ModelConfigTests : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"jacservice-config-{Guid.NewGuid():N}.json");

    private static readonly BatchingOptions Server = new()
    {
        MaxBatchSize = 32, MaxQueueDelayMicroseconds = 700, QueueCapacity = 999, Buckets = [1, 2, 4, 16],
        ExecutorThreads = 3, IntraOpThreads = 2, DrainSeconds = 7,
    };

    public void Dispose() => File.Delete(_path);

    private BatchingOptions Load(string json)
    {
        File.WriteAllText(_path, json);
        return ModelConfig.Load(_path, ModelConfig.ServerDefaults(Server)).Batching;
    }

    private string Refused(string json)
    {
        var e = Assert.Throws<InvalidDataException>(() => Load(json));
        Assert.StartsWith(_path + ": ", e.Message);
        return e.Message[(_path.Length + 2)..];
    }

    [Fact]
    public void WithoutAFileTheServerSettingsHold()
    {
        Assert.Same(Server, ModelConfig.Load(_path, ModelConfig.ServerDefaults(Server)).Batching);
    }

    [Fact]
    public void KeysTheFileSetsOverrideAndTheRestKeepTheServerValues()
    {
        var options = Load("""{ "batching": { "maxBatchSize": 16, "PADTOBUCKET": true } }""");
        Assert.Equal(Server with { MaxBatchSize = 16, PadToBucket = true }, options with { Buckets = Server.Buckets });
        Assert.Equal(Server.Buckets, options.Buckets);
        Assert.Equal(7, Server.DrainSeconds); // the server's own settings are left alone
        Assert.Equal(32, Server.MaxBatchSize);
    }

    [Fact]
    public void AListReplacesTheServersListWhole()
    {
        // Layered configuration would merge the lists index by index: [8, 2, 4, 16].
        Assert.Equal([8], Load("""{ "batching": { "maxBatchSize": 8, "buckets": [8] } }""").Buckets);
        Assert.Equal([1, 2, 4, 16], Server.Buckets);
    }

    [Fact]
    public void AnEmptyObjectChangesNothing()
    {
        var options = Load("""{ "batching": { } }""");
        Assert.Equal(Server with { Buckets = [] }, options with { Buckets = [] });
        Assert.Equal(Server.Buckets, options.Buckets);
    }

    [Fact]
    public void AnUnknownBatchingKeyIsRefusedByName()
    {
        var reason = Refused("""{ "batching": { "maxBatchSize": 8, "colour": "red" } }""");
        Assert.Contains("unknown batching setting 'colour'", reason);
    }

    [Fact]
    public void AnUnknownSectionIsRefusedByName()
    {
        var reason = Refused("""{ "batching": { "maxBatchSize": 8 }, "batchin": { } }""");
        Assert.Contains("unknown section 'batchin'", reason);
    }

    [Fact]
    public void AValueOutOfRangeIsRefusedWithItsRange()
    {
        Assert.Contains("The field MaxBatchSize must be between 1 and 65536", Refused("""{ "batching": { "maxBatchSize": 0 } }"""));
        Assert.Contains("Buckets must lie in 1..MaxBatchSize (8)", Refused("""{ "batching": { "maxBatchSize": 8 } }"""));
    }

    [Fact]
    public void AValueOfTheWrongTypeIsRefusedWithItsKey()
    {
        Assert.Contains("maxbatchsize", Refused("""{ "batching": { "maxBatchSize": "many" } }""").ToLowerInvariant());
    }

    [Fact]
    public void TheDrainTimeIsServerWide()
    {
        Assert.Contains("drainSeconds is server-wide", Refused("""{ "batching": { "drainSeconds": 1 } }"""));
    }

    [Theory]
    [InlineData("""{ "batching": { maxBatchSize: 8 """)]
    [InlineData("""[1, 2]""")]
    [InlineData("")]
    public void AFileThatIsNotAJsonObjectIsRefused(string json)
    {
        Assert.NotEmpty(Refused(json));
    }

    [Fact]
    public void AFileOverTheSizeLimitIsRefusedWithTheLimit()
    {
        File.WriteAllText(_path, """{ "batching": { "maxBatchSize": 16 } }""" + new string(' ', 100));
        long length = new FileInfo(_path).Length;
        var e = Assert.Throws<InvalidDataException>(() => ModelConfig.Load(_path, ModelConfig.ServerDefaults(Server), maxBytes: 100));
        Assert.Equal($"{_path}: the file has {length} bytes, over Limits:MaxConfigBytes (100)", e.Message);
        // At the limit it is read.
        Assert.Equal(16, ModelConfig.Load(_path, ModelConfig.ServerDefaults(Server), maxBytes: (int)length).Batching.MaxBatchSize);
    }

    [Fact]
    public void ANamedPipeIsRefusedWithoutOpeningIt()
    {
        // Opening it would wait for a writer: without the check this test hangs rather than fails.
        Fifo.Make(_path);
        var e = Assert.Throws<InvalidDataException>(() => ModelConfig.Load(_path, ModelConfig.ServerDefaults(Server)));
        Assert.Equal($"{_path}: a named pipe (FIFO), not a regular file; refused without opening it", e.Message);
    }

    private DerivativeMode Mode(string json)
    {
        File.WriteAllText(_path, json);
        return ModelConfig.Load(_path, ModelConfig.ServerDefaults(Server)).DerivativeMode;
    }

    [Theory]
    [InlineData("""{ "derivativeMode": "auto" }""", DerivativeMode.Auto)]
    [InlineData("""{ "derivativeMode": "forward" }""", DerivativeMode.Forward)]
    [InlineData("""{ "derivativeMode": "reverse", "batching": { "maxBatchSize": 16 } }""", DerivativeMode.Reverse)]
    [InlineData("""{ "batching": { "maxBatchSize": 16 } }""", DerivativeMode.Auto)]
    public void TheDefaultModeIsReadFromTheTopLevelKey(string json, DerivativeMode expected) => Assert.Equal(expected, Mode(json));

    [Fact]
    public void NoFileMeansAuto() => Assert.Equal(DerivativeMode.Auto, ModelConfig.Load(_path, ModelConfig.ServerDefaults(Server)).DerivativeMode);

    [Theory]
    [InlineData("""{ "derivativeMode": "Reverse" }""", "\"Reverse\"")]
    [InlineData("""{ "derivativeMode": 2 }""", "2")]
    [InlineData("""{ "derivativeMode": null }""", "null")]
    public void AnInvalidModeNamesTheFileTheKeyAndTheAllowedValues(string json, string got) =>
        Assert.Equal($"\"derivativeMode\" must be one of \"auto\", \"forward\", \"reverse\", got {got}", Refused(json));

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
