using System.ComponentModel.DataAnnotations;

namespace JacService.Server.Batching;

/// <summary>
/// How requests to one model version are merged into batches (configuration section "Batching"; a model's
/// ROOT/&lt;model&gt;/config.json may override any of these but DrainSeconds under "batching", see ModelConfig).
/// </summary>
public sealed record BatchingOptions : IValidatableObject
{
    public const string Section = "Batching";

    /// <summary>Most rows in one pass; 1 turns batching off. Larger requests are split and reassembled.</summary>
    [Range(1, 65536)]
    public int MaxBatchSize { get; set; } = 64;

    /// <summary>How long the oldest waiting request may wait for others to join its batch.</summary>
    [Range(0, 10_000_000)]
    public int MaxQueueDelayMicroseconds { get; set; } = 500;

    /// <summary>
    /// Wait for company only when the recent arrival rate says it is likely within the max delay, and only as long
    /// as the batch needs to fill (see BatchQueue); false waits the max delay whenever the executors are idle.
    /// </summary>
    public bool AdaptiveDelay { get; set; } = true;

    /// <summary>
    /// Rows waiting per model version; a request that would take the queue beyond this is refused with RESOURCE_EXHAUSTED
    /// at once. A larger request is taken when nothing waits, so no request is refused for its size alone.
    /// </summary>
    [Range(1, 10_000_000)]
    public int QueueCapacity { get; set; } = 8192;

    /// <summary>Batch sizes with their own static-shape plan; empty means powers of two up to MaxBatchSize.</summary>
    public int[] Buckets { get; set; } = [];

    /// <summary>
    /// Pad each batch up to its bucket: one plan, and on a GPU one CUDA graph, per bucket instead of per batch size, at
    /// the cost of computing the padding rows. Unset: on where the model's passes are recorded as CUDA graphs (padding is
    /// what makes a graph reusable), off elsewhere.
    /// </summary>
    public bool? PadToBucket { get; set; }

    /// <summary>Executor threads serving this model version, each running one batch at a time.</summary>
    [Range(1, 256)]
    public int ExecutorThreads { get; set; } = 2;

    /// <summary>
    /// Intra-op threads per executor thread, for libtorch and for each run of the version's ONNX Runtime sessions (1
    /// avoids OpenMP spin-waits under contention; more shortens a lone caller's wait on a large model).
    /// </summary>
    [Range(1, 256)]
    public int IntraOpThreads { get; set; } = 1;

    /// <summary>On shutdown, how long queued requests may take to finish before they are failed.</summary>
    [Range(0, 3600)]
    public int DrainSeconds { get; set; } = 10;

    public TimeSpan DrainTimeout => TimeSpan.FromSeconds(DrainSeconds);

    public TimeSpan MaxQueueDelay => TimeSpan.FromTicks(MaxQueueDelayMicroseconds * 10L);

    /// <summary>The bucket sizes in ascending order, always ending at MaxBatchSize.</summary>
    public int[] EffectiveBuckets()
    {
        var buckets = Buckets.Length > 0
            ? Buckets.Where(b => b >= 1 && b < MaxBatchSize)
            : Enumerable.Range(0, 31).Select(i => 1 << i).TakeWhile(b => b < MaxBatchSize);
        return buckets.Append(MaxBatchSize).Distinct().Order().ToArray();
    }

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        if (Buckets.Any(b => b < 1 || b > MaxBatchSize))
            yield return new ValidationResult($"Batching:Buckets must lie in 1..MaxBatchSize ({MaxBatchSize})", [nameof(Buckets)]);
    }
}
