using JacService.Server.Extensions;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;

namespace JacService.Server.Tls;

public static class TlsExtensions
{
    /// <summary>
    /// Client certificates checked against Tls:ClientCaPath on every endpoint that asks for them. Server certificates,
    /// https endpoints and ClientCertificateMode are Kestrel's own configuration, untouched here.
    /// </summary>
    public static WebApplicationBuilder AddJacServiceTls(this WebApplicationBuilder builder)
    {
        // Whether Kestrel gets a validator decides what is registered: read and validated now, once.
        var options = builder.AddOptionsNeededToRegister<TlsOptions>(TlsOptions.Section);
        var asking = KestrelEndpointSettings.AskingForClientCertificates(builder.Configuration);
        if (asking.Count > 0 && !options.ChecksClientCertificates)
            throw new OptionsValidationException(TlsOptions.Section, typeof(TlsOptions),
                [$"{string.Join(", ", asking)} needs Tls:ClientCaPath, the PEM file of the CAs that issue client certificates (they are not checked against the system's trust store)"]);
        if (asking.Count == 0 && options.ChecksClientCertificates)
            throw new OptionsValidationException(TlsOptions.Section, typeof(TlsOptions),
                [$"Tls:ClientCaPath is set, but no endpoint asks for client certificates: set {KestrelEndpointSettings.Endpoints}:NAME:ClientCertificateMode=RequireCertificate on the https endpoint"]);
        if (!options.ChecksClientCertificates) return builder;

        builder.Services.AddSingleton<ClientCertificateValidator>();
        // The https defaults reach endpoints from configuration too, and again each time Kestrel rebinds one on reload.
        builder.Services.AddOptions<KestrelServerOptions>().Configure<ClientCertificateValidator>((kestrel, validator) =>
            kestrel.ConfigureHttpsDefaults(https => https.ClientCertificateValidation = validator.Validate));
        return builder;
    }
}
