using System.ComponentModel.DataAnnotations;
using JacService.Core.Models;

namespace JacService.Server.Execution;

/// <summary>
/// Message size limits, and what a model file may hold (configuration section "Limits"). The model limits refuse a
/// hostile or broken model.onnx (FAILED, with the limit it broke) before the memory or work they bound is spent;
/// docs/security.md says what each guards against.
/// </summary>
public sealed class LimitsOptions : IValidatableObject
{
    public const string Section = "Limits";

    /// <summary>Largest request message accepted.</summary>
    [Range(1, 2047)]
    public int MaxRequestMiB { get; set; } = 64;

    /// <summary>
    /// Request messages and results held at once by calls in progress, all together: a call's message is counted from its
    /// length prefix before it is read (a JacobianStream message as it is read), its result once validation has sized it,
    /// before anything is queued, until the response is written. A call that would pass it is refused with
    /// RESOURCE_EXHAUSTED. A call takes what it needs whatever the size when no other call holds anything, and up to 1 MiB
    /// at a time always. Resident memory grows by about 2.3 times the bytes held.
    /// </summary>
    [Range(1, 1 << 20)]
    public int MaxInFlightMiB { get; set; } = 256;

    /// <summary>Largest result a request may ask for (outputs plus Jacobians, or Predict's outputs); larger ones get RESOURCE_EXHAUSTED before any work.</summary>
    [Range(1, 2047)]
    public int MaxResponseMiB { get; set; } = 256;

    /// <summary>
    /// Most requests of one JacobianStream queued or computing at a time; the stream's later messages wait to be read
    /// (HTTP/2 flow control then holds the sender), so one stream's share of the queue and memory is bounded.
    /// </summary>
    [Range(2, 4096)]
    public int MaxStreamRequestsInFlight { get; set; } = 64;

    /// <summary>
    /// How long a unary or server-streaming call's request message may take to arrive once its length prefix has, while
    /// the call memory budget holds the length it declares; a late one is refused with RESOURCE_EXHAUSTED (a REST infer's
    /// body with 408). 0: no limit. A message of MaxRequestMiB must come at MaxRequestMiB / this per second: 64 MiB in 60 s
    /// is 1.1 MiB/s.
    /// </summary>
    [Range(0, 86_400)]
    public int RequestReadTimeoutSeconds { get; set; } = 60;

    /// <summary>
    /// How long one response message may wait for its client to read it (HTTP/2 flow control holds a write until the
    /// client reads); past it the call is reset, and the client sees RESOURCE_EXHAUSTED. 0: no limit. A message of
    /// MaxResponseMiB must reach the client at MaxResponseMiB / this per second: 256 MiB in 60 s is 4.3 MiB/s.
    /// </summary>
    [Range(0, 86_400)]
    public int ResponseWriteTimeoutSeconds { get; set; } = 60;

    /// <summary>Largest model.onnx loaded; a larger one is FAILED without being read.</summary>
    [Range(1, 2047)]
    public int MaxModelFileMiB { get; set; } = 1024;

    /// <summary>Largest config.json beside a model; a larger one fails its model's versions without being read.</summary>
    [Range(1, 1 << 30)]
    public int MaxConfigBytes { get; set; } = Models.ModelConfig.DefaultMaxBytes;

    /// <summary>Deepest nesting of protobuf messages in a model file (a model without subgraphs needs under 10, one with a Loop about 12).</summary>
    [Range(10, 1000)]
    public int MaxNestingDepth { get; set; } = 32;

    /// <summary>Most nodes in a model file, subgraphs included.</summary>
    [Range(1, int.MaxValue)]
    public int MaxNodes { get; set; } = 100_000;

    /// <summary>Longest chain of nodes in a graph, each consuming the one before.</summary>
    [Range(1, int.MaxValue)]
    public int MaxGraphDepth { get; set; } = 10_000;

    /// <summary>Largest tensor of a model (initializer or Constant value), as held on the device.</summary>
    [Range(1, 1 << 20)]
    public int MaxTensorMiB { get; set; } = 512;

    /// <summary>All tensors of a model together, as held on the device.</summary>
    [Range(1, 1 << 20)]
    public int MaxInitializerMiB { get; set; } = 1024;

    /// <summary>
    /// Elements of all values one sample's pass computes (inputs and every node's outputs: 2^28 is 1 GiB of float32); a
    /// plan for a batch of B may hold B times as many. Refused at load for static shapes, else on the request (RESOURCE_EXHAUSTED).
    /// </summary>
    [Range(typeof(long), "1", "9223372036854775807")]
    public long MaxPlannedElements { get; set; } = 1L << 28;

    /// <summary>Longest string in a model file (names, op types, doc strings, string attributes), in UTF-8 bytes.</summary>
    [Range(1, int.MaxValue)]
    public int MaxStringBytes { get; set; } = 64 << 10;

    /// <summary>Most values in one attribute list of a model, and most attributes on one node.</summary>
    [Range(1, int.MaxValue)]
    public int MaxAttributeElements { get; set; } = 100_000;

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        // A message or result of the largest size would otherwise be taken only when no other call held anything.
        if (MaxInFlightMiB < Math.Max(MaxRequestMiB, MaxResponseMiB))
            yield return new ValidationResult(
                $"Limits:MaxInFlightMiB ({MaxInFlightMiB}) must be at least Limits:MaxRequestMiB ({MaxRequestMiB}) and Limits:MaxResponseMiB ({MaxResponseMiB})",
                [nameof(MaxInFlightMiB)]);
    }

    public EngineLimits ToEngineLimits(EngineOptions engine)
    {
        var devices = engine.ResolvedDevices();
        string device = devices[0];
        var (graphs, note) = engine.ResolvedCudaGraphs(device);
        return new()
        {
            Model = new ModelLimits
            {
                MaxFileBytes = (long)MaxModelFileMiB << 20,
                MaxNestingDepth = MaxNestingDepth,
                MaxNodes = MaxNodes,
                MaxGraphDepth = MaxGraphDepth,
                MaxTensorBytes = (long)MaxTensorMiB << 20,
                MaxInitializerBytes = (long)MaxInitializerMiB << 20,
                MaxPlannedElements = MaxPlannedElements,
                MaxStringBytes = MaxStringBytes,
                MaxAttributeElements = MaxAttributeElements,
            },
            WorkingMemoryBytes = (long)engine.WorkingMemoryMiB << 20,
            MaxResultBytes = (long)MaxResponseMiB << 20,
            MaxCachedPlans = engine.MaxCachedPlans,
            CalibrateAuto = engine.CalibrateAuto,
            CheckAgainstInterpreter = engine.CheckAgainstInterpreter,
            RewriteGraph = engine.GraphRewrites,
            PredictWithOnnxRuntime = engine.ResolvedPredictWithOnnxRuntime(device),
            CompileDerivatives = engine.ResolvedCompileDerivatives(device),
            MaxCompiledNodes = engine.MaxCompiledNodes,
            Device = device,
            Devices = devices,
            CudaGraphs = graphs,
            CudaGraphsNote = note,
        };
    }
}
