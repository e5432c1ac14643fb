using JacService.Core.Models;
using Microsoft.Extensions.Options;

namespace JacService.Server.Execution;

/// <summary>
/// Engine:ReturnMemoryWhenIdleSeconds: once no batch has run for that long after some did, shrinks ONNX Runtime's
/// shared arena and gives the native heap's free pages back, and logs what the resident size fell by. Both keep what
/// the largest calls needed so that the next ones find it ready (a DenseNet-121 Vjp of 8 images left ~2.7 GiB resident
/// for ~0.8 GiB in use); under load nothing is given back, as a batch is always running or just ended.
/// </summary>
public sealed partial class IdleMemoryReturn(IOptions<EngineOptions> options, ILogger<IdleMemoryReturn> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        double seconds = options.Value.ReturnMemoryWhenIdleSeconds;
        if (seconds <= 0) return;
        long idle = (long)(seconds * 1000);
        // Looked at a few times per idle spell: memory goes back between one and 1.25 idle spells after the last batch.
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(Math.Clamp(idle / 4, 100, 10_000)));
        long endedAtReturn = 0;
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                var now = ComputeActivity.Now();
                if (!now.IdleSinceWork(endedAtReturn, Environment.TickCount64, idle)) continue;
                endedAtReturn = now.Ended;
                long before = Environment.WorkingSet;
                bool shrunk = OnnxRuntimeArena.Shrink();
                bool trimmed = NativeHeap.ReturnFreePages();
                LogReturned(logger, seconds, before >> 20, Environment.WorkingSet >> 20, shrunk, trimmed);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "No batch for {Seconds} s: resident memory {Before} -> {After} MiB (ONNX Runtime's arena shrunk: {Shrunk}; the heap's free pages returned: {Trimmed})")]
    private static partial void LogReturned(ILogger logger, double seconds, long before, long after, bool shrunk, bool trimmed);
}
