using System.Net;
using System.Security.Cryptography.X509Certificates;
using JacService.Server.Control;
using JacService.Server.Extensions;
using JacService.Server.Telemetry;
using JacService.Server.Tls;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Certificate;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace JacService.Server.Auth;

/// <summary>
/// Authentication and authorisation with ASP.NET Core's own machinery: JWT bearer (the standard section
/// Authentication:Schemes:Bearer, as `dotnet user-jwts` writes it, or an OpenID Connect Authority), API keys and the mTLS
/// client certificate, behind one policy scheme; and one fallback policy whose requirement applies each RPC group's
/// rule. With no scheme configured and anonymous access left on, nothing is registered: calls cost what they did.
/// </summary>
public static partial class AuthExtensions
{
    public static WebApplicationBuilder AddJacServiceAuth(this WebApplicationBuilder builder)
    {
        // Which schemes exist decides what is registered: read and validated now, once.
        var options = builder.AddOptionsNeededToRegister<AuthOptions>(AuthOptions.Section);
        bool jwt = builder.Configuration.GetSection($"Authentication:Schemes:{AuthPlan.BearerScheme}").Exists();
        var plan = new AuthPlan(options, jwt);
        var services = builder.Services;
        services.AddSingleton(plan);
        if (!plan.AnyScheme) return builder;

        var authentication = services.AddAuthentication(AuthPlan.SchemeName)
            .AddPolicyScheme(AuthPlan.SchemeName, "JWT bearer, API key or client certificate", o => o.ForwardDefaultSelector = plan.SchemeFor);
        if (plan.Jwt) AddJwt(authentication, TimeSpan.FromSeconds(options.TokenCacheSeconds));
        if (plan.ApiKeys)
        {
            services.AddSingleton(new ApiKeyStore(options.ApiKeys));
            authentication.AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
        }
        if (plan.Certificate) AddCertificate(authentication, options.Certificate);

        services.AddSingleton<RpcGroupAuthorizationHandler>();
        services.AddSingleton<IAuthorizationHandler>(sp => sp.GetRequiredService<RpcGroupAuthorizationHandler>());
        services.AddSingleton<IAuthorizationMiddlewareResultHandler, GrpcAuthorizationResultHandler>();
        // A fallback policy rather than [Authorize] on endpoints: it covers every endpoint, those mapped later and
        // unknown methods included, and the requirement finds each call's group from its path.
        // No scheme named in the policy: the authentication middleware has already authenticated with the default
        // scheme (the policy scheme) and set HttpContext.User, and a named scheme makes the policy evaluator authenticate
        // again and build a merged principal on every call. Challenges go to the default scheme all the same.
        services.AddAuthorizationBuilder().SetFallbackPolicy(new AuthorizationPolicyBuilder()
            .AddRequirements(new RpcGroupRequirement()).Build());
        return builder;
    }

    private static void AddJwt(AuthenticationBuilder authentication, TimeSpan tokenCache)
    {
        // AddJwtBearer binds Authentication:Schemes:Bearer itself (ValidIssuer, ValidAudiences, SigningKeys, Authority...).
        authentication.AddJwtBearer(AuthPlan.BearerScheme);
        authentication.Services.AddOptions<JwtBearerOptions>(AuthPlan.BearerScheme)
            .Configure(o =>
            {
                // Claims keep their JWT names (sub, scope, role) instead of being mapped to long URIs.
                o.MapInboundClaims = false;
                o.TokenValidationParameters.NameClaimType = PrincipalClaims.Name;
                o.TokenValidationParameters.RoleClaimType = PrincipalClaims.Role;
            })
            .Validate(o => !string.IsNullOrEmpty(o.Authority) || !string.IsNullOrEmpty(o.MetadataAddress)
                    || o.TokenValidationParameters.IssuerSigningKeys?.Any() == true || o.TokenValidationParameters.IssuerSigningKey is not null,
                "Authentication:Schemes:Bearer needs SigningKeys (each with Issuer and a base64 Value) or an Authority to fetch keys from")
            .Validate(o => !string.IsNullOrEmpty(o.Audience) || !string.IsNullOrEmpty(o.TokenValidationParameters.ValidAudience)
                    || o.TokenValidationParameters.ValidAudiences?.Any() == true || !o.TokenValidationParameters.ValidateAudience,
                "Authentication:Schemes:Bearer needs ValidAudiences (or ValidAudience): the audience tokens for this server carry")
            .ValidateOnStart();
        // The signing keys bound from Authentication:Schemes:Bearer:SigningKeys are a lazy sequence that reads the
        // configuration and decodes each key's base64 again whenever it is enumerated, and the handler clones its
        // parameters (enumerating them) on every call: 3 % of a JWT server's CPU in a perf profile. They are read once, when
        // the options are built.
        authentication.Services.PostConfigure<JwtBearerOptions>(AuthPlan.BearerScheme, o =>
        {
            if (o.TokenValidationParameters.IssuerSigningKeys is { } keys) o.TokenValidationParameters.IssuerSigningKeys = keys.ToList();
        });
        if (tokenCache > TimeSpan.Zero)
            authentication.Services.AddOptions<JwtBearerOptions>(AuthPlan.BearerScheme).PostConfigure<TimeProvider>((o, clock) =>
            {
                // The handlers as configured (MapInboundClaims included), each behind the memory of accepted tokens.
                var handlers = o.TokenHandlers.Select(h => new ValidatedTokenCache(h, tokenCache, clock)).ToList();
                o.TokenHandlers.Clear();
                foreach (var handler in handlers) o.TokenHandlers.Add(handler);
            });
    }

    private static void AddCertificate(AuthenticationBuilder authentication, CertificatePrincipalOptions settings)
    {
        // Kestrel has already validated the certificate against Tls:ClientCaPath; the handler checks the chain again,
        // against the same CAs (the one setting naming the client CA). Revocation is the TLS side's decision (and needs
        // network). Without Tls:ClientCaPath no endpoint asks for certificates, so none arrives to be checked.
        authentication.Services.AddOptions<CertificateAuthenticationOptions>(AuthPlan.CertificateScheme).Configure<IOptions<TlsOptions>>((o, tls) =>
        {
            if (!tls.Value.ChecksClientCertificates) return;
            o.ChainTrustValidationMode = X509ChainTrustMode.CustomRootTrust;
            o.CustomTrustStore = [.. tls.Value.ClientCas];
        });
        authentication.AddCertificate(AuthPlan.CertificateScheme, o =>
        {
            o.AllowedCertificateTypes = CertificateTypes.Chained;
            o.RevocationMode = X509RevocationMode.NoCheck;
            o.Events = new CertificateAuthenticationEvents
            {
                OnCertificateValidated = context =>
                {
                    var certificate = context.ClientCertificate;
                    string name = settings.NameFrom switch
                    {
                        CertificateName.CommonName => certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false),
                        CertificateName.Thumbprint => certificate.GetCertHashString(System.Security.Cryptography.HashAlgorithmName.SHA256),
                        _ => certificate.Subject,
                    };
                    context.Principal = PrincipalClaims.Create(AuthPlan.CertificateScheme, name, settings.Scopes, settings.Roles);
                    context.Success();
                    return Task.CompletedTask;
                },
            };
        });
    }

    /// <summary>
    /// Authentication, authorisation and the caller's name on spans and logs, in that order; after the metrics endpoint
    /// (scrapers carry no credentials) and before the services. Warns at start about anonymous access beyond loopback.
    /// </summary>
    public static WebApplication UseJacServiceAuth(this WebApplication app)
    {
        var plan = app.Services.GetRequiredService<AuthPlan>();
        CheckControl(plan, app.Services.GetRequiredService<IOptions<ModelControlOptions>>().Value);
        app.Lifetime.ApplicationStarted.Register(() => WarnAtStart(app, plan));
        if (!plan.AnyScheme) return app;
        app.UseAuthentication();
        app.UseAuthorization();
        app.UseMiddleware<PrincipalTelemetryMiddleware>();
        return app;
    }

    /// <summary>
    /// On ModelControl calls the authorization header carries ModelControl's token, so the control principal can come
    /// only from an API key or a client certificate; a control group that needs one without either could never be called.
    /// </summary>
    private static void CheckControl(AuthPlan plan, ModelControlOptions control)
    {
        if (control.Enabled && !plan.RuleFor(RpcGroup.Control).Anonymous && !plan.ApiKeys && !plan.Certificate)
            throw new OptionsValidationException(AuthOptions.Section, typeof(AuthOptions),
            [
                "ModelControl is enabled and Auth:Groups:Control needs a principal, but on ModelControl calls the authorization header holds the " +
                "ModelControl token, so a JWT cannot name the caller there: configure Auth:ApiKeys or Auth:Certificate for control callers, " +
                "or set Auth:Groups:Control:Anonymous=true to rely on the ModelControl token alone",
            ]);
    }

    private static void WarnAtStart(WebApplication app, AuthPlan plan)
    {
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(AuthExtensions).FullName!);
        var telemetry = app.Services.GetRequiredService<IOptions<TelemetryOptions>>().Value;
        int? metricsPort = telemetry.ServesMetrics ? telemetry.MetricsPort() : null;
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        var exposed = addresses.Select(BindingAddress.Parse).Where(a => a.Port != metricsPort && !IsLoopback(a.Host)).ToList();
        var open = new[] { RpcGroup.Inference, RpcGroup.Metadata, RpcGroup.Control }.Where(g => plan.RuleFor(g).Anonymous).ToList();
        if (exposed.Count > 0 && open.Count > 0)
            LogAnonymousExposed(logger, string.Join(", ", exposed), string.Join(", ", open));
        if (plan.Certificate && !addresses.Any(a => a.StartsWith("https://", StringComparison.OrdinalIgnoreCase)))
            LogCertificateWithoutTls(logger);
    }

    private static bool IsLoopback(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || (IPAddress.TryParse(host.Trim('[', ']'), out var ip) && IPAddress.IsLoopback(ip));

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "Anonymous callers may call {Groups} RPCs and the server listens beyond loopback ({Addresses}): anyone who reaches it can use it. " +
                  "Configure credentials (Authentication:Schemes:Bearer, Auth:ApiKeys or Auth:Certificate) and leave Auth:AllowAnonymous unset or false")]
    private static partial void LogAnonymousExposed(ILogger logger, string addresses, string groups);

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "Auth:Certificate:Enabled is true but no https address is listened on: no client certificate can arrive (mTLS is configured with the TLS settings)")]
    private static partial void LogCertificateWithoutTls(ILogger logger);
}
