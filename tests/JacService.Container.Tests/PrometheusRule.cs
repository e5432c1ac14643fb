using k8s;
using k8s.Models;

namespace JacService.Container.Tests;

/// <summary>
/// The Prometheus Operator's PrometheusRule as the chart writes it, so the strict parse of the chart's manifests covers
/// it (the client library knows only built-in kinds). Its spec is a Prometheus rule file's content, so the chart's rule
/// file parses into <see cref="RuleFile"/> too.
/// </summary>
public sealed class PrometheusRule : IKubernetesObject<V1ObjectMeta>
{
    public string ApiVersion { get; set; } = "";
    public string Kind { get; set; } = "";
    public V1ObjectMeta Metadata { get; set; } = new();
    public RuleFile Spec { get; set; } = new();

    public sealed class RuleFile
    {
        public List<Group> Groups { get; set; } = [];
    }

    public sealed class Group
    {
        public string Name { get; set; } = "";
        public List<Rule> Rules { get; set; } = [];
    }

    public sealed class Rule
    {
        public string? Record { get; set; }
        public string? Alert { get; set; }
        public string Expr { get; set; } = "";
        public string? For { get; set; }
        public Dictionary<string, string> Labels { get; set; } = [];
        public Dictionary<string, string> Annotations { get; set; } = [];
    }
}
