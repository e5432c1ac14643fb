using Microsoft.AspNetCore.Http;

namespace JacService.Server.Extensions;

/// <summary>An address of the form http(s)://HOST:PORT, as the settings of the server's extra HTTP/1.1 endpoints take it.</summary>
internal static class HttpAddress
{
    /// <summary>The address, or null with <paramref name="problem"/> saying why not.</summary>
    public static BindingAddress? Parse(string url, out string? problem)
    {
        try
        {
            var address = BindingAddress.Parse(url);
            problem = address.Scheme is not ("http" or "https") ? "the scheme must be http or https"
                : address.Port <= 0 ? "a port is required"
                : address.PathBase.Length > 0 ? "give no path"
                : null;
            return problem is null ? address : null;
        }
        catch (FormatException e)
        {
            problem = e.Message;
            return null;
        }
    }
}
