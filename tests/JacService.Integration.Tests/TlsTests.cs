using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using JacService.Client;
using JacService.Integration.Tests.Otlp;
using JacService.Protos.V1;
using JacService.Testing;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace JacService.Integration.Tests;

/// <summary>
/// TLS and mutual TLS on the gRPC port from Kestrel's standard endpoint configuration, against the real server with
/// certificates openssl made for the run: who gets through, who does not, and the metrics port staying plain HTTP/1.1.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class TlsTests(TlsTests.Servers servers, ServerProcess plain, ITestOutputHelper output) : IClassFixture<TlsTests.Servers>
{
    private readonly TestCertificates _certificates = servers.Certificates;

    /// <summary>
    /// A TLS server (PEM certificate and key) and a mutual TLS one (PKCS#12 certificate for 127.0.0.1 only, client
    /// certificates required).
    /// </summary>
    public sealed class Servers : IAsyncLifetime
    {
        public const string Pkcs12Password = "test-only";
        public TestCertificates Certificates { get; } = TestCertificates.Standard();
        public ServerProcess Tls { get; private set; } = null!;
        public ServerProcess Mutual { get; private set; } = null!;
        /// <summary>The mutual TLS server's REST binding, a Kestrel endpoint of the same certificate and client CA.</summary>
        public int MutualRestPort { get; } = FreePorts.Next();
        /// <summary>Receives the mutual TLS server's spans.</summary>
        public OtlpReceiver Traces { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            Traces = await OtlpReceiver.StartAsync();
            var server = Certificates.Get("server");
            int tlsPort = FreePorts.Next();
            Tls = new ServerProcess
            {
                Port = tlsPort,
                // The settings exactly as an operator writes them.
                ExtraArgs = [$"--Kestrel:Endpoints:Grpc:Url=https://127.0.0.1:{tlsPort}", "--Kestrel:Endpoints:Grpc:Protocols=Http2",
                    $"--Kestrel:Endpoints:Grpc:Certificate:Path={server.Certificate}", $"--Kestrel:Endpoints:Grpc:Certificate:KeyPath={server.Key}"],
                CreateChannel = target => Channel(target, Certificates.CaFile("ca")),
            };
            int mutualPort = FreePorts.Next();
            Mutual = new ServerProcess
            {
                Port = mutualPort,
                // No Protocols: the server's endpoint defaults make it HTTP/2.
                ExtraArgs = [$"--Kestrel:Endpoints:Grpc:Url=https://127.0.0.1:{mutualPort}",
                    $"--Kestrel:Endpoints:Grpc:Certificate:Path={Certificates.Pkcs12("server-ip", Pkcs12Password)}",
                    $"--Kestrel:Endpoints:Grpc:Certificate:Password={Pkcs12Password}",
                    "--Kestrel:Endpoints:Grpc:ClientCertificateMode=RequireCertificate", $"--Tls:ClientCaPath={Certificates.CaFile("ca")}",
                    "--Logging:LogLevel:JacService.Server.Tls=Debug", "--Models:Warmup=false",
                    $"--Kestrel:Endpoints:Rest:Url=https://127.0.0.1:{MutualRestPort}",
                    $"--Kestrel:Endpoints:Rest:Certificate:Path={Certificates.Pkcs12("server-ip", Pkcs12Password)}",
                    $"--Kestrel:Endpoints:Rest:Certificate:Password={Pkcs12Password}", "--Kestrel:Endpoints:Rest:ClientCertificateMode=RequireCertificate",
                    $"--OpenInference:RestUrl=https://127.0.0.1:{MutualRestPort}"],
                CreateChannel = target => Channel(target, Certificates.CaFile("ca"), Certificates.Get("client")),
                EnvironmentVariables =
                {
                    ["OTEL_EXPORTER_OTLP_ENDPOINT"] = Traces.GrpcEndpoint,
                    ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc",
                    ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
                },
            };
            await Task.WhenAll(Tls.InitializeAsync(), Mutual.InitializeAsync());
        }

        public async Task DisposeAsync()
        {
            await Task.WhenAll(Tls.DisposeAsync(), Mutual.DisposeAsync());
            await Traces.DisposeAsync();
            Certificates.Dispose();
        }
    }

    private static GrpcChannel Channel(string target, string? ca, TestCertificates.Pem? client = null, string scheme = "https") =>
        JacServiceChannel.Create($"{scheme}://{target}", tls: new JacServiceClientTlsOptions
        {
            CaPath = ca,
            CertificatePath = client?.Certificate,
            KeyPath = client?.Key,
        });

    private static async Task<ListModelsResponse> List(GrpcChannel channel) =>
        await new JacobianService.JacobianServiceClient(channel).ListModelsAsync(new ListModelsRequest(), deadline: DateTime.UtcNow.AddSeconds(20));

    private async Task<RpcException> Refused(GrpcChannel channel)
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => List(channel));
        output.WriteLine($"{e.StatusCode}: {e.Status.Detail} / {Describe(e.Status.DebugException)}");
        // The connection failed (grpc-dotnet says UNAVAILABLE, or INTERNAL for a failed handshake), rather than a server
        // answering with a status of its own, which carries no exception.
        Assert.Contains(e.StatusCode, new[] { StatusCode.Unavailable, StatusCode.Internal });
        Assert.NotNull(e.Status.DebugException);
        return e;
    }

    private static string Describe(Exception? e) => e is null ? "" : $"{e.GetType().Name}: {e.Message} <- {Describe(e.InnerException)}";

    private static bool Has<T>(Exception? e) where T : Exception => e is not null && (e is T || Has<T>(e.InnerException));

    [Fact]
    public async Task WithTheServersCaTheCallsAreAnswered()
    {
        using var channel = Channel(servers.Tls.Target, _certificates.CaFile("ca"));
        var reference = Fixtures.Load(Traffic.Model);
        var client = new JacobianService.JacobianServiceClient(channel);
        var request = new BatchJacobianRequest { Model = Traffic.Model };
        foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ServingTests.ToProto(t);
        var response = await client.BatchJacobianAsync(request, deadline: DateTime.UtcNow.AddSeconds(30));
        foreach (var (name, expected) in reference.Jacobians["x"])
            Compare.Close(expected, response.Jacobians[name].Shape.ToArray(), response.Jacobians[name].Data, ClientTesting.Tolerance, $"d{name}/dx over TLS");
    }

    [Fact]
    public async Task AnotherCaOrTheSystemStoreRefusesTheServer()
    {
        using var otherCa = Channel(servers.Tls.Target, _certificates.CaFile("other-ca"));
        Assert.True(Has<AuthenticationException>((await Refused(otherCa)).Status.DebugException));
        // The test CA is in no system store.
        using var system = Channel(servers.Tls.Target, ca: null);
        Assert.True(Has<AuthenticationException>((await Refused(system)).Status.DebugException));
    }

    [Fact]
    public async Task PlaintextIsNotServedOnTheTlsPort()
    {
        // ServerProcess also passes --urls http://127.0.0.1:PORT: Kestrel:Endpoints outranks it, as in any ASP.NET Core app.
        using var channel = Channel(servers.Tls.Target, ca: null, scheme: "http");
        await Refused(channel);
    }

    [Fact]
    public async Task MetricsStayPlainHttp()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        foreach (var server in new[] { servers.Tls, servers.Mutual })
        {
            using var response = await http.GetAsync($"http://127.0.0.1:{server.MetricsPort}/metrics");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(HttpVersion.Version11, response.Version);
            Assert.Contains("jacservice_models_loaded", await response.Content.ReadAsStringAsync());
        }
    }

    [Fact]
    public async Task WithoutKestrelEndpointsTheGrpcPortStaysPlaintext()
    {
        Assert.NotEmpty((await List(plain.Channel)).Models);
        using var tls = Channel(plain.Target, _certificates.CaFile("ca"));
        await Refused(tls);
    }

    [Fact]
    public async Task MutualTlsRefusesACallerWithoutACertificate()
    {
        using var channel = Channel(servers.Mutual.Target, _certificates.CaFile("ca"));
        await Refused(channel);
    }

    [Fact]
    public async Task MutualTlsRefusesACertificateOfAnotherCa()
    {
        using var channel = Channel(servers.Mutual.Target, _certificates.CaFile("ca"), _certificates.Get("stranger"));
        await Refused(channel);
        await servers.Mutual.WaitForLog("Caller error ClientCertificateRejected in TLS handshake: client certificate 'CN=stranger' issued by 'CN=JacService test other-ca' refused");
    }

    [Fact]
    public async Task MutualTlsAcceptsTheRightCertificateAndTheRequestSeesIt()
    {
        using var channel = Channel(servers.Mutual.Target, _certificates.CaFile("ca"), _certificates.Get("client"));
        Assert.NotEmpty((await List(channel)).Models);
        await servers.Mutual.WaitForLog("Client certificate 'CN=client' issued by 'CN=JacService test ca'");
        // The request's HttpContext.Connection.ClientCertificate, as the server span records it.
        const string listModels = "jacservice.v1.JacobianService/ListModels";
        for (var deadline = DateTime.UtcNow.AddSeconds(30); DateTime.UtcNow < deadline; await Task.Delay(100))
            if (servers.Traces.Spans.Any(s => s.Attribute("rpc.method") == listModels && s.Attribute("tls.client.subject") == "CN=client")) return;
        Assert.Fail("no ListModels server span with tls.client.subject=CN=client; spans: "
            + string.Join(", ", servers.Traces.Spans.Select(s => $"{s.Span.Name} [{s.Attribute("tls.client.subject")}]")));
    }

    /// <summary>
    /// The Open Inference Protocol's REST binding over TLS: a Kestrel endpoint of its own (HTTP/1.1, or HTTP/2 where the
    /// client offers it) whose port OpenInference:RestUrl names, asking for client certificates of the same CA.
    /// </summary>
    [Fact]
    public async Task TheRestBindingServesTlsAndMutualTlsFromItsKestrelEndpoint()
    {
        var address = new Uri($"https://127.0.0.1:{servers.MutualRestPort}");
        var tls = new JacServiceClientTlsOptions { CaPath = _certificates.CaFile("ca"), CertificatePath = _certificates.Get("client").Certificate,
            KeyPath = _certificates.Get("client").Key };
        using var client = new HttpClient(JacServiceChannel.CreateHandler(tls)) { BaseAddress = address };
        Assert.Equal(System.Net.HttpStatusCode.OK, (await client.GetAsync("/v2/health/ready")).StatusCode);
        var metadata = await client.GetAsync($"/v2/models/{Traffic.Model}");
        Assert.Contains($"\"name\":\"{Traffic.Model}\"", await metadata.Content.ReadAsStringAsync());

        using var noCertificate = new HttpClient(JacServiceChannel.CreateHandler(new JacServiceClientTlsOptions { CaPath = _certificates.CaFile("ca") })) { BaseAddress = address };
        await Assert.ThrowsAsync<HttpRequestException>(() => noCertificate.GetAsync("/v2/health/ready"));
        using var plaintext = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{servers.MutualRestPort}") };
        await Assert.ThrowsAsync<HttpRequestException>(() => plaintext.GetAsync("/v2/health/ready"));
    }

    [Fact]
    public async Task TheClientLibraryTakesTheTlsFilesFromItsOptions()
    {
        var services = new ServiceCollection();
        services.AddJacServiceClient(o =>
        {
            o.Address = new Uri($"https://{servers.Mutual.Target}");
            o.Tls.CaPath = _certificates.CaFile("ca");
            o.Tls.CertificatePath = _certificates.Get("client").Certificate;
            o.Tls.KeyPath = _certificates.Get("client").Key;
        });
        await using var provider = services.BuildServiceProvider();
        var client = provider.GetRequiredService<JacServiceClient>();
        var reference = Fixtures.Load(Traffic.Model);
        var result = await client.JacobianAsync(Traffic.Model, ClientTesting.SampleInputs(reference, 0));
        Assert.NotEmpty(result.Jacobians);
    }

    [Fact]
    public async Task TheClientLibraryChecksTheServersNameWithItsOwnCa()
    {
        // localhost reaches the server, but its certificate names 127.0.0.1 only.
        using var channel = Channel($"localhost:{servers.Mutual.Port}", _certificates.CaFile("ca"), _certificates.Get("client"));
        var e = await Refused(channel);
        Assert.True(Has<AuthenticationException>(e.Status.DebugException), Describe(e.Status.DebugException));
    }

    [Fact]
    public async Task TheHealthProbeChecksTheChainButNotTheNameOfItsOwnContainer()
    {
        // As in a pod: the certificate is for another name than the one the probe dials (localhost here, 127.0.0.1 there).
        var address = $"https://localhost:{servers.Mutual.Port}";
        var client = _certificates.Get("client");
        var probe = await Probe(address, _certificates.CaFile("ca"), client);
        Assert.True(probe.ExitCode == 0, probe.ToString());
        Assert.Contains("(server): Serving", probe.Stdout);
        Assert.Equal(1, (await Probe(address, _certificates.CaFile("other-ca"), client)).ExitCode);
        Assert.Equal(1, (await Probe(address, _certificates.CaFile("ca"), client: null)).ExitCode);
    }

    private static async Task<ExampleProcess.Result> Probe(string address, string ca, TestCertificates.Pem? client)
    {
        var here = AppContext.BaseDirectory;
        var probe = Path.Combine(Fixtures.Root, "src", "HealthProbe", here[(here.LastIndexOf("/bin/", StringComparison.Ordinal) + 1)..], "JacService.HealthProbe.dll");
        return await ExampleProcess.Run("dotnet", [probe, address], new()
        {
            ["JACSERVICE_PROBE_CA"] = ca,
            ["JACSERVICE_PROBE_CERT"] = client?.Certificate ?? "",
            ["JACSERVICE_PROBE_KEY"] = client?.Key ?? "",
            // The probe's 3 s default is a kubelet's; a new process's TLS handshake ran past it once on this 2-core machine
            // at a load average near 8, and what is tested here is the chain, not the time.
            ["JACSERVICE_PROBE_TIMEOUT_SECONDS"] = "30",
        });
    }

    public static TheoryData<string> Languages => new(["python", "go", "cpp", "node"]);

    [Theory]
    [MemberData(nameof(Languages))]
    public async Task ExampleClientsSpeakMutualTls(string language)
    {
        var client = _certificates.Get("client");
        var result = await RunExample(language, "--target", servers.Mutual.Target, "--reference", ReferencePath,
            "--ca", _certificates.CaFile("ca"), "--cert", client.Certificate, "--key", client.Key);
        Assert.True(result.ExitCode == 0, $"{language} example failed over mutual TLS:\n{result}");
        Assert.Contains($"PASS: ", result.Stdout);
    }

    [Fact]
    public async Task ThePythonExampleTrustsTheGivenCa()
    {
        var good = await RunExample("python", "--target", servers.Tls.Target, "--reference", ReferencePath, "--ca", _certificates.CaFile("ca"));
        Assert.True(good.ExitCode == 0, $"python example failed over TLS:\n{good}");
        var wrong = await RunExample("python", "--target", servers.Tls.Target, "--reference", ReferencePath,
            "--ca", _certificates.CaFile("other-ca"), "--timeout", "3");
        Assert.True(wrong.ExitCode == 2, $"python example should not reach a server whose CA it does not trust:\n{wrong}");
    }

    [Fact]
    public async Task TheClientCertificateIsThePrincipalThatTheGroupRulesAuthorise()
    {
        // Auth:Certificate names the caller by its certificate and gives it the metadata scope only: metadata RPCs pass,
        // inference RPCs are refused by the group rule, naming the certificate's principal. A refusal for lack of
        // credentials would be UNAUTHENTICATED instead, so the PERMISSION_DENIED shows the certificate was the principal.
        int port = FreePorts.Next();
        var server = _certificates.Get("server");
        await using var process = new ServerProcess
        {
            Port = port,
            ExtraArgs = [$"--Kestrel:Endpoints:Grpc:Url=https://127.0.0.1:{port}",
                $"--Kestrel:Endpoints:Grpc:Certificate:Path={server.Certificate}", $"--Kestrel:Endpoints:Grpc:Certificate:KeyPath={server.Key}",
                "--Kestrel:Endpoints:Grpc:ClientCertificateMode=RequireCertificate", $"--Tls:ClientCaPath={_certificates.CaFile("ca")}",
                "--Auth:Certificate:Enabled=true", "--Auth:Certificate:NameFrom=CommonName", "--Auth:Certificate:Scopes:0=jacservice.metadata",
                "--Models:Warmup=false"],
            CreateChannel = target => Channel(target, _certificates.CaFile("ca"), _certificates.Get("client")),
        };
        await process.InitializeAsync();

        Assert.NotEmpty((await List(process.Channel)).Models);
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
            await process.Client.PredictAsync(new PredictRequest { Model = Traffic.Model }, deadline: DateTime.UtcNow.AddSeconds(20)));
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        Assert.Equal("'client' may not call Inference RPCs: they need scope jacservice.inference", e.Status.Detail);
    }

    [Fact]
    public async Task AServerCertificateRenewedInAKubernetesSecretVolumeIsServedWithoutARestart()
    {
        // A Secret volume as the kubelet writes it: the files are links into ..data, itself a link to a timestamped folder
        // that an update replaces by swapping ..data in one rename; neither tls.crt nor the configuration changes.
        using var certificates = TestCertificates.Standard();
        var renewed = certificates.Server("server-renewed", "ca");
        var volume = Directory.CreateDirectory(Path.Combine(certificates.Folder, "volume")).FullName;
        WriteSecretVersion(volume, "..2026_01_01", certificates.Get("server"));
        File.CreateSymbolicLink(Path.Combine(volume, "..data"), "..2026_01_01");
        foreach (var file in new[] { "tls.crt", "tls.key" }) File.CreateSymbolicLink(Path.Combine(volume, file), Path.Combine("..data", file));

        int port = FreePorts.Next();
        await using var server = new ServerProcess
        {
            Port = port,
            ExtraArgs = [$"--Kestrel:Endpoints:Grpc:Url=https://127.0.0.1:{port}", $"--Kestrel:Endpoints:Grpc:Certificate:Path={volume}/tls.crt",
                $"--Kestrel:Endpoints:Grpc:Certificate:KeyPath={volume}/tls.key", "--Models:Warmup=false",
                "--Kestrel:Endpoints:Grpc:ClientCertificateMode=RequireCertificate", $"--Tls:ClientCaPath={certificates.CaFile("ca")}"],
            CreateChannel = target => Channel(target, certificates.CaFile("ca"), certificates.Get("client")),
        };
        await server.InitializeAsync();
        Assert.Equal("CN=server", (await PresentedCertificate(port)).Subject);

        WriteSecretVersion(volume, "..2026_02_01", renewed);
        File.CreateSymbolicLink(Path.Combine(volume, "..data_tmp"), "..2026_02_01");
        // rename(2) over the old link, as the kubelet does (File.Move will not move a link to a folder).
        using (var mv = System.Diagnostics.Process.Start("mv", ["-T", Path.Combine(volume, "..data_tmp"), Path.Combine(volume, "..data")]))
        {
            await mv.WaitForExitAsync();
            Assert.Equal(0, mv.ExitCode);
        }

        // Kestrel polls certificate files every few seconds and rebinds the endpoint when one changed; between closing the
        // old listener and opening the new one the port refuses connections (seen once in CI), which is not the answer yet.
        string subject = "";
        for (var deadline = DateTime.UtcNow.AddSeconds(60); DateTime.UtcNow < deadline && subject != "CN=server-renewed"; await Task.Delay(500))
        {
            try
            {
                subject = (await PresentedCertificate(port)).Subject;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
            {
            }
        }
        Assert.Equal("CN=server-renewed", subject);
        // The channel opened before the renewal connects again and is answered: the rebound endpoint still takes client
        // certificates of the configured CA (the system's store would refuse this one), and still refuses others.
        Assert.NotEmpty((await List(server.Channel)).Models);
        using var stranger = Channel(server.Target, certificates.CaFile("ca"), certificates.Get("stranger"));
        await Refused(stranger);
        // The metrics endpoint, bound in code, was never touched.
        using var http = new HttpClient();
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"http://127.0.0.1:{server.MetricsPort}/metrics")).StatusCode);
    }

    private static void WriteSecretVersion(string volume, string version, TestCertificates.Pem pem)
    {
        var folder = Directory.CreateDirectory(Path.Combine(volume, version)).FullName;
        File.Copy(pem.Certificate, Path.Combine(folder, "tls.crt"));
        File.Copy(pem.Key, Path.Combine(folder, "tls.key"));
    }

    /// <summary>The certificate the server shows a new connection, read with a bare TLS handshake.</summary>
    private static async Task<X509Certificate2> PresentedCertificate(int port)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port);
        await using var tls = new SslStream(tcp.GetStream());
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            ApplicationProtocols = [SslApplicationProtocol.Http2],
            // Only which certificate is served matters here; trust is what the other tests check.
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
        });
        return new X509Certificate2(tls.RemoteCertificate!);
    }

    public static TheoryData<string, string[]> RefusedSettings => new()
    {
        { "needs Tls:ClientCaPath", ["--Kestrel:Endpoints:Grpc:ClientCertificateMode=RequireCertificate"] },
        { "needs Tls:ClientCaPath", ["--Kestrel:EndpointDefaults:ClientCertificateMode=AllowCertificate"] },
        { "Tls:ClientCaPath is set, but no endpoint asks for client certificates", ["--Tls:ClientCaPath=CA"] },
        { "Tls:ClientCaPath '/no/such/ca.crt' cannot be read as PEM certificates", ["--Tls:ClientCaPath=/no/such/ca.crt", "--Kestrel:Endpoints:Grpc:ClientCertificateMode=RequireCertificate"] },
        { "which is not a CA certificate", ["--Tls:ClientCaPath=CLIENT", "--Kestrel:Endpoints:Grpc:ClientCertificateMode=RequireCertificate"] },
        { "Auth:Certificate:CaFile is no longer a setting: client certificates are checked against Tls:ClientCaPath", ["--Auth:Certificate:Enabled=true", "--Auth:Certificate:CaFile=CA"] },
        { "Telemetry:MetricsUrl 'http://127.0.0.1:METRICS' uses the port of the gRPC address 'https://127.0.0.1:METRICS'", ["--Kestrel:Endpoints:Grpc:Url=https://127.0.0.1:METRICS"] },
    };

    [Theory]
    [MemberData(nameof(RefusedSettings))]
    public async Task InconsistentTlsSettingsStopTheServerAtStart(string message, string[] settings)
    {
        var server = _certificates.Get("server");
        int metricsPort = FreePorts.Next();
        string Fill(string text) => text.Replace("METRICS", metricsPort.ToString()).Replace("=CA", "=" + _certificates.CaFile("ca"))
            .Replace("=CLIENT", "=" + _certificates.Get("client").Certificate);
        await using var process = new ServerProcess
        {
            ExtraArgs = [$"--Telemetry:MetricsUrl=http://127.0.0.1:{metricsPort}", $"--Kestrel:Endpoints:Grpc:Url=https://127.0.0.1:{FreePorts.Next()}",
                $"--Kestrel:Endpoints:Grpc:Certificate:Path={server.Certificate}", $"--Kestrel:Endpoints:Grpc:Certificate:KeyPath={server.Key}",
                .. settings.Select(Fill)],
        };
        var e = await Assert.ThrowsAsync<InvalidOperationException>(process.InitializeAsync);
        Assert.StartsWith("server exited with", e.Message);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(timeout.Token);
        Assert.Contains(Fill(message), process.Log);
    }

    private static string ReferencePath => Path.Combine(Fixtures.Root, "tests", "fixtures", "reference", Traffic.Model + ".json");

    private async Task<ExampleProcess.Result> RunExample(string language, params string[] args)
    {
        var result = await ExampleBuilds.Run(language, args, async (step, what) =>
        {
            var prepared = await step.Value;
            Assert.True(prepared.ExitCode == 0, $"{what} failed:\n{prepared}");
        });
        output.WriteLine($"{language} {string.Join(' ', args)}: exit {result.ExitCode}\n{result.Stdout}");
        return result;
    }

}
