using System.Text.Json;
using k8s;
using k8s.Models;
using JacService.Testing;

namespace JacService.Container.Tests;

/// <summary>
/// The Helm chart without a cluster: helm lint --strict, helm template over each values file with every manifest parsed
/// strictly as a Kubernetes object (an unknown field or a wrong type fails), and values the schema must refuse.
/// </summary>
public sealed class HelmTests
{
    private static string Chart => Path.Combine(Fixtures.Root, "deploy", "helm", "jacservice");

    public static TheoryData<string> ValuesFiles => new(["", "ci/gpu-hpa-servicemonitor-values.yaml", "ci/init-container-values.yaml", "ci/model-control-values.yaml", "ci/tls-values.yaml", "ci/auth-quotas-values.yaml"]);

    [Theory]
    [MemberData(nameof(ValuesFiles))]
    public void LintStrict(string values)
    {
        var result = ContainerEngine.Run("helm", ["lint", "--strict", Chart, .. ValuesArgs(values)]);
        Assert.Contains("1 chart(s) linted, 0 chart(s) failed", result.Output);
    }

    [Theory]
    [MemberData(nameof(ValuesFiles))]
    public void RendersStrictKubernetesObjects(string values)
    {
        var objects = Render(values);
        Assert.All(objects, o => Assert.Equal("rel-jacservice", ((IMetadata<V1ObjectMeta>)o).Metadata.Name.Replace("-headless", "").Replace("-dashboard", "")));

        var deployment = objects.OfType<V1Deployment>().Single();
        var pod = deployment.Spec.Template.Spec;
        var container = pod.Containers.Single();
        Assert.True(pod.SecurityContext.RunAsNonRoot);
        Assert.True(container.SecurityContext.ReadOnlyRootFilesystem);
        Assert.False(container.SecurityContext.AllowPrivilegeEscalation);
        Assert.Equal(["ALL"], container.SecurityContext.Capabilities.Drop);
        // The kubelet's gRPC probe cannot speak TLS; with TLS the image's probe runs in the container.
        bool tls = container.Env.Any(e => e.Name == "Kestrel__Endpoints__Grpc__Url");
        foreach (var probe in new[] { container.StartupProbe, container.ReadinessProbe, container.LivenessProbe })
            if (tls) Assert.Equal(["/app/probe/JacService.HealthProbe", "https://127.0.0.1:50051"], probe.Exec.Command);
            else Assert.Equal(50051, probe.Grpc.Port);
        Assert.Equal([("grpc", 50051), ("metrics", 9464)], container.Ports.Select(p => (p.Name, p.ContainerPort)));
        var env = container.Env.ToDictionary(e => e.Name, e => e.Value);
        Assert.Equal("http://0.0.0.0:50051", env["Urls"]);
        Assert.Equal("http://0.0.0.0:9464", env["Telemetry__MetricsUrl"]);
        Assert.Equal("/models", env["Models__Root"]);
        Assert.Equal("/tmp", container.VolumeMounts.Single(m => m.Name == "tmp").MountPath);

        var config = Settings(objects);
        Assert.Equal(config.Metadata.Name, container.EnvFrom.Single().ConfigMapRef.Name);
        Assert.Equal("10", config.Data["Batching__DrainSeconds"]);
        Assert.True(pod.TerminationGracePeriodSeconds > int.Parse(config.Data["Batching__DrainSeconds"]) + 5);

        var service = objects.OfType<V1Service>().Single(s => s.Spec.ClusterIP != "None");
        Assert.Equal("ClusterIP", service.Spec.Type);
        Assert.Equal(["grpc", "metrics"], service.Spec.Ports.Select(p => p.Name));
        Assert.Equal(deployment.Spec.Selector.MatchLabels, service.Spec.Selector);
    }

    [Fact]
    public void DefaultValuesServeTheImagesModels()
    {
        var objects = Render("");
        var pod = objects.OfType<V1Deployment>().Single().Spec.Template.Spec;
        Assert.DoesNotContain(pod.Volumes, v => v.Name == "models");
        Assert.False(pod.Containers.Single().Resources.Limits.ContainsKey("nvidia.com/gpu"));
        Assert.Null(pod.NodeSelector);
        Assert.Null(pod.Tolerations);
        Assert.DoesNotContain("Engine__Device", Settings(objects).Data.Keys);
        Assert.Equal("simple", Settings(objects).Data["Logging__Console__FormatterName"]);
        Assert.Empty(objects.OfType<V2HorizontalPodAutoscaler>());
        Assert.Empty(objects.OfType<ServiceMonitor>());
        Assert.Empty(objects.OfType<PrometheusRule>());
        Assert.Single(objects.OfType<V1ConfigMap>());
        Assert.Single(objects.OfType<V1PodDisruptionBudget>());
        Assert.DoesNotContain(pod.Containers.Single().Env, e => e.Name == "OTEL_EXPORTER_OTLP_ENDPOINT");
        Assert.DoesNotContain(pod.Containers.Single().Env, e => e.Name.StartsWith("ModelControl__", StringComparison.Ordinal));
        Assert.DoesNotContain(pod.Volumes, v => v.Secret is not null);
        Assert.DoesNotContain(pod.Containers.Single().Env, e => e.Name.StartsWith("Kestrel__", StringComparison.Ordinal) || e.Name.StartsWith("Tls__", StringComparison.Ordinal));
    }

    [Fact]
    public void TlsServesTheSecretsCertificateAndProbesOverTls()
    {
        var pod = Render("ci/tls-values.yaml").OfType<V1Deployment>().Single().Spec.Template.Spec;
        var container = pod.Containers.Single();
        var env = container.Env.ToDictionary(e => e.Name, e => e.Value);
        var mount = container.VolumeMounts.Single(m => m.Name == "tls");
        Assert.True(mount.ReadOnlyProperty);
        Assert.Null(mount.SubPath); // a subPath mount would never see the renewed certificate
        string dir = mount.MountPath;

        // Kestrel's standard endpoint settings, with the Secret's cert-manager keys.
        Assert.Equal("https://0.0.0.0:50051", env["Kestrel__Endpoints__Grpc__Url"]);
        Assert.Equal("Http2", env["Kestrel__Endpoints__Grpc__Protocols"]);
        Assert.Equal(dir + "/tls.crt", env["Kestrel__Endpoints__Grpc__Certificate__Path"]);
        Assert.Equal(dir + "/tls.key", env["Kestrel__Endpoints__Grpc__Certificate__KeyPath"]);
        // Mutual TLS: client certificates of the Secret's CA.
        Assert.Equal("RequireCertificate", env["Kestrel__Endpoints__Grpc__ClientCertificateMode"]);
        Assert.Equal(dir + "/ca.crt", env["Tls__ClientCaPath"]);
        // The probe trusts that CA and presents the pod's own certificate.
        Assert.Equal(dir + "/ca.crt", env["JACSERVICE_PROBE_CA"]);
        Assert.Equal((dir + "/tls.crt", dir + "/tls.key"), (env["JACSERVICE_PROBE_CERT"], env["JACSERVICE_PROBE_KEY"]));
        // Metrics stay plain HTTP on their own port.
        Assert.Equal("http://0.0.0.0:9464", env["Telemetry__MetricsUrl"]);

        var secret = pod.Volumes.Single(v => v.Name == "tls").Secret;
        Assert.Equal("jacservice-tls", secret.SecretName);
        Assert.Null(secret.Items);
        Assert.Equal(Convert.ToInt32("440", 8), secret.DefaultMode);
    }

    [Fact]
    public void TlsWithoutMutualAsksForNoClientCertificate()
    {
        var yaml = ContainerEngine.Run("helm", ["template", "rel", Chart, "--set", "tls.enabled=true", "--set", "tls.secretName=jac-tls"]).Output;
        var container = Parse(yaml).OfType<V1Deployment>().Single().Spec.Template.Spec.Containers.Single();
        var names = container.Env.Select(e => e.Name).ToList();
        Assert.Contains("Kestrel__Endpoints__Grpc__Url", names);
        Assert.Contains("JACSERVICE_PROBE_CA", names);
        Assert.DoesNotContain("Kestrel__Endpoints__Grpc__ClientCertificateMode", names);
        Assert.DoesNotContain("Tls__ClientCaPath", names);
        Assert.DoesNotContain("JACSERVICE_PROBE_CERT", names);
    }

    /// <summary>
    /// The Open Inference Protocol's REST binding on a port of its own, named in the Service; with TLS, a Kestrel endpoint
    /// of the Secret's certificate (asking for client certificates under mutual TLS) whose port OpenInference:RestUrl names.
    /// </summary>
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void RestServesTheProtocolOnItsOwnPort(bool tls, bool mutual)
    {
        string[] settings = ["--set", "rest.enabled=true", "--set", "service.restPort=8080"];
        if (tls) settings = [.. settings, "--set", "tls.enabled=true", "--set", "tls.secretName=jac-tls", "--set", $"tls.mutual={mutual.ToString().ToLowerInvariant()}"];
        var objects = Parse(ContainerEngine.Run("helm", ["template", "rel", Chart, .. settings]).Output);
        var container = objects.OfType<V1Deployment>().Single().Spec.Template.Spec.Containers.Single();
        Assert.Equal([("grpc", 50051), ("metrics", 9464), ("rest", 8000)], container.Ports.Select(p => (p.Name, p.ContainerPort)));
        var env = container.Env.ToDictionary(e => e.Name, e => e.Value);
        Assert.Equal($"{(tls ? "https" : "http")}://0.0.0.0:8000", env["OpenInference__RestUrl"]);
        var rest = objects.OfType<V1Service>().Single(s => s.Spec.ClusterIP != "None").Spec.Ports.Single(p => p.Name == "rest");
        Assert.Equal((8080, "rest", tls ? "https" : "http"), (rest.Port, rest.TargetPort.Value, rest.AppProtocol));
        if (!tls)
        {
            Assert.DoesNotContain(env.Keys, k => k.StartsWith("Kestrel__", StringComparison.Ordinal));
            return;
        }
        Assert.Equal("https://0.0.0.0:8000", env["Kestrel__Endpoints__Rest__Url"]);
        Assert.Equal("Http1AndHttp2", env["Kestrel__Endpoints__Rest__Protocols"]);
        Assert.Equal(env["Kestrel__Endpoints__Grpc__Certificate__Path"], env["Kestrel__Endpoints__Rest__Certificate__Path"]);
        Assert.Equal(env["Kestrel__Endpoints__Grpc__Certificate__KeyPath"], env["Kestrel__Endpoints__Rest__Certificate__KeyPath"]);
        Assert.Equal(mutual ? "RequireCertificate" : null, env.GetValueOrDefault("Kestrel__Endpoints__Rest__ClientCertificateMode"));
    }

    [Fact]
    public void ModelControlReadsItsTokenFromTheSecretMountedAsAFile()
    {
        var pod = Render("ci/model-control-values.yaml").OfType<V1Deployment>().Single().Spec.Template.Spec;
        var container = pod.Containers.Single();
        var env = container.Env.ToDictionary(e => e.Name, e => e.Value);
        Assert.Equal("true", env["ModelControl__Enabled"]);
        Assert.DoesNotContain("ModelControl__Token", env.Keys);
        var mount = container.VolumeMounts.Single(m => m.Name == "model-control-token");
        Assert.True(mount.ReadOnlyProperty);
        Assert.Equal(mount.MountPath + "/token", env["ModelControl__TokenFile"]);

        var secret = pod.Volumes.Single(v => v.Name == "model-control-token").Secret;
        Assert.Equal("jacservice-control", secret.SecretName);
        Assert.Equal(("control-token", "token"), (secret.Items.Single().Key, secret.Items.Single().Path));
        // 0440 with the pod's fsGroup: the server's group reads the token, other users do not.
        Assert.Equal(Convert.ToInt32("440", 8), secret.DefaultMode);
        Assert.Equal(pod.SecurityContext.RunAsGroup, pod.SecurityContext.FsGroup);
    }

    [Fact]
    public void AuthAndQuotasComeFromValuesAndTheirCredentialsFromSecrets()
    {
        var container = Render("ci/auth-quotas-values.yaml").OfType<V1Deployment>().Single().Spec.Template.Spec.Containers.Single();
        var env = container.Env.ToDictionary(e => e.Name);
        string Value(string name) => env[name].Value;
        (string, string) Secret(string name) => (env[name].ValueFrom.SecretKeyRef.Name, env[name].ValueFrom.SecretKeyRef.Key);

        Assert.Equal("false", Value("Auth__AllowAnonymous"));
        // JWT: the standard section, the signing key from its Secret.
        Assert.Equal("jacservice", Value("Authentication__Schemes__Bearer__ValidAudiences__0"));
        Assert.Equal("dotnet-user-jwts", Value("Authentication__Schemes__Bearer__ValidIssuer"));
        Assert.Equal("dotnet-user-jwts", Value("Authentication__Schemes__Bearer__SigningKeys__0__Issuer"));
        Assert.Equal(("jacservice-jwt", "signing-key"), Secret("Authentication__Schemes__Bearer__SigningKeys__0__Value"));
        Assert.Equal("30", Value("Auth__TokenCacheSeconds"));
        // API keys: names and scopes as values, hashes from the Secret (under the key's name unless secretKey says otherwise).
        Assert.Equal(("pinn-solver", "operator"), (Value("Auth__ApiKeys__0__Name"), Value("Auth__ApiKeys__1__Name")));
        Assert.Equal(("jacservice-api-keys", "pinn-solver"), Secret("Auth__ApiKeys__0__Hash"));
        Assert.Equal(("jacservice-api-keys", "operator-hash"), Secret("Auth__ApiKeys__1__Hash"));
        Assert.Equal(["jacservice.control", "jacservice.metadata"], [Value("Auth__ApiKeys__1__Scopes__0"), Value("Auth__ApiKeys__1__Scopes__1")]);
        // No credential is a plain value anywhere in the pod's environment.
        Assert.All(env.Values.Where(e => e.Name.EndsWith("__Hash", StringComparison.Ordinal) || e.Name.EndsWith("__Value", StringComparison.Ordinal)),
            e => Assert.Null(e.Value));
        // Client certificates name the caller; the CA that checks them is mutual TLS's (Tls:ClientCaPath).
        Assert.Equal(("true", "CommonName", "jacservice.metadata"),
            (Value("Auth__Certificate__Enabled"), Value("Auth__Certificate__NameFrom"), Value("Auth__Certificate__Scopes__0")));
        Assert.EndsWith("/ca.crt", Value("Tls__ClientCaPath"));
        Assert.Equal(("jacservice.inference", "solver", "false"),
            (Value("Auth__Groups__Inference__Scopes__0"), Value("Auth__Groups__Inference__Roles__0"), Value("Auth__Groups__Reflection__Anonymous")));

        Assert.Equal("true", Value("Quotas__Enabled"));
        Assert.Equal(("2000", "4000", "128"),
            (Value("Quotas__Default__RequestsPerSecond"), Value("Quotas__Default__Burst"), Value("Quotas__Default__ConcurrentRequests")));
        // Only what is set: an anonymous rate left unset falls back to the default's.
        Assert.Equal("8", Value("Quotas__Anonymous__ConcurrentRequests"));
        Assert.DoesNotContain("Quotas__Anonymous__RequestsPerSecond", env.Keys);
        Assert.Equal(("20000", "512"), (Value("Quotas__Principals__pinn-solver__RequestsPerSecond"), Value("Quotas__Principals__pinn-solver__ConcurrentRequests")));
    }

    [Fact]
    public void WithoutAuthOrQuotaValuesNothingIsSet()
    {
        var container = Render("").OfType<V1Deployment>().Single().Spec.Template.Spec.Containers.Single();
        Assert.DoesNotContain(container.Env, e => e.Name.StartsWith("Auth", StringComparison.Ordinal) || e.Name.StartsWith("Quotas__", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("auth.apiKeys.existingSecret is required", "auth.apiKeys.keys[0].name=solver")]
    [InlineData("auth.jwt.signingKeysSecret is required", "auth.jwt.enabled=true", "auth.jwt.validAudiences[0]=jacservice", "auth.jwt.signingKeys[0].secretKey=k")]
    [InlineData("auth.jwt.enabled needs auth.jwt.authority", "auth.jwt.enabled=true", "auth.jwt.validAudiences[0]=jacservice")]
    [InlineData("auth.certificate.enabled needs tls.enabled and tls.mutual", "auth.certificate.enabled=true")]
    public void TheTemplateRefusesIncompleteAuthValues(string expected, params string[] settings)
    {
        var result = ContainerEngine.Run("helm", ["template", "rel", Chart, .. settings.SelectMany(s => new[] { "--set", s })], allowFailure: true);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains(expected, result.Output);
    }

    /// <summary>Kestrel's limits, which the server binds from Kestrel:Limits, reach it as variables like any other setting.</summary>
    [Fact]
    public void KestrelLimitsAreSettings()
    {
        var objects = Parse(ContainerEngine.Run("helm", ["template", "rel", Chart, "--set", "config.Kestrel.Limits.MaxConcurrentConnections=1000",
            "--set", "config.Kestrel.Limits.KeepAliveTimeout=00:01:00"]).Output);

        var data = Settings(objects).Data;
        Assert.Equal("1000", data["Kestrel__Limits__MaxConcurrentConnections"]);
        Assert.Equal("00:01:00", data["Kestrel__Limits__KeepAliveTimeout"]);
        var refused = ContainerEngine.Run("helm", ["template", "rel", Chart, "--set", "config.Kestrel.Limits.MaxConcurrentConnections=0"], allowFailure: true);
        Assert.Contains("config.Kestrel.Limits.MaxConcurrentConnections: Must be greater than or equal to 1", refused.Output);
    }

    [Fact]
    public void SeveralGpusAreEachNamedInEngineDevice()
    {
        var objects = Parse(ContainerEngine.Run("helm", ["template", "rel", Chart, "--set", "gpu.enabled=true", "--set", "gpu.count=3"]).Output);

        Assert.Equal("cuda:0,cuda:1,cuda:2", Settings(objects).Data["Engine__Device"]);
        Assert.Equal(new ResourceQuantity("3"),
            objects.OfType<V1Deployment>().Single().Spec.Template.Spec.Containers.Single().Resources.Limits["nvidia.com/gpu"]);
    }

    [Fact]
    public void GpuAutoscalingAndMonitoring()
    {
        var objects = Render("ci/gpu-hpa-servicemonitor-values.yaml");
        var deployment = objects.OfType<V1Deployment>().Single();
        var pod = deployment.Spec.Template.Spec;
        var container = pod.Containers.Single();

        Assert.Equal(new ResourceQuantity("1"), container.Resources.Limits["nvidia.com/gpu"]);
        // gpu.enabled brings the GPU node selector and toleration beside the values' own, the CUDA image and device.
        Assert.Equal("nvidia.com/gpu", pod.Tolerations.Single().Key);
        Assert.Equal(new Dictionary<string, string> { ["nvidia.com/gpu.present"] = "true", ["topology.kubernetes.io/zone"] = "eu-west-1a" },
            pod.NodeSelector);
        Assert.Equal("registry.example.com/jacservice:0.1.0-cuda", container.Image);
        Assert.Equal("cuda", Settings(objects).Data["Engine__Device"]);

        // The HPA owns the replica count.
        Assert.Null(deployment.Spec.Replicas);
        var hpa = objects.OfType<V2HorizontalPodAutoscaler>().Single();
        Assert.Equal(("Deployment", deployment.Metadata.Name), (hpa.Spec.ScaleTargetRef.Kind, hpa.Spec.ScaleTargetRef.Name));
        Assert.Equal(60, hpa.Spec.Metrics.Single().Resource.Target.AverageUtilization);

        var monitor = objects.OfType<ServiceMonitor>().Single();
        Assert.Equal("metrics", monitor.Spec.Endpoints.Single().Port);
        Assert.Equal("kube-prometheus-stack", monitor.Metadata.Labels["release"]);
        // The job is named by the Service's label, "jacservice" whatever the release: the name the alerting rules select.
        Assert.Equal("app.kubernetes.io/name", monitor.Spec.JobLabel);
        Assert.Equal("jacservice", objects.OfType<V1Service>().Single(s => s.Spec.ClusterIP != "None").Metadata.Labels[monitor.Spec.JobLabel]);

        // The PrometheusRule holds the chart's rule file as it is, labelled for the Prometheus that selects rules.
        var rule = objects.OfType<PrometheusRule>().Single();
        Assert.Equal("kube-prometheus-stack", rule.Metadata.Labels["release"]);
        var file = KubernetesYaml.Deserialize<PrometheusRule.RuleFile>(File.ReadAllText(Path.Combine(Chart, "files", "jacservice-rules.yaml")), strict: true);
        Assert.Equal(JsonSerializer.Serialize(file), JsonSerializer.Serialize(rule.Spec));
        Assert.Contains(rule.Spec.Groups.SelectMany(g => g.Rules), r => r.Alert == "JacServiceUnavailable" && r.Expr == "absent(up{job=\"jacservice\"} == 1)");

        // The dashboard's ConfigMap holds the chart's dashboard file as it is, labelled for Grafana's sidecar.
        var dashboard = objects.OfType<V1ConfigMap>().Single(c => c.Metadata.Name == "rel-jacservice-dashboard");
        Assert.Equal("1", dashboard.Metadata.Labels["grafana_dashboard"]);
        var json = dashboard.Data["jacservice.json"];
        Assert.Equal(File.ReadAllText(Path.Combine(Chart, "files", "jacservice-dashboard.json")).TrimEnd('\n'), json);
        Assert.Equal("jacservice", JsonDocument.Parse(json).RootElement.GetProperty("uid").GetString());

        var headless = objects.OfType<V1Service>().Single(s => s.Spec.ClusterIP == "None");
        Assert.Equal("grpc", headless.Spec.Ports.Single().Name);

        Assert.Equal("jacservice-models", pod.Volumes.Single(v => v.Name == "models").PersistentVolumeClaim.ClaimName);
        Assert.True(container.VolumeMounts.Single(m => m.Name == "models").ReadOnlyProperty);

        var env = container.Env.ToDictionary(e => e.Name, e => e.Value);
        Assert.Equal("http://otel-collector.observability:4317", env["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        Assert.Contains("deployment.environment=staging", env["OTEL_RESOURCE_ATTRIBUTES"]);
        var config = Settings(objects).Data;
        Assert.Equal(["64", "128", "256"], [config["Batching__Buckets__0"], config["Batching__Buckets__1"], config["Batching__Buckets__2"]]);
        Assert.Equal("true", config["Batching__PadToBucket"]);
        Assert.Equal("json", config["Logging__Console__FormatterName"]);
    }

    [Fact]
    public void InitContainerFillsTheModelsVolume()
    {
        var pod = Render("ci/init-container-values.yaml").OfType<V1Deployment>().Single().Spec.Template.Spec;
        var init = pod.InitContainers.Single();
        Assert.Equal("registry.example.com/jacservice-models:2024-06", init.Image);
        Assert.Equal("/target", init.VolumeMounts.Single().MountPath);
        Assert.NotNull(pod.Volumes.Single(v => v.Name == "models").EmptyDir);
        Assert.True(init.SecurityContext.ReadOnlyRootFilesystem);
    }

    [Theory]
    [InlineData("replica-count-string.yaml", "replicaCount: Invalid type")]
    [InlineData("unknown-key.yaml", "Additional property replicas is not allowed")]
    [InlineData("service-type.yaml", "service.type")]
    [InlineData("gpu-count-zero.yaml", "gpu.count")]
    [InlineData("pvc-without-claim.yaml", "models.pvc.claimName")]
    [InlineData("config-typo.yaml", "Additional property MaxBatchSzie is not allowed")]
    [InlineData("batch-size-zero.yaml", "config.Batching.MaxBatchSize")]
    [InlineData("model-control-without-secret.yaml", "modelControl.existingSecret")]
    [InlineData("tls-without-secret.yaml", "tls.secretName")]
    [InlineData("jwt-without-audience.yaml", "auth.jwt.validAudiences")]
    [InlineData("auth-group-typo.yaml", "auth.groups")]
    [InlineData("quota-negative.yaml", "quotas.default.requestsPerSecond")]
    [InlineData("log-format.yaml", "logFormat")]
    public void SchemaRejectsBadValues(string file, string expected)
    {
        var path = Path.Combine(Fixtures.Root, "tests", "JacService.Container.Tests", "HelmBadValues", file);
        var result = ContainerEngine.Run("helm", ["template", "rel", Chart, "-f", path], allowFailure: true);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("values don't meet the specifications of the schema", result.Output);
        Assert.Contains(expected, result.Output);
    }

    [Theory]
    [InlineData("  replicas: 2", "  replicaz: 2")]
    [InlineData("  replicas: 2", "  replicas: two")]
    [InlineData("              containerPort: 50051", "              containerPort: 50051\n              appProtocol: grpc")]
    [InlineData("    - port: metrics", "    - port: metrics\n      honorLabelz: true")]
    public void StrictParseCatchesUnknownFieldsAndWrongTypes(string line, string replacement)
    {
        // The check itself: the same rendering with one field misspelt or mistyped must not parse.
        var yaml = ContainerEngine.Run("helm", ["template", "rel", Chart, "--set", "serviceMonitor.enabled=true"]).Output;
        Assert.NotEmpty(Parse(yaml));
        Assert.Contains(line + "\n", yaml);
        Assert.ThrowsAny<Exception>(() => Parse(yaml.Replace(line + "\n", replacement + "\n")));
    }

    /// <summary>The ConfigMap of server settings (the other one, with grafanaDashboard, holds the dashboard).</summary>
    private static V1ConfigMap Settings(List<object> objects) =>
        objects.OfType<V1ConfigMap>().Single(c => c.Metadata.Labels?.ContainsKey("grafana_dashboard") != true);

    private static List<object> Render(string values)
    {
        var objects = Parse(ContainerEngine.Run("helm", ["template", "rel", Chart, "--namespace", "jac", .. ValuesArgs(values)]).Output);
        Assert.NotEmpty(objects);
        return objects;
    }

    private static List<object> Parse(string yaml) => KubernetesYaml.LoadAllFromString(yaml, new Dictionary<string, Type>
    {
        ["monitoring.coreos.com/v1/ServiceMonitor"] = typeof(ServiceMonitor),
        ["monitoring.coreos.com/v1/PrometheusRule"] = typeof(PrometheusRule),
    }, strict: true);

    private static string[] ValuesArgs(string values) => values == "" ? [] : ["-f", Path.Combine(Chart, values)];
}

/// <summary>
/// The part of the Prometheus Operator's ServiceMonitor the chart writes, so the strict parse also covers it (the
/// client library knows only built-in kinds).
/// </summary>
public sealed class ServiceMonitor : IKubernetesObject<V1ObjectMeta>
{
    public string ApiVersion { get; set; } = "";
    public string Kind { get; set; } = "";
    public V1ObjectMeta Metadata { get; set; } = new();
    public ServiceMonitorSpec Spec { get; set; } = new();
}

public sealed class ServiceMonitorSpec
{
    public string JobLabel { get; set; } = "";
    public V1LabelSelector Selector { get; set; } = new();
    public List<ServiceMonitorEndpoint> Endpoints { get; set; } = [];
}

public sealed class ServiceMonitorEndpoint
{
    public string Port { get; set; } = "";
    public string Path { get; set; } = "";
    public string Interval { get; set; } = "";
    public string ScrapeTimeout { get; set; } = "";
}
