using JacService.Integration.Tests;

namespace JacService.Jac.Tests;

/// <summary>jac's --token, --token-file, --api-key and --api-key-file against a server with JWT and API-key authentication.</summary>
public sealed class CredentialVerbTests(CredentialVerbTests.AuthServer fixture) : IClassFixture<CredentialVerbTests.AuthServer>
{
    public sealed class AuthServer : IAsyncLifetime
    {
        public Jwts Jwts { get; } = new();
        public ApiKeys Keys { get; } = new();
        public ServerProcess Server { get; private set; } = null!;

        public Task InitializeAsync()
        {
            Keys.Add("reader", "jacservice.metadata");
            Server = new ServerProcess { ExtraArgs = [.. Jwts.ServerArgs, .. Keys.ServerArgs, "--Models:Warmup=false"] };
            return Server.InitializeAsync();
        }

        public Task DisposeAsync() => Server.DisposeAsync();
    }

    [Fact]
    public async Task Without_credentials_jac_says_what_to_give()
    {
        var result = await JacRunner.RunAsync("models", "-t", fixture.Server.Target);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("the server wants credentials (this call needs credentials", result.Err);
        Assert.Contains("--api-key-file", result.Err);
    }

    [Fact]
    public async Task An_api_key_from_a_file_or_a_token_lets_jac_in()
    {
        var dir = JacRunner.TempDir();
        var keyFile = Path.Combine(dir, "key");
        await File.WriteAllTextAsync(keyFile, fixture.Keys["reader"] + "\n");

        var byKey = await JacRunner.RunAsync("models", "-t", fixture.Server.Target, "--api-key-file", keyFile);
        Assert.True(byKey.ExitCode == 0, byKey.Err);
        Assert.Contains("mlp_tanh", byKey.Out);

        var byToken = await JacRunner.RunAsync("models", "-t", fixture.Server.Target, "--token", fixture.Jwts.Mint("alice", ["jacservice.metadata"]));
        Assert.True(byToken.ExitCode == 0, byToken.Err);
        Assert.Contains("mlp_tanh", byToken.Out);

        var denied = await JacRunner.RunAsync("models", "-t", fixture.Server.Target, "--token", fixture.Jwts.Mint("alice", ["jacservice.control"]));
        Assert.Equal(1, denied.ExitCode);
        Assert.Contains("the server refused these credentials for this call: 'alice' may not call Metadata RPCs", denied.Err);
        Directory.Delete(dir, recursive: true);
    }
}
