using JacService.Client;
using JacService.Integration.Tests;
using JacService.Jac.Load;
using JacService.Testing;

namespace JacService.Jac.Tests;

/// <summary>jac's --ca, --cert and --key against a real server that requires client certificates.</summary>
public sealed class TlsVerbTests(TlsVerbTests.MutualTlsServer fixture) : IClassFixture<TlsVerbTests.MutualTlsServer>
{
    public sealed class MutualTlsServer : IAsyncLifetime
    {
        public TestCertificates Certificates { get; } = TestCertificates.Standard();
        public ServerProcess Server { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            var (server, client) = (Certificates.Get("server"), Certificates.Get("client"));
            int port = FreePorts.Next();
            Server = new ServerProcess
            {
                Port = port,
                ExtraArgs = [$"--Kestrel:Endpoints:Grpc:Url=https://127.0.0.1:{port}", $"--Kestrel:Endpoints:Grpc:Certificate:Path={server.Certificate}",
                    $"--Kestrel:Endpoints:Grpc:Certificate:KeyPath={server.Key}", "--Kestrel:Endpoints:Grpc:ClientCertificateMode=RequireCertificate",
                    $"--Tls:ClientCaPath={Certificates.CaFile("ca")}", "--Models:Warmup=false"],
                CreateChannel = target => JacServiceChannel.Create($"https://{target}", tls: new JacServiceClientTlsOptions
                {
                    CaPath = Certificates.CaFile("ca"),
                    CertificatePath = client.Certificate,
                    KeyPath = client.Key,
                }),
            };
            await Server.InitializeAsync();
        }

        public async Task DisposeAsync()
        {
            await Server.DisposeAsync();
            Certificates.Dispose();
        }
    }

    private const string Model = "mlp_tanh";
    private readonly ServerProcess _server = fixture.Server;
    private string Ca => fixture.Certificates.CaFile("ca");
    private TestCertificates.Pem Client => fixture.Certificates.Get("client");

    [Fact]
    public async Task A_host_and_port_with_tls_files_is_reached_over_mutual_tls()
    {
        var r = await JacRunner.RunAsync("models", "--target", _server.Target, "--ca", Ca, "--cert", Client.Certificate, "--key", Client.Key);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains(Model, r.Out);
    }

    [Fact]
    public async Task Load_runs_over_mutual_tls_on_every_connection()
    {
        var r = await JacRunner.RunAsync("load", "-t", $"https://{_server.Target}", "--ca", Ca, "--cert", Client.Certificate, "--key", Client.Key,
            "-M", "jacobian", "-m", Model, "--requests", "40", "--concurrency", "4", "--connections", "2", "--output", "json");
        Assert.True(r.ExitCode == 0, r.Err);
        var report = LoadReport.FromJson(r.Out);
        Assert.Equal(40, report.Ok);
        Assert.Equal(0, report.Errors);
    }

    [Fact]
    public async Task Without_a_client_certificate_jac_says_the_server_wants_one()
    {
        var r = await JacRunner.RunAsync("models", "--target", _server.Target, "--ca", Ca);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"https://{_server.Target} closed the connection during the handshake", r.Err);
        Assert.Contains("give --cert and --key", r.Err);
    }

    [Fact]
    public async Task A_server_certificate_of_another_ca_is_a_tls_error_naming_ca()
    {
        var r = await JacRunner.RunAsync("models", "--target", _server.Target, "--ca", fixture.Certificates.CaFile("other-ca"),
            "--cert", Client.Certificate, "--key", Client.Key);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"jac: TLS with https://{_server.Target} failed: The remote certificate is invalid", r.Err);
        Assert.Contains("--ca", r.Err);
    }

    [Theory]
    [InlineData("--cert and --key go together", "--cert", "CERT")]
    [InlineData("--ca, --cert and --key need an https:// address", "--ca", "CA", "--plaintext")]
    [InlineData("--ca '/no/such/ca.crt' does not exist", "--ca", "/no/such/ca.crt")]
    public async Task Tls_options_are_checked_before_any_call(string message, params string[] args)
    {
        var target = args.Contains("--plaintext") ? $"http://{_server.Target}" : _server.Target;
        var given = args.Where(a => a != "--plaintext").Select(a => a switch { "CERT" => Client.Certificate, "CA" => Ca, _ => a });
        var r = await JacRunner.RunAsync(["models", "--target", target, .. given]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("jac: " + message, r.Err);
    }
}
