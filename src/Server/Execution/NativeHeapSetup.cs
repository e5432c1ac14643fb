using JacService.Core.Models;
using Microsoft.Extensions.Options;

namespace JacService.Server.Execution;

/// <summary>
/// Applies Engine:ReuseLargeAllocations before any model loads (hosted services start in order of registration, and
/// this one is registered before the repository loader): glibc then keeps large tensor blocks for reuse.
/// </summary>
public sealed partial class NativeHeapSetup(IOptions<EngineOptions> options, ILogger<NativeHeapSetup> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (options.Value.ReuseLargeAllocations)
        {
            if (NativeHeap.KeepLargeBlocks()) LogKept(logger);
            else LogNotKept(logger);
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Information, Message = "Large tensor blocks stay in the heap for reuse (Engine:ReuseLargeAllocations)")]
    private static partial void LogKept(ILogger logger);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Engine:ReuseLargeAllocations is on, but the C library did not take the setting (not glibc?); large tensors are mapped afresh each time")]
    private static partial void LogNotKept(ILogger logger);
}
