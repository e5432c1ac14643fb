using JacService.Server.Batching;
using JacService.Server.Models;

namespace JacService.Server.Tests;

/// <summary>Which versions a policy serves, and how a config.json's policy replaces the server's.</summary>
public sealed class VersionPolicyTests : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"jacservice-policy-{Guid.NewGuid():N}.json");

    public void Dispose() => File.Delete(_path);

    private static readonly int[] Found = [3, 1, 7, 2];

    [Fact]
    public void EachFormSelectsItsVersions()
    {
        Assert.Equal([1, 2, 3, 7], VersionPolicy.Default.Select(Found));
        Assert.Equal([1, 2, 3, 7], new VersionPolicy { All = true }.Select(Found));
        Assert.Equal([3, 7], new VersionPolicy { Latest = 2 }.Select(Found));
        Assert.Equal([1, 2, 3, 7], new VersionPolicy { Latest = 10 }.Select(Found));
        Assert.Equal([2, 7], new VersionPolicy { Specific = [7, 2, 5] }.Select(Found));
    }

    private VersionPolicy Load(string json, VersionPolicy? server = null)
    {
        File.WriteAllText(_path, json);
        return ModelConfig.Load(_path, ModelConfig.ServerDefaults(new BatchingOptions(), server)).VersionPolicy;
    }

    [Fact]
    public void AModelsPolicyReplacesTheServersWhole()
    {
        var server = new VersionPolicy { Specific = [1] };
        Assert.Equal("latest 2", Load("""{ "versionPolicy": { "latest": 2 } }""", server).ToString());
        Assert.Equal("all", Load("""{ "versionPolicy": { "all": true } }""", server).ToString());
        Assert.Equal("specific [1]", Load("""{ "derivativeMode": "forward" }""", server).ToString());
    }

    [Theory]
    [InlineData("""{ "versionPolicy": { "latest": 1, "all": true } }""", "sets one of latest (a count), all (true) or specific")]
    [InlineData("""{ "versionPolicy": { "specific": [0, 2] } }""", "specific versions are positive integers, got [0, 2]")]
    [InlineData("""{ "versionPolicy": { "newest": 1 } }""", "unknown versionPolicy setting 'newest'; known: latest, all, specific")]
    public void ABadPolicyIsRefusedWithTheReason(string json, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => Load(json));
        Assert.Contains(expected, e.Message);
    }
}
