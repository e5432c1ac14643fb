using System.Security.Cryptography;
using System.Text;

namespace JacService.Integration.Tests;

/// <summary>Fresh random API keys and the Auth:ApiKeys settings holding their SHA-256 hashes (alternately hex and base64).</summary>
public sealed class ApiKeys
{
    private readonly List<(string Name, string Key, string[] Scopes)> _keys = [];

    public string Add(string name, params string[] scopes)
    {
        var key = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        _keys.Add((name, key, scopes));
        return key;
    }

    public string this[string name] => _keys.Single(k => k.Name == name).Key;

    public string[] ServerArgs => _keys.SelectMany((k, i) =>
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(k.Key));
        var text = i % 2 == 0 ? Convert.ToHexStringLower(hash) : Convert.ToBase64String(hash);
        return new[] { $"--Auth:ApiKeys:{i}:Name={k.Name}", $"--Auth:ApiKeys:{i}:Hash={text}" }
            .Concat(k.Scopes.Select((s, j) => $"--Auth:ApiKeys:{i}:Scopes:{j}={s}"));
    }).ToArray();
}
