using Microsoft.Extensions.Caching.Memory;
using Microsoft.IdentityModel.Tokens;

namespace JacService.Server.Auth;

/// <summary>
/// JWT bearer's token handler with a memory of the tokens it has accepted. A client sends the same token on every call
/// until it renews it, and validating it again means base64 and JSON decoding, the signature, the issuer, audience and
/// lifetime checks and the claims: 3-6 µs of server CPU per call for an HS256 token here (docs/benchmarks.md, "Cutting
/// authentication's per-call cost"), more for the RSA or ECDSA signatures of an OpenID Connect issuer. An accepted token is remembered for at most
/// <see cref="AuthOptions.TokenCacheSeconds"/> and never past its own expiry; a refused one is never remembered. The
/// price: a signing key removed from configuration or from the issuer's key set stops its tokens only once they are
/// forgotten, up to that many seconds later. Memory is bounded by <see cref="MaxTokens"/> entries.
/// </summary>
public sealed class ValidatedTokenCache(TokenHandler inner, TimeSpan lifetime, TimeProvider clock) : TokenHandler
{
    public const int MaxTokens = 10_000;

    private readonly MemoryCache _accepted = new(new MemoryCacheOptions { SizeLimit = MaxTokens });

    public override async Task<TokenValidationResult> ValidateTokenAsync(string token, TokenValidationParameters validationParameters)
    {
        var now = clock.GetUtcNow();
        if (_accepted.TryGetValue(token, out Accepted? known) && known!.Until > now) return known.Result;
        var result = await inner.ValidateTokenAsync(token, validationParameters);
        if (result.IsValid && result.SecurityToken is { } validated)
        {
            var until = now + lifetime;
            // ValidTo is DateTime.MinValue for a token without "exp" (accepted only where lifetime checks are off).
            if (validated.ValidTo != DateTime.MinValue && validated.ValidTo < until.UtcDateTime)
                until = new DateTimeOffset(DateTime.SpecifyKind(validated.ValidTo, DateTimeKind.Utc));
            if (until > now)
                _accepted.Set(token, new Accepted(result, until), new MemoryCacheEntryOptions { Size = 1, AbsoluteExpiration = until });
        }
        return result;
    }

    public override SecurityToken ReadToken(string token) => inner.ReadToken(token);

    private sealed record Accepted(TokenValidationResult Result, DateTimeOffset Until);
}
