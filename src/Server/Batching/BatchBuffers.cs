using JacService.Core.Models;

namespace JacService.Server.Batching;

/// <summary>
/// Host arrays for one static batch shape (one work key at one padded size) on one executor thread: the stacked
/// inputs and the results, created on the first batch of that shape and reused by every later one, so a steady
/// stream of batches allocates no batch-sized memory. Callers' rows are copied out before the next batch runs.
/// </summary>
public sealed class BatchBuffers
{
    public BatchBuffers(HostTensor[] sampleInputs, int padded)
    {
        Padded = padded;
        Inputs = sampleInputs.Select(t => new float[padded * (t.Count / t.Shape[0])]).ToArray();
    }

    public int Padded { get; }

    /// <summary>One array per model input, [Padded, ..sample shape] row-major.</summary>
    public float[][] Inputs { get; }

    /// <summary>The results' arrays, sized by the engine on first use.</summary>
    public ResultBuffers Results { get; } = new();
}
