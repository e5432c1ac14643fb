using System.Security.Cryptography;
using System.Text;

namespace JacService.Server.Auth;

/// <summary>
/// The accepted API keys, as SHA-256 hashes. An offered key is hashed once and compared with every stored hash in
/// constant time: the comparison takes as long whatever the key, and the server never holds the keys themselves.
/// </summary>
public sealed class ApiKeyStore
{
    private readonly (byte[] Hash, ApiKeyOptions Key)[] _keys;

    public ApiKeyStore(IEnumerable<ApiKeyOptions> keys)
    {
        _keys = keys.Select(k => (TryParseHash(k.Hash, out var hash) ? hash : throw new ArgumentException($"API key '{k.Name}' has no valid hash"), k))
            .ToArray();
    }

    public int Count => _keys.Length;

    /// <summary>The entry whose hash is the hash of <paramref name="offered"/>, or null.</summary>
    public ApiKeyOptions? Find(string offered)
    {
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(Encoding.UTF8.GetBytes(offered), hash);
        ApiKeyOptions? found = null;
        // Every entry is compared, without stopping at a match: the time taken does not say which entry matched.
        foreach (var (stored, key) in _keys)
            if (CryptographicOperations.FixedTimeEquals(hash, stored)) found = key;
        return found;
    }

    /// <summary>The SHA-256 of a key as configuration holds it: 64 hex digits (sha256sum's output) or base64.</summary>
    public static string HashHex(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    /// <summary>Reads a stored hash: 64 hexadecimal digits, or base64 of 32 bytes.</summary>
    public static bool TryParseHash(string? text, out byte[] hash)
    {
        hash = [];
        text = text?.Trim();
        if (string.IsNullOrEmpty(text)) return false;
        if (text.Length == 2 * SHA256.HashSizeInBytes && text.All(Uri.IsHexDigit))
        {
            hash = Convert.FromHexString(text);
            return true;
        }
        var bytes = new byte[SHA256.HashSizeInBytes + 3];
        if (!Convert.TryFromBase64String(text, bytes, out int written) || written != SHA256.HashSizeInBytes) return false;
        hash = bytes[..written];
        return true;
    }
}
