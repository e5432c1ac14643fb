using JacService.Core.Models;

namespace JacService.Server.Batching;

/// <summary>
/// The buffers of one executor thread, by shape. Bounded: a model with dynamic axes can produce any number of
/// shapes, and past the bound the least recently used shape gives its buffers up.
/// </summary>
public sealed class BatchBufferCache(int capacity = 32)
{
    private readonly Dictionary<(WorkKey Key, int Padded), (BatchBuffers Buffers, long LastUse)> _entries = [];
    private long _uses;

    public BatchBuffers For(WorkKey key, int padded, HostTensor[] sampleInputs)
    {
        _uses++;
        if (_entries.TryGetValue((key, padded), out var entry))
        {
            _entries[(key, padded)] = (entry.Buffers, _uses);
            return entry.Buffers;
        }
        if (_entries.Count >= capacity) _entries.Remove(_entries.MinBy(e => e.Value.LastUse).Key);
        var buffers = new BatchBuffers(sampleInputs, padded);
        _entries[(key, padded)] = (buffers, _uses);
        return buffers;
    }
}
