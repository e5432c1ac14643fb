using System.Security.Cryptography;
using System.Text;
using JacService.Server.Auth;

namespace JacService.Server.Tests;

/// <summary>API keys are held as SHA-256 hashes (hex or base64) and an offered key is found by its hash.</summary>
public sealed class ApiKeyStoreTests
{
    private const string Key = "7f3c9a1e5b2d8f4a6c0e9b7d3f1a5c8e";

    [Fact]
    public void HexAndBase64HashesReadTheSame()
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(Key));
        Assert.True(ApiKeyStore.TryParseHash(Convert.ToHexStringLower(hash), out var fromHex));
        Assert.True(ApiKeyStore.TryParseHash(Convert.ToHexString(hash), out var fromUpperHex));
        Assert.True(ApiKeyStore.TryParseHash(" " + Convert.ToBase64String(hash) + "\n", out var fromBase64));
        Assert.Equal(hash, fromHex);
        Assert.Equal(hash, fromUpperHex);
        Assert.Equal(hash, fromBase64);
        // What `printf %s "$key" | sha256sum` prints.
        Assert.Equal(Convert.ToHexStringLower(hash), ApiKeyStore.HashHex(Key));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData(Key)] // the key itself, not its hash
    [InlineData("abcd")]
    [InlineData("zz0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd")] // 64 characters, not hex
    [InlineData("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==")] // base64 of 31 bytes, not 32
    public void AnythingButAHashIsRefused(string? text)
    {
        Assert.False(ApiKeyStore.TryParseHash(text, out _));
    }

    [Fact]
    public void AnOfferedKeyFindsItsEntryAndNoOther()
    {
        var store = new ApiKeyStore(
        [
            new ApiKeyOptions { Name = "a", Hash = ApiKeyStore.HashHex("key-a-0123456789abcdef0123456789") },
            new ApiKeyOptions { Name = "b", Hash = Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes("key-b-0123456789abcdef0123456789"))) },
        ]);
        Assert.Equal("a", store.Find("key-a-0123456789abcdef0123456789")?.Name);
        Assert.Equal("b", store.Find("key-b-0123456789abcdef0123456789")?.Name);
        Assert.Null(store.Find("key-c-0123456789abcdef0123456789"));
        Assert.Null(store.Find(""));
        // A hash sent as the key is not the key.
        Assert.Null(store.Find(ApiKeyStore.HashHex("key-a-0123456789abcdef0123456789")));
    }

    [Fact]
    public void SettingsWithTheKeyInPlaceOfItsHashOrADuplicateAreRefused()
    {
        var options = new AuthOptions
        {
            ApiKeys =
            [
                new ApiKeyOptions { Name = "a", Hash = Key },
                new ApiKeyOptions { Name = "b", Hash = ApiKeyStore.HashHex(Key), Scopes = ["two words"] },
                new ApiKeyOptions { Name = "b", Hash = ApiKeyStore.HashHex(Key) },
            ],
        };
        var problems = options.Validate(new(options)).Select(r => r.ErrorMessage!).ToList();
        Assert.Contains(problems, p => p.StartsWith("Auth:ApiKeys:0:Hash must be the SHA-256 of the key"));
        Assert.Contains(problems, p => p.StartsWith("Auth:ApiKeys:1:Scopes: 'two words' is not a scope"));
        Assert.Contains(problems, p => p.StartsWith("Auth:ApiKeys:2:Name 'b' is used by another key"));
        Assert.Contains(problems, p => p.StartsWith("Auth:ApiKeys:2:Hash is the hash of another entry's key"));
    }
}
