using System.ComponentModel.DataAnnotations;
using System.Text.Json;

namespace JacService.Server.Batching;

/// <summary>
/// How requests to one model version are merged into batches (configuration section "Batching"; a model's
/// ROOT/&lt;model&gt;/config.json may override any of these under "batching").
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

    /// <summary>Rows waiting per model version; beyond this a request is refused with RESOURCE_EXHAUSTED at once.</summary>
    [Range(1, 10_000_000)]
    public int QueueCapacity { get; set; } = 8192;

    /// <summary>Batch sizes with their own static-shape plan; empty means powers of two up to MaxBatchSize.</summary>
    public int[] Buckets { get; set; } = [];

    /// <summary>Pad each batch up to its bucket (one plan per bucket; wasted rows on CPU, required for CUDA graphs).</summary>
    public bool PadToBucket { get; set; }

    /// <summary>Executor threads serving this model version, each running one batch at a time.</summary>
    [Range(1, 256)]
    public int ExecutorThreads { get; set; } = 2;

    /// <summary>libtorch intra-op threads per executor thread (1 avoids OpenMP spin-waits under contention).</summary>
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

    /// <summary>These defaults overridden by the "batching" object of a model's config.json, if any.</summary>
    public BatchingOptions WithModelConfig(string? configPath)
    {
        if (configPath is null || !File.Exists(configPath)) return this;
        try
        {
            return Merge(configPath);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{configPath}: {e.Message}", e);
        }
    }

    private BatchingOptions Merge(string configPath)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(configPath));
        if (!doc.RootElement.TryGetProperty("batching", out var b)) return this;
        var merged = this with { };
        foreach (var p in b.EnumerateObject())
        {
            switch (p.Name.ToLowerInvariant())
            {
                case "maxbatchsize": merged.MaxBatchSize = p.Value.GetInt32(); break;
                case "maxqueuedelaymicroseconds": merged.MaxQueueDelayMicroseconds = p.Value.GetInt32(); break;
                case "queuecapacity": merged.QueueCapacity = p.Value.GetInt32(); break;
                case "buckets": merged.Buckets = p.Value.EnumerateArray().Select(x => x.GetInt32()).ToArray(); break;
                case "padtobucket": merged.PadToBucket = p.Value.GetBoolean(); break;
                case "executorthreads": merged.ExecutorThreads = p.Value.GetInt32(); break;
                case "intraopthreads": merged.IntraOpThreads = p.Value.GetInt32(); break;
                default: throw new InvalidDataException($"{configPath}: unknown batching setting '{p.Name}'");
            }
        }
        var errors = new List<ValidationResult>();
        if (!Validator.TryValidateObject(merged, new ValidationContext(merged), errors, validateAllProperties: true))
            throw new InvalidDataException($"{configPath}: {string.Join("; ", errors.Select(e => e.ErrorMessage))}");
        return merged;
    }
}
