using System.ComponentModel.DataAnnotations;

namespace JacService.Server.Execution;

/// <summary>Executor threads that run the engine (configuration section "Execution").</summary>
public sealed class ExecutionOptions
{
    public const string Section = "Execution";

    /// <summary>Dedicated threads, each running one request at a time.</summary>
    [Range(1, 256)]
    public int Threads { get; set; } = 2;

    /// <summary>libtorch intra-op threads per executor thread (1 avoids OpenMP spin-waits under contention).</summary>
    [Range(1, 256)]
    public int IntraOpThreads { get; set; } = 1;

    /// <summary>Requests waiting for an executor; beyond this a request is refused with RESOURCE_EXHAUSTED.</summary>
    [Range(1, 1_000_000)]
    public int QueueCapacity { get; set; } = 1024;
}
