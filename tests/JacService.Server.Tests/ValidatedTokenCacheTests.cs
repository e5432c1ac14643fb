using System.Security.Claims;
using JacService.Server.Auth;
using Microsoft.Extensions.Time.Testing;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace JacService.Server.Tests;

/// <summary>
/// The memory of accepted JWTs in front of the real JsonWebTokenHandler: an accepted token is validated once per
/// lifetime and never remembered past its expiry; a refused one is validated every time.
/// </summary>
public class ValidatedTokenCacheTests
{
    private static readonly SymmetricSecurityKey Key = new(Enumerable.Range(1, 32).Select(i => (byte)i).ToArray());
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.UtcNow);
    private readonly CountingHandler _inner = new();

    private static readonly TokenValidationParameters Parameters = new()
    {
        ValidIssuer = "issuer",
        ValidAudience = "jacservice",
        IssuerSigningKey = Key,
    };

    private ValidatedTokenCache Cache(int seconds = 60) => new(_inner, TimeSpan.FromSeconds(seconds), _clock);

    private static string Mint(string subject, TimeSpan lifetime, SecurityKey? key = null) => new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
    {
        Issuer = "issuer",
        Audience = "jacservice",
        Subject = new ClaimsIdentity([new Claim("sub", subject), new Claim("scope", "jacservice.inference")]),
        Expires = DateTime.UtcNow + lifetime,
        SigningCredentials = new SigningCredentials(key ?? Key, SecurityAlgorithms.HmacSha256),
    });

    [Fact]
    public async Task AnAcceptedTokenIsValidatedOnceAndKeepsItsClaims()
    {
        var cache = Cache();
        string token = Mint("alice", TimeSpan.FromHours(1));
        for (int i = 0; i < 5; i++)
        {
            var result = await cache.ValidateTokenAsync(token, Parameters);
            Assert.True(result.IsValid, result.Exception?.Message);
            Assert.Equal("alice", result.ClaimsIdentity.FindFirst("sub")?.Value);
            Assert.Equal("jacservice.inference", result.ClaimsIdentity.FindFirst("scope")?.Value);
        }
        Assert.Equal(1, _inner.Calls);
        // Another token is another entry.
        Assert.True((await cache.ValidateTokenAsync(Mint("bob", TimeSpan.FromHours(1)), Parameters)).IsValid);
        Assert.Equal(2, _inner.Calls);
    }

    [Fact]
    public async Task ARefusedTokenIsValidatedEveryTime()
    {
        var cache = Cache();
        string forged = Mint("mallory", TimeSpan.FromHours(1), new SymmetricSecurityKey(new byte[32]));
        for (int i = 0; i < 3; i++)
        {
            var result = await cache.ValidateTokenAsync(forged, Parameters);
            Assert.False(result.IsValid);
            Assert.IsType<SecurityTokenSignatureKeyNotFoundException>(result.Exception, exactMatch: false);
        }
        Assert.Equal(3, _inner.Calls);
    }

    [Fact]
    public async Task AnAcceptedTokenIsValidatedAgainAfterTheCacheLifetime()
    {
        var cache = Cache(seconds: 60);
        string token = Mint("alice", TimeSpan.FromHours(1));
        await cache.ValidateTokenAsync(token, Parameters);
        _clock.Advance(TimeSpan.FromSeconds(59));
        await cache.ValidateTokenAsync(token, Parameters);
        Assert.Equal(1, _inner.Calls);
        _clock.Advance(TimeSpan.FromSeconds(2));
        Assert.True((await cache.ValidateTokenAsync(token, Parameters)).IsValid);
        Assert.Equal(2, _inner.Calls);
    }

    [Fact]
    public async Task ATokenIsNeverRememberedPastItsExpiry()
    {
        var cache = Cache(seconds: 3600);
        // Expires in 10 minutes: remembered for those 10, not for the cache's hour.
        string token = Mint("alice", TimeSpan.FromMinutes(10));
        await cache.ValidateTokenAsync(token, Parameters);
        _clock.Advance(TimeSpan.FromMinutes(9));
        await cache.ValidateTokenAsync(token, Parameters);
        Assert.Equal(1, _inner.Calls);
        _clock.Advance(TimeSpan.FromMinutes(2));
        await cache.ValidateTokenAsync(token, Parameters);
        Assert.Equal(2, _inner.Calls);
    }

    private sealed class CountingHandler : TokenHandler
    {
        private readonly JsonWebTokenHandler _real = new() { MapInboundClaims = false };
        public int Calls;

        public override Task<TokenValidationResult> ValidateTokenAsync(string token, TokenValidationParameters validationParameters)
        {
            Interlocked.Increment(ref Calls);
            return _real.ValidateTokenAsync(token, validationParameters);
        }
    }
}
