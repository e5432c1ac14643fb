using System.ComponentModel.DataAnnotations;
using JacService.Core.Models;
using JacService.Server.Execution;

namespace JacService.Server.Tests;

/// <summary>The model limits as settings: their defaults are the engine's, and a value out of range stops the start.</summary>
public class LimitsOptionsTests
{
    [Fact]
    public void TheDefaultSettingsAreTheEnginesDefaultLimits()
    {
        var limits = new LimitsOptions().ToEngineLimits(new EngineOptions());

        Assert.Equal(new ModelLimits(), limits.Model);
    }

    [Fact]
    public void TheCallMemoryBudgetHoldsAtLeastTheLargestMessage()
    {
        var options = new LimitsOptions { MaxRequestMiB = 64, MaxResponseMiB = 300, MaxInFlightMiB = 256 };
        var refused = Assert.Single(options.Validate(new ValidationContext(options)));
        Assert.Equal("Limits:MaxInFlightMiB (256) must be at least Limits:MaxRequestMiB (64) and Limits:MaxResponseMiB (300)", refused.ErrorMessage);
        Assert.Empty(new LimitsOptions().Validate(new ValidationContext(new LimitsOptions())));
    }

    [Fact]
    public void OnnxRuntimeServesPredictOnTheCpuOnly()
    {
        // Its CPU build is what ships: on a GPU, Predict runs in the engine there (and is recorded as a graph).
        Assert.True(new EngineOptions().ResolvedPredictWithOnnxRuntime("cpu"));
        Assert.False(new EngineOptions().ResolvedPredictWithOnnxRuntime("cuda:0"));
        Assert.False(new EngineOptions { PredictWithOnnxRuntime = false }.ResolvedPredictWithOnnxRuntime("cpu"));
        Assert.True(new LimitsOptions().ToEngineLimits(new EngineOptions { Device = "cpu" }).PredictWithOnnxRuntime);
    }

    [Fact]
    public void SeveralGpusNeedTheGraphLibraryToBindEachExecutorToItsGpu()
    {
        var options = new EngineOptions { Device = "cuda:0,cuda:1" };

        var refused = Assert.Single(options.Validate(cudaDevices: 2, graphLibraryMissing: "libJacServiceCudaGraphs.so is not loadable (not found)"));
        Assert.Equal("Engine:Device 'cuda:0,cuda:1' cannot be served: it names 2 GPUs, and each executor thread is bound to its GPU " +
            "through the graph library, which is not available: libJacServiceCudaGraphs.so is not loadable (not found); name one GPU", refused.ErrorMessage);
        Assert.Empty(options.Validate(cudaDevices: 2, graphLibraryMissing: null));
        // One GPU needs no binding: the default device names it.
        Assert.Empty(new EngineOptions { Device = "cuda:1" }.Validate(cudaDevices: 2, graphLibraryMissing: "absent"));
    }

    [Fact]
    public void EachSettingReachesTheEngine()
    {
        var options = new LimitsOptions
        {
            MaxModelFileMiB = 3, MaxNestingDepth = 20, MaxNodes = 5, MaxGraphDepth = 6, MaxTensorMiB = 7, MaxInitializerMiB = 8,
            MaxPlannedElements = 9, MaxStringBytes = 10, MaxAttributeElements = 11,
        };

        var model = options.ToEngineLimits(new EngineOptions()).Model;

        Assert.Equal(new ModelLimits
        {
            MaxFileBytes = 3L << 20, MaxNestingDepth = 20, MaxNodes = 5, MaxGraphDepth = 6, MaxTensorBytes = 7L << 20, MaxInitializerBytes = 8L << 20,
            MaxPlannedElements = 9, MaxStringBytes = 10, MaxAttributeElements = 11,
        }, model);
    }

    [Theory]
    [InlineData(nameof(LimitsOptions.MaxModelFileMiB), 0)]
    [InlineData(nameof(LimitsOptions.MaxNestingDepth), 5)]
    [InlineData(nameof(LimitsOptions.MaxNodes), 0)]
    [InlineData(nameof(LimitsOptions.MaxGraphDepth), 0)]
    [InlineData(nameof(LimitsOptions.MaxTensorMiB), 0)]
    [InlineData(nameof(LimitsOptions.MaxInitializerMiB), 0)]
    [InlineData(nameof(LimitsOptions.MaxPlannedElements), 0)]
    [InlineData(nameof(LimitsOptions.MaxStringBytes), 0)]
    [InlineData(nameof(LimitsOptions.MaxAttributeElements), -1)]
    public void AValueOutOfRangeIsRefused(string setting, long value)
    {
        var options = new LimitsOptions();
        var property = typeof(LimitsOptions).GetProperty(setting)!;
        property.SetValue(options, Convert.ChangeType(value, property.PropertyType));

        var results = new List<ValidationResult>();
        Assert.False(Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true));
        Assert.Equal([setting], results.SelectMany(r => r.MemberNames));
    }
}
