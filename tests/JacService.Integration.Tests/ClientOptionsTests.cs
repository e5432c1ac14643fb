using JacService.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace JacService.Integration.Tests;

/// <summary>Options validation of the client library; no server involved.</summary>
public class ClientOptionsTests
{
    private static JacServiceClientOptions Valid() => new() { Address = new Uri("http://127.0.0.1:50051") };

    [Theory]
    [InlineData(0)]
    [InlineData(2048)]
    public void AChannelByAddressRefusesAMessageLimitOutOfRange(int maxMessageMiB)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => JacServiceChannel.Create("http://127.0.0.1:1", maxMessageMiB));
        Assert.Equal("maxMessageMiB", e.ParamName);
    }

    [Fact]
    public void DefaultsWithAnAddressAreValid() => Assert.Empty(Valid().Validate());

    public static TheoryData<string, Action<JacServiceClientOptions>> Invalid => new()
    {
        { "Address is required", o => o.Address = null },
        { "Address must be an absolute http", o => o.Address = new Uri("ftp://host/") },
        { "Timeout must be positive", o => o.Timeout = TimeSpan.Zero },
        { "MaxAttempts must be 1 to 5", o => o.MaxAttempts = 6 },
        { "MaxAttempts must be 1 to 5", o => o.MaxAttempts = 0 },
        { "InitialBackoff must be positive", o => o.InitialBackoff = TimeSpan.Zero },
        { "MaxBackoff must be at least InitialBackoff", o => o.MaxBackoff = TimeSpan.FromMilliseconds(1) },
        { "BackoffMultiplier must be a finite number >= 1", o => o.BackoffMultiplier = double.NaN },
        { "BackoffMultiplier must be a finite number >= 1", o => o.BackoffMultiplier = 0.5 },
        { "MaxMessageMiB must be 1 to 2047", o => o.MaxMessageMiB = 0 },
        { "MaxRetryBufferPerCallMiB must be 0 to 2047", o => o.MaxRetryBufferPerCallMiB = -1 },
        { "Tls:CaPath, CertificatePath and KeyPath need an https:// address", o => o.Tls.CaPath = AFile },
        { "Tls:CertificatePath and KeyPath go together", o => { o.Address = new Uri("https://127.0.0.1:50051"); o.Tls.CertificatePath = AFile; } },
        { "Tls:KeyPath '/no/such/client.key' does not exist", o =>
            {
                o.Address = new Uri("https://127.0.0.1:50051");
                (o.Tls.CertificatePath, o.Tls.KeyPath) = (AFile, "/no/such/client.key");
            }
        },
    };

    // Any file that exists: these checks do not read it.
    private static readonly string AFile = typeof(ClientOptionsTests).Assembly.Location;

    [Theory]
    [MemberData(nameof(Invalid))]
    public void EachBadSettingIsNamed(string message, Action<JacServiceClientOptions> spoil)
    {
        var options = Valid();
        spoil(options);
        var error = Assert.Single(options.Validate());
        Assert.Contains($"JacServiceClient:{message}", error);
        Assert.Throws<OptionsValidationException>(options.ThrowIfInvalid);
        Assert.Throws<OptionsValidationException>(() => JacServiceChannel.Create(options));
    }

    [Fact]
    public void ACaFileWithoutCertificatesIsRefusedWhenTheChannelIsMade()
    {
        var options = new JacServiceClientOptions { Address = new Uri("https://127.0.0.1:50051"), Tls = { CaPath = AFile } };
        Assert.Empty(options.Validate());
        var e = Assert.Throws<InvalidOperationException>(() => JacServiceChannel.Create(options));
        Assert.StartsWith($"JacServiceClient:Tls:CaPath '{AFile}' cannot be read: ", e.Message);
    }

    [Fact]
    public void RegistrationValidatesOnStart()
    {
        var services = new ServiceCollection();
        services.AddJacServiceClient(o => o.Timeout = TimeSpan.FromSeconds(-1));
        using var provider = services.BuildServiceProvider();

        // What a host runs as it starts: every problem at once, before any call.
        var e = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IStartupValidator>().Validate());
        Assert.Equal(2, e.Failures.Count());
        Assert.Contains(e.Failures, f => f.Contains("Address is required"));
        Assert.Contains(e.Failures, f => f.Contains("Timeout must be positive"));
        Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<JacServiceClient>());
    }
}
