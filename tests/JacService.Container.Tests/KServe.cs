using k8s;
using k8s.Models;

namespace JacService.Container.Tests;

/// <summary>
/// The parts of KServe's ServingRuntime and InferenceService that deploy/kserve writes, so the strict parse covers them
/// (the client library knows only built-in kinds). Containers and volumes are the built-in types, checked in full.
/// </summary>
public static class KServe
{
    public static readonly Dictionary<string, Type> Kinds = new()
    {
        ["serving.kserve.io/v1alpha1/ServingRuntime"] = typeof(ServingRuntime),
        ["serving.kserve.io/v1beta1/InferenceService"] = typeof(InferenceService),
    };

    public sealed class ServingRuntime : IKubernetesObject<V1ObjectMeta>
    {
        public string ApiVersion { get; set; } = "";
        public string Kind { get; set; } = "";
        public V1ObjectMeta Metadata { get; set; } = new();
        public ServingRuntimeSpec Spec { get; set; } = new();
    }

    public sealed class ServingRuntimeSpec
    {
        public Dictionary<string, string> Annotations { get; set; } = [];
        public List<ModelFormat> SupportedModelFormats { get; set; } = [];
        public List<string> ProtocolVersions { get; set; } = [];
        public bool? MultiModel { get; set; }
        public List<V1Container> Containers { get; set; } = [];
        public List<V1Volume> Volumes { get; set; } = [];
    }

    public sealed class ModelFormat
    {
        public string Name { get; set; } = "";
        public string? Version { get; set; }
        public bool? AutoSelect { get; set; }
        public int? Priority { get; set; }
    }

    public sealed class InferenceService : IKubernetesObject<V1ObjectMeta>
    {
        public string ApiVersion { get; set; } = "";
        public string Kind { get; set; } = "";
        public V1ObjectMeta Metadata { get; set; } = new();
        public InferenceServiceSpec Spec { get; set; } = new();
    }

    public sealed class InferenceServiceSpec
    {
        public Predictor Predictor { get; set; } = new();
    }

    public sealed class Predictor
    {
        public int? MinReplicas { get; set; }
        public int? MaxReplicas { get; set; }
        public PredictorModel Model { get; set; } = new();
    }

    /// <summary>A container (the runtime's, overridden field by field) plus what selects the runtime and the model.</summary>
    public sealed record PredictorModel : V1Container
    {
        public ModelFormat ModelFormat { get; set; } = new();
        public string Runtime { get; set; } = "";
        public string ProtocolVersion { get; set; } = "";
        public string StorageUri { get; set; } = "";
    }
}
