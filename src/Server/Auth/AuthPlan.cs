using Microsoft.AspNetCore.Http;

namespace JacService.Server.Auth;

/// <summary>
/// The authentication settings as the server applies them: which schemes are on, each group's rule with its defaults,
/// and which scheme reads a given request's credentials. Made once at start from <see cref="AuthOptions"/>.
/// </summary>
public sealed class AuthPlan
{
    /// <summary>The policy scheme every group's policy authenticates with: it forwards to the scheme whose credential the request carries.</summary>
    public const string SchemeName = "JacService";

    public const string BearerScheme = "Bearer";
    public const string CertificateScheme = "Certificate";
    private const string ControlPath = "/jacservice.v1.ModelControl";

    private readonly Dictionary<RpcGroup, GroupRule> _rules;

    public AuthPlan(AuthOptions options, bool jwt)
    {
        Jwt = jwt;
        ApiKeys = options.ApiKeys.Count > 0;
        Certificate = options.Certificate.Enabled;
        if (options.AllowAnonymous == false && !AnyScheme)
            throw new InvalidOperationException(
                "Auth:AllowAnonymous is false but no authentication scheme is configured (Authentication:Schemes:Bearer, Auth:ApiKeys or Auth:Certificate), so no caller could get in");
        bool allowAnonymous = options.AllowAnonymous ?? !AnyScheme;
        _rules = Enum.GetValues<RpcGroup>().ToDictionary(g => g, g =>
        {
            var configured = options.Groups.GetValueOrDefault(g) ?? new RpcGroupOptions();
            bool anonymous = configured.Anonymous ?? (g is RpcGroup.Health or RpcGroup.Reflection || allowAnonymous);
            if (!anonymous && !AnyScheme)
                throw new InvalidOperationException(
                    $"Auth:Groups:{g}:Anonymous is false but no authentication scheme is configured, so no caller could call {g} RPCs");
            bool listed = configured.Scopes is not null || configured.Roles is not null;
            return new GroupRule(anonymous,
                listed ? configured.Scopes ?? [] : AuthOptions.DefaultScopes(g),
                configured.Roles ?? []);
        });
    }

    public bool Jwt { get; }
    public bool ApiKeys { get; }
    public bool Certificate { get; }
    public bool AnyScheme => Jwt || ApiKeys || Certificate;

    public GroupRule RuleFor(RpcGroup group) => _rules[group];

    /// <summary>The rule of a method the group table does not know: authenticated callers only, whatever they hold.</summary>
    public static GroupRule UnknownMethod { get; } = new(false, [], []);

    /// <summary>
    /// The scheme that reads this request's credential: an API key first, then a bearer token, then a client certificate;
    /// the first configured scheme when it carries none (that one answers the challenge). On ModelControl calls the
    /// authorization header holds ModelControl's own token (BearerTokenInterceptor), not a JWT, so it is not read as one.
    /// </summary>
    public string SchemeFor(HttpContext context)
    {
        if (ApiKeys && context.Request.Headers.ContainsKey(ApiKeyAuthenticationHandler.Header)) return ApiKeyAuthenticationHandler.SchemeName;
        if (Jwt && CarriesBearer(context)) return BearerScheme;
        if (Certificate && context.Connection.ClientCertificate is not null) return CertificateScheme;
        return Jwt ? BearerScheme : ApiKeys ? ApiKeyAuthenticationHandler.SchemeName : CertificateScheme;
    }

    /// <summary>Whether the request carries a credential one of the configured schemes reads (a client certificate aside).</summary>
    public bool CarriesCredential(HttpContext context) =>
        (ApiKeys && context.Request.Headers.ContainsKey(ApiKeyAuthenticationHandler.Header)) || (Jwt && CarriesBearer(context));

    private static bool CarriesBearer(HttpContext context) =>
        !context.Request.Path.StartsWithSegments(ControlPath, StringComparison.Ordinal)
        && context.Request.Headers.Authorization.ToString().StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase);

    /// <summary>How a caller can authenticate here, for the message of an UNAUTHENTICATED answer.</summary>
    public string HowToAuthenticate()
    {
        var ways = new List<string>();
        if (Jwt) ways.Add("'authorization: Bearer <JWT>'");
        if (ApiKeys) ways.Add("'x-api-key: <key>'");
        if (Certificate) ways.Add("a client certificate");
        return string.Join(" or ", ways);
    }
}
