using System.ComponentModel.DataAnnotations;
using JacService.Core.Models;

namespace JacService.Server.Execution;

/// <summary>Message size limits (configuration section "Limits").</summary>
public sealed class LimitsOptions
{
    public const string Section = "Limits";

    /// <summary>Largest request message accepted.</summary>
    [Range(1, 2047)]
    public int MaxRequestMiB { get; set; } = 64;

    /// <summary>Largest result a request may ask for (outputs plus Jacobians); larger ones get RESOURCE_EXHAUSTED before any work.</summary>
    [Range(1, 2047)]
    public int MaxResponseMiB { get; set; } = 256;

    public EngineLimits ToEngineLimits(EngineOptions engine) => new()
    {
        WorkingMemoryBytes = (long)engine.WorkingMemoryMiB << 20,
        MaxResultBytes = (long)MaxResponseMiB << 20,
        MaxCachedPlans = engine.MaxCachedPlans,
        CalibrateAuto = engine.CalibrateAuto,
        PredictWithOnnxRuntime = engine.PredictWithOnnxRuntime,
    };
}
