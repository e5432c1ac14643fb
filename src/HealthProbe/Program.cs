using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;

// Usage: JacService.HealthProbe [address] [service]
// Exit code 0 only when grpc.health.v1.Health/Check answers SERVING within the timeout; anything else is 1, so
// Docker marks the container unhealthy. The address defaults to the port the image listens on.
// TLS (an https:// address): JACSERVICE_PROBE_CA names the PEM file of the CAs to trust, and JACSERVICE_PROBE_CERT
// with JACSERVICE_PROBE_KEY the client certificate for a server that requires one.
var address = args.Length > 0 ? args[0] : Environment.GetEnvironmentVariable("JACSERVICE_PROBE_ADDRESS") ?? "http://127.0.0.1:50051";
var service = args.Length > 1 ? args[1] : "";
var timeout = TimeSpan.FromSeconds(double.TryParse(Environment.GetEnvironmentVariable("JACSERVICE_PROBE_TIMEOUT_SECONDS"),
    System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var s) ? s : 3);

try
{
    using var channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { HttpHandler = Handler() });
    var reply = await new Health.HealthClient(channel).CheckAsync(
        new HealthCheckRequest { Service = service }, deadline: DateTime.UtcNow + timeout);
    Console.WriteLine($"{address} {(service == "" ? "(server)" : service)}: {reply.Status}");
    return reply.Status == HealthCheckResponse.Types.ServingStatus.Serving ? 0 : 1;
}
catch (RpcException e)
{
    Console.Error.WriteLine($"{address}: {e.StatusCode} {e.Status.Detail}");
    return 1;
}
catch (Exception e) when (e is ArgumentException or UriFormatException or InvalidOperationException or CryptographicException or IOException)
{
    // A malformed address (no scheme, say) or an unreadable TLS file is a failed probe with a reason, not a crash with
    // another exit code.
    Console.Error.WriteLine($"{address}: {e.Message}");
    return 1;
}

static SocketsHttpHandler Handler()
{
    var handler = new SocketsHttpHandler();
    if (Environment.GetEnvironmentVariable("JACSERVICE_PROBE_CA") is { Length: > 0 } ca)
    {
        var roots = new X509Certificate2Collection();
        roots.ImportFromPemFile(ca);
        handler.SslOptions.CertificateChainPolicy = new X509ChainPolicy
        {
            TrustMode = X509ChainTrustMode.CustomRootTrust,
            RevocationMode = X509RevocationMode.NoCheck,
        };
        handler.SslOptions.CertificateChainPolicy.CustomTrustStore.AddRange(roots);
        // The probe dials its own container at 127.0.0.1, a name the certificate (issued for the Service's DNS names)
        // need not hold; that the certificate chains to the CA is still required.
        handler.SslOptions.RemoteCertificateValidationCallback = (_, _, _, errors) =>
            (errors & ~SslPolicyErrors.RemoteCertificateNameMismatch) == SslPolicyErrors.None;
    }
    if (Environment.GetEnvironmentVariable("JACSERVICE_PROBE_CERT") is { Length: > 0 } certificate)
        handler.SslOptions.ClientCertificates = [X509Certificate2.CreateFromPemFile(certificate, Environment.GetEnvironmentVariable("JACSERVICE_PROBE_KEY"))];
    return handler;
}
