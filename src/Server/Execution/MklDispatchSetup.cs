using JacService.Core.Models;
using Microsoft.Extensions.Options;

namespace JacService.Server.Execution;

/// <summary>
/// Applies Engine:MklIgnoreCpuVendor before any model loads (registered before the repository loader, like
/// <see cref="NativeHeapSetup"/>): MKL keeps the kernels it picked at its first matrix product.
/// </summary>
public sealed partial class MklDispatchSetup(IOptions<EngineOptions> options, ILogger<MklDispatchSetup> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (!options.Value.MklIgnoreCpuVendor) return Task.CompletedTask;
        var outcome = MklDispatch.IgnoreCpuVendor();
        if (outcome == MklDispatchOutcome.Applied) LogApplied(logger, MklDispatch.CpuVendor());
        else if (outcome == MklDispatchOutcome.UnknownMklBuild) LogUnknownBuild(logger, MklDispatch.CpuVendor());
        else LogNotNeeded(logger, outcome);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Information, Message = "MKL picks its matrix-product kernels by CPU features on this {Vendor} CPU (Engine:MklIgnoreCpuVendor)")]
    private static partial void LogApplied(ILogger logger, string? vendor);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Engine:MklIgnoreCpuVendor is on, but this libtorch's MKL is not a build it knows; on this {Vendor} CPU MKL keeps its slower non-Intel kernels")]
    private static partial void LogUnknownBuild(ILogger logger, string? vendor);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Engine:MklIgnoreCpuVendor: nothing to do ({Outcome})")]
    private static partial void LogNotNeeded(ILogger logger, MklDispatchOutcome outcome);
}
