namespace JacService.Jac.Load;

/// <summary>The server's own micro-batching counters over the run (GetModel after minus before).</summary>
public sealed record ServerBatching(long Batches, long Rows, long PaddedRows, double MeanBatch, int MaxBatchSize);
