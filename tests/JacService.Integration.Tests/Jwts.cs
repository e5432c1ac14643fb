using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace JacService.Integration.Tests;

/// <summary>
/// JWTs as `dotnet user-jwts` makes them: HS256 with a random 32-byte key, issuer dotnet-user-jwts, and the server
/// settings that accept them (the section user-jwts writes: ValidIssuer, ValidAudiences, SigningKeys).
/// </summary>
public sealed class Jwts
{
    public const string Issuer = "dotnet-user-jwts";
    public const string Audience = "jacservice-tests";

    public byte[] Key { get; } = RandomNumberGenerator.GetBytes(32);

    public string[] ServerArgs =>
    [
        $"--Authentication:Schemes:Bearer:ValidIssuer={Issuer}",
        $"--Authentication:Schemes:Bearer:ValidAudiences:0={Audience}",
        $"--Authentication:Schemes:Bearer:SigningKeys:0:Issuer={Issuer}",
        $"--Authentication:Schemes:Bearer:SigningKeys:0:Value={Convert.ToBase64String(Key)}",
    ];

    /// <summary>A token for <paramref name="subject"/> with <paramref name="scopes"/>, valid for an hour from now unless told otherwise.</summary>
    public string Mint(string subject, string[] scopes, DateTime? expires = null, byte[]? key = null, string audience = Audience)
    {
        var until = expires ?? DateTime.UtcNow.AddHours(1);
        var descriptor = new SecurityTokenDescriptor
        {
            Issuer = Issuer,
            Audience = audience,
            IssuedAt = until.AddHours(-2),
            NotBefore = until.AddHours(-2),
            Expires = until,
            Claims = new Dictionary<string, object> { ["sub"] = subject, ["scope"] = string.Join(' ', scopes) },
            SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(key ?? Key), SecurityAlgorithms.HmacSha256),
        };
        return new JsonWebTokenHandler().CreateToken(descriptor);
    }
}
