using Microsoft.Extensions.Options;

namespace JacService.Client;

/// <summary>
/// Settings of <see cref="JacServiceClient"/> (configuration section "JacServiceClient"), checked by
/// <see cref="Validate"/> before a channel is made and, through <c>AddJacServiceClient</c>, when the host starts.
/// </summary>
public sealed class JacServiceClientOptions
{
    public const string Section = "JacServiceClient";

    /// <summary>The server, e.g. http://127.0.0.1:50051 (plaintext HTTP/2) or https://... .</summary>
    public Uri? Address { get; set; }

    /// <summary>Deadline of every call that names none, from the moment it starts (retries included).</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Attempts per call, the first included, when the server answers UNAVAILABLE (down, restarting, model still
    /// loading) or RESOURCE_EXHAUSTED (a full queue, its call memory budget, a quota; after the wait the server asks
    /// for, if it names one, and not for a call too large for any retry, which it marks so). Every JacService call is
    /// idempotent, so repeating one is safe. 1 turns retries off; gRPC allows 5 at most.
    /// </summary>
    public int MaxAttempts { get; set; } = 5;

    /// <summary>The first retry waits a random time up to this; each further one up to <see cref="BackoffMultiplier"/> times more.</summary>
    public TimeSpan InitialBackoff { get; set; } = TimeSpan.FromMilliseconds(200);

    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromSeconds(5);

    public double BackoffMultiplier { get; set; } = 2;

    /// <summary>
    /// When gRPC's MaxAttempts are spent on UNAVAILABLE, try the call again (after about <see cref="MaxBackoff"/>) for
    /// as long as its deadline (<see cref="Timeout"/>) leaves room, instead of failing. A server restarting (a crash, a
    /// rolling update of a single replica) is down for longer than gRPC's attempts last, seconds to tens of seconds
    /// with the models loading; with this on, callers of idempotent calls see that as latency. Off by default: such a
    /// caller waits up to its whole timeout for a server that is not coming back. Needs MaxAttempts above 1. A unary
    /// call whose HTTP/2 stream was reset in transit (INTERNAL with the connection's error behind it, not a status the
    /// server sent) is tried again too. Measured in docs/security.md, "Crash recovery".
    /// </summary>
    public bool RetryUntilDeadline { get; set; }

    /// <summary>
    /// Largest message sent or received. The server's result limit (Limits:MaxResponseMiB, 256 by default) is the
    /// largest unary answer; StreamBatchJacobian keeps each chunk under it.
    /// </summary>
    public int MaxMessageMiB { get; set; } = 256;

    /// <summary>
    /// A request is kept for retries only up to this size; a larger one is sent once (gRPC's default is 1 MiB,
    /// less than a batch of a few hundred images).
    /// </summary>
    public int MaxRetryBufferPerCallMiB { get; set; } = 16;

    /// <summary>A bearer token (a JWT) sent as <c>authorization: Bearer</c> on every call, for servers with JWT authentication.</summary>
    public string? BearerToken { get; set; }

    /// <summary>An API key sent as <c>x-api-key</c> on every call, for servers with Auth:ApiKeys.</summary>
    public string? ApiKey { get; set; }
    /// <summary>For an https:// address: the CAs to trust and the client certificate for mutual TLS.</summary>
    public JacServiceClientTlsOptions Tls { get; set; } = new();

    /// <summary>Every problem with these settings, each naming the setting; empty when they are valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (Address is null)
            errors.Add($"{Section}:{nameof(Address)} is required (e.g. http://127.0.0.1:50051)");
        else if (!Address.IsAbsoluteUri || Address.Scheme is not ("http" or "https"))
            errors.Add($"{Section}:{nameof(Address)} must be an absolute http:// or https:// address, got '{Address}'");
        if (Timeout <= TimeSpan.Zero)
            errors.Add($"{Section}:{nameof(Timeout)} must be positive, got {Timeout}");
        if (MaxAttempts is < 1 or > 5)
            errors.Add($"{Section}:{nameof(MaxAttempts)} must be 1 to 5, got {MaxAttempts}");
        if (InitialBackoff <= TimeSpan.Zero)
            errors.Add($"{Section}:{nameof(InitialBackoff)} must be positive, got {InitialBackoff}");
        if (MaxBackoff < InitialBackoff)
            errors.Add($"{Section}:{nameof(MaxBackoff)} must be at least {nameof(InitialBackoff)} ({InitialBackoff}), got {MaxBackoff}");
        if (!(BackoffMultiplier >= 1) || double.IsInfinity(BackoffMultiplier))
            errors.Add($"{Section}:{nameof(BackoffMultiplier)} must be a finite number >= 1, got {BackoffMultiplier}");
        if (MaxMessageMiB is < 1 or > 2047)
            errors.Add($"{Section}:{nameof(MaxMessageMiB)} must be 1 to 2047, got {MaxMessageMiB}");
        if (MaxRetryBufferPerCallMiB is < 0 or > 2047)
            errors.Add($"{Section}:{nameof(MaxRetryBufferPerCallMiB)} must be 0 to 2047, got {MaxRetryBufferPerCallMiB}");
        // Header values: visible ASCII only, and never quoted in a message.
        if (BearerToken is not null && (BearerToken.Length == 0 || BearerToken.Any(c => c is < '!' or > '~')))
            errors.Add($"{Section}:{nameof(BearerToken)} must be visible ASCII characters without spaces");
        if (ApiKey is not null && (ApiKey.Length == 0 || ApiKey.Any(c => c is < '!' or > '~')))
            errors.Add($"{Section}:{nameof(ApiKey)} must be visible ASCII characters without spaces");
        errors.AddRange(Tls.Validate($"{Section}:{nameof(Tls)}", Address));
        return errors;
    }

    /// <summary>Throws <see cref="OptionsValidationException"/> listing every problem, as options validation on start does.</summary>
    public void ThrowIfInvalid()
    {
        var errors = Validate();
        if (errors.Count > 0)
            throw new OptionsValidationException(Options.DefaultName, typeof(JacServiceClientOptions), errors);
    }
}

/// <summary>Runs <see cref="JacServiceClientOptions.Validate"/> for the options system (and so on start).</summary>
internal sealed class JacServiceClientOptionsValidator : IValidateOptions<JacServiceClientOptions>
{
    public ValidateOptionsResult Validate(string? name, JacServiceClientOptions options)
    {
        var errors = options.Validate();
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
