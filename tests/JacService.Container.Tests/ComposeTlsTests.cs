using JacService.Testing;
using YamlDotNet.RepresentationModel;

namespace JacService.Container.Tests;

/// <summary>
/// docker-compose.tls.yml over docker-compose.yml, as Compose merges them (no engine needed), and the trial certificates
/// deploy/compose/make-test-certs.sh makes.
/// </summary>
public sealed class ComposeTlsTests
{
    [Fact]
    public void TheOverrideServesGrpcOverTlsAndKeepsMetricsPlain()
    {
        var merged = ContainerEngine.Run("docker-compose",
            ["-f", Path.Combine(Fixtures.Root, "docker-compose.yml"), "-f", Path.Combine(Fixtures.Root, "docker-compose.tls.yml"), "config"]).Output;
        var stream = new YamlStream();
        stream.Load(new StringReader(merged));
        var service = (YamlMappingNode)((YamlMappingNode)((YamlMappingNode)stream.Documents.Single().RootNode).Children["services"]).Children["jacservice"];
        var env = ((YamlMappingNode)service.Children["environment"]).Children
            .ToDictionary(p => ((YamlScalarNode)p.Key).Value!, p => ((YamlScalarNode)p.Value).Value);

        Assert.Equal("https://0.0.0.0:50051", env["Kestrel__Endpoints__Grpc__Url"]);
        Assert.Equal("/tls/tls.crt", env["Kestrel__Endpoints__Grpc__Certificate__Path"]);
        Assert.Equal("/tls/tls.key", env["Kestrel__Endpoints__Grpc__Certificate__KeyPath"]);
        Assert.Equal("https://127.0.0.1:50051", env["JACSERVICE_PROBE_ADDRESS"]);
        Assert.Equal("/tls/ca.crt", env["JACSERVICE_PROBE_CA"]);
        // The base file's settings survive the merge.
        Assert.Equal("http://otel-collector:4317", env["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        var volumes = ((YamlSequenceNode)service.Children["volumes"]).Children.Select(v => v.ToString()).ToList();
        Assert.Contains(volumes, v => v.EndsWith("/deploy/compose/tls:/tls:ro", StringComparison.Ordinal));
        var ports = ((YamlSequenceNode)service.Children["ports"]).Children.Select(p => p.ToString()).ToList();
        Assert.Contains(ports, p => p.Contains(":9464", StringComparison.Ordinal));
    }

    [Fact]
    public void TheTrialCertificatesChainToTheirCaWithTheUsagesTheOverrideNeeds()
    {
        var dir = Path.Combine(Path.GetTempPath(), "jacservice-compose-tls-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            ContainerEngine.Run("bash", [Path.Combine(Fixtures.Root, "deploy", "compose", "make-test-certs.sh"), dir]);
            Assert.Equal(["ca.crt", "ca.key", "client.crt", "client.key", "tls.crt", "tls.key"], Directory.GetFiles(dir).Select(Path.GetFileName).Order());
            // serverAuth for the endpoint; clientAuth too, since with mutual TLS the HEALTHCHECK presents the server's certificate.
            var verify = ContainerEngine.Run("openssl", ["verify", "-CAfile", Path.Combine(dir, "ca.crt"), "-purpose", "sslserver", Path.Combine(dir, "tls.crt")]);
            Assert.Contains("OK", verify.Output);
            foreach (var name in new[] { "tls.crt", "client.crt" })
                Assert.Contains("OK", ContainerEngine.Run("openssl", ["verify", "-CAfile", Path.Combine(dir, "ca.crt"), "-purpose", "sslclient", Path.Combine(dir, name)]).Output);
            var names = ContainerEngine.Run("openssl", ["x509", "-in", Path.Combine(dir, "tls.crt"), "-noout", "-ext", "subjectAltName"]).Output;
            Assert.Contains("DNS:localhost", names);
            Assert.Contains("IP Address:127.0.0.1", names);
            // The image's server runs as UID 1654: the key in the bind mount must be readable by it.
            Assert.Contains("-rw-r--r--", ContainerEngine.Run("ls", ["-l", Path.Combine(dir, "tls.key")]).Output);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
