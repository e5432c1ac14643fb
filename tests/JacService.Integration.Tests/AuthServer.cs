using System.Security.Cryptography;
using Grpc.Core;
using JacService.Integration.Tests.Otlp;

namespace JacService.Integration.Tests;

/// <summary>
/// The real server with JWT bearer (as `dotnet user-jwts` configures it), three API keys (pinn-solver: inference,
/// reader: metadata, operator: control), ModelControl on with its token, and traces exported to an OTLP receiver.
/// </summary>
public sealed class AuthServer : IAsyncLifetime
{
    public const string Inference = "jacservice.inference", Metadata = "jacservice.metadata", Control = "jacservice.control";

    private readonly string _folder = Path.Combine(Path.GetTempPath(), "jacservice-auth-" + Guid.NewGuid().ToString("N")[..8]);

    public Jwts Jwts { get; } = new();
    public ApiKeys Keys { get; } = new();
    public string ControlToken { get; } = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
    public OtlpReceiver Receiver { get; private set; } = null!;
    public ServerProcess Server { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Keys.Add("pinn-solver", Inference);
        Keys.Add("reader", Metadata);
        Keys.Add("operator", Control);
        Directory.CreateDirectory(_folder);
        var tokenFile = Path.Combine(_folder, "control-token");
        await File.WriteAllTextAsync(tokenFile, ControlToken);
        Receiver = await OtlpReceiver.StartAsync();
        Server = new ServerProcess
        {
            ExtraArgs =
            [
                .. Jwts.ServerArgs, .. Keys.ServerArgs,
                "--ModelControl:Enabled=true", $"--ModelControl:TokenFile={tokenFile}", "--Models:Warmup=false",
                // JSON lines carry each record's scopes, where the caller's name is.
                "--Logging:Console:FormatterName=json",
            ],
            EnvironmentVariables =
            {
                ["OTEL_EXPORTER_OTLP_ENDPOINT"] = Receiver.GrpcEndpoint,
                ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc",
                ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
            },
        };
        await Server.InitializeAsync();
    }

    public Metadata Bearer(string token) => new() { { "authorization", "Bearer " + token } };

    public Metadata ApiKey(string name) => new() { { "x-api-key", Keys[name] } };

    public async Task DisposeAsync()
    {
        await Server.DisposeAsync();
        await Receiver.DisposeAsync();
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }
}
