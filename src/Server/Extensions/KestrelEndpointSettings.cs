using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace JacService.Server.Extensions;

/// <summary>
/// What the standard "Kestrel" configuration section asks for, read the way Kestrel reads it, for the checks Kestrel
/// does not make: whether endpoints are configured there (then Kestrel ignores "urls"), their addresses (the metrics
/// port must not be one of them) and which of them ask for client certificates (they need Tls:ClientCaPath).
/// </summary>
internal static class KestrelEndpointSettings
{
    public const string Endpoints = "Kestrel:Endpoints";

    /// <summary>Each Kestrel:Endpoints:NAME with its Url, in configuration order.</summary>
    public static IReadOnlyList<(string Name, string Url)> Configured(IConfiguration configuration) =>
        configuration.GetSection(Endpoints).GetChildren().Select(e => (e.Key, e["Url"] ?? "")).ToList();

    /// <summary>
    /// The settings that make Kestrel ask TLS clients for a certificate: an endpoint's ClientCertificateMode, or the
    /// default of every endpoint (Kestrel:EndpointDefaults), when it is anything but NoCertificate.
    /// </summary>
    public static IReadOnlyList<string> AskingForClientCertificates(IConfiguration configuration)
    {
        var keys = configuration.GetSection(Endpoints).GetChildren().Select(e => e.Path + ":ClientCertificateMode")
            .Prepend("Kestrel:EndpointDefaults:ClientCertificateMode");
        return keys.Where(key => configuration[key] is { Length: > 0 } mode
                && !(Enum.TryParse<ClientCertificateMode>(mode, ignoreCase: true, out var parsed) && parsed == ClientCertificateMode.NoCertificate))
            .Select(key => $"{key}={configuration[key]}")
            .ToList();
    }
}
