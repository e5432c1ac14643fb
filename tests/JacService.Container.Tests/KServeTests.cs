using k8s;
using k8s.Models;
using JacService.Testing;

namespace JacService.Container.Tests;

/// <summary>
/// deploy/kserve without a cluster, as HelmTests checks the chart: every manifest parsed strictly (an unknown field or
/// a wrong type fails), the ServingRuntime running the chart's image with the chart's ports, settings and security, and
/// the InferenceService selecting that runtime with the Open Inference Protocol over gRPC. KServe's CRD schemas are not
/// in any package served here, so they are not checked in this test (docs/open-inference.md says what was checked by hand).
/// </summary>
public sealed class KServeTests
{
    private static string Dir => Path.Combine(Fixtures.Root, "deploy", "kserve");

    [Fact]
    public void ServingRuntimeRunsTheChartsImageOnTheChartsPorts()
    {
        var chart = ChartContainer();
        var runtime = Parse("servingruntime.yaml").OfType<KServe.ServingRuntime>().Single();
        var container = runtime.Spec.Containers.Single();

        Assert.Equal("kserve-container", container.Name);
        Assert.Equal(chart.Image, container.Image);
        // gRPC on the chart's gRPC port, under the name KServe routes HTTP/2 to; metrics on the chart's metrics port.
        var grpc = chart.Ports.Single(p => p.Name == "grpc");
        var metrics = chart.Ports.Single(p => p.Name == "metrics");
        Assert.Equal([("h2c", grpc.ContainerPort, "TCP")], container.Ports.Select(p => (p.Name, p.ContainerPort, p.Protocol)));
        Assert.Equal(metrics.ContainerPort.ToString(), runtime.Spec.Annotations["prometheus.kserve.io/port"]);
        var env = container.Env.ToDictionary(e => e.Name, e => e.Value);
        var chartEnv = chart.Env.ToDictionary(e => e.Name, e => e.Value);
        Assert.Equal(chartEnv["Urls"], env["Urls"]);
        Assert.Equal(chartEnv["Telemetry__MetricsUrl"], env["Telemetry__MetricsUrl"]);
        Assert.EndsWith($":{grpc.ContainerPort}", env["Urls"]);
        // KServe's storage initializer puts the storageUri's files here.
        Assert.Equal("/mnt/models", env["Models__Root"]);

        Assert.True(container.SecurityContext.RunAsNonRoot);
        Assert.True(container.SecurityContext.ReadOnlyRootFilesystem);
        Assert.False(container.SecurityContext.AllowPrivilegeEscalation);
        Assert.Equal(["ALL"], container.SecurityContext.Capabilities.Drop);
        Assert.Equal("/tmp", container.VolumeMounts.Single(m => m.Name == "tmp").MountPath);
        Assert.NotNull(runtime.Spec.Volumes.Single(v => v.Name == "tmp").EmptyDir);

        Assert.Equal(["grpc-v2"], runtime.Spec.ProtocolVersions);
        Assert.Equal(("onnx", false), (runtime.Spec.SupportedModelFormats.Single().Name, runtime.Spec.SupportedModelFormats.Single().AutoSelect));
    }

    [Fact]
    public void InferenceServiceSelectsTheRuntimeWithTheProtocolItSpeaks()
    {
        var runtime = Parse("servingruntime.yaml").OfType<KServe.ServingRuntime>().Single();
        var service = Parse("inferenceservice.yaml").OfType<KServe.InferenceService>().Single();
        var model = service.Spec.Predictor.Model;
        Assert.Equal(runtime.Metadata.Name, model.Runtime);
        Assert.Contains(model.ProtocolVersion, runtime.Spec.ProtocolVersions);
        Assert.Contains(runtime.Spec.SupportedModelFormats, f => f.Name == model.ModelFormat.Name && f.Version == model.ModelFormat.Version);
        Assert.StartsWith("pvc://", model.StorageUri);
        var runtimePorts = runtime.Spec.Containers.Single().Ports.Select(p => (p.Name, p.ContainerPort, p.Protocol));
        Assert.Equal(runtimePorts, model.Ports.Select(p => (p.Name, p.ContainerPort, p.Protocol)));
    }

    [Theory]
    [InlineData("servingruntime.yaml", "      autoSelect: false", "      autoSelekt: false")]
    [InlineData("servingruntime.yaml", "          containerPort: 50051", "          containerPort: fifty")]
    [InlineData("inferenceservice.yaml", "      storageUri: pvc://jacservice-models/models", "      storageURI: pvc://jacservice-models/models")]
    [InlineData("inferenceservice.yaml", "          containerPort: 50051", "          containerPort: 50051\n          appProtocol: grpc")]
    public void StrictParseCatchesUnknownFieldsAndWrongTypes(string file, string line, string replacement)
    {
        var yaml = File.ReadAllText(Path.Combine(Dir, file));
        Assert.Contains(line + "\n", yaml);
        Assert.ThrowsAny<Exception>(() => Load(yaml.Replace(line + "\n", replacement + "\n")));
    }

    /// <summary>The chart's server container, rendered with its default values.</summary>
    private static V1Container ChartContainer()
    {
        var yaml = ContainerEngine.Run("helm", ["template", "rel", Path.Combine(Fixtures.Root, "deploy", "helm", "jacservice")]).Output;
        return KubernetesYaml.LoadAllFromString(yaml, strict: true).OfType<V1Deployment>().Single().Spec.Template.Spec.Containers.Single();
    }

    private static List<object> Parse(string file)
    {
        var objects = Load(File.ReadAllText(Path.Combine(Dir, file)));
        Assert.NotEmpty(objects);
        return objects;
    }

    private static List<object> Load(string yaml) => KubernetesYaml.LoadAllFromString(yaml, KServe.Kinds, strict: true);
}
