using JacService.Core.Models;
using JacService.Server.Batching;

namespace JacService.Server.Models;

/// <summary>
/// Who still uses one loaded snapshot of a version (its parameters and its batcher): the registry, while the snapshot
/// is listed, and every call that resolved it, until that call has answered. Retiring drops the registry's reference;
/// the last reference frees the batcher and the tensors, so a call that resolved the snapshot before a take-over
/// finishes on it, and nothing new can reach it once its count has hit zero.
/// </summary>
public sealed class VersionLifetime(ModelReplicas replicas, ModelBatcher batcher)
{
    /// <summary>A version with one replica (one device).</summary>
    public VersionLifetime(ModelVersion model, ModelBatcher batcher) : this(ModelReplicas.Of([model]), batcher)
    {
    }

    private int _references = 1;
    private int _retired;
    private readonly TaskCompletionSource _freed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The version's face (its first replica): signatures, request validation, GetModel.</summary>
    public ModelVersion Model => replicas.Primary;

    public IReadOnlyList<ModelVersion> Replicas => replicas.All;

    public ModelBatcher Batcher => batcher;

    /// <summary>Completes once the snapshot's batcher has stopped and its tensors are freed.</summary>
    public Task Freed => _freed.Task;

    /// <summary>Calls holding the snapshot now.</summary>
    public int Calls => Math.Max(Volatile.Read(ref _references) - (Volatile.Read(ref _retired) == 0 ? 1 : 0), 0);

    /// <summary>Takes a reference for a call; false once the snapshot is retired and its last call has ended.</summary>
    public bool TryAcquire()
    {
        int seen = Volatile.Read(ref _references);
        while (seen > 0)
        {
            int before = Interlocked.CompareExchange(ref _references, seen + 1, seen);
            if (before == seen) return true;
            seen = before;
        }
        return false;
    }

    public void Release()
    {
        if (Interlocked.Decrement(ref _references) == 0) _ = Task.Run(FreeAsync);
    }

    /// <summary>Drops the registry's reference (once); the snapshot is freed when its last call ends.</summary>
    public void Retire()
    {
        if (Interlocked.Exchange(ref _retired, 1) == 0) Release();
    }

    /// <summary>Frees the snapshot now, whoever still holds it: at shutdown, after the calls had their grace period.</summary>
    public Task ForceFreeAsync()
    {
        Interlocked.Exchange(ref _retired, 1);
        Interlocked.Exchange(ref _references, 0);
        return FreeAsync();
    }

    private int _freeing;

    private async Task FreeAsync()
    {
        if (Interlocked.Exchange(ref _freeing, 1) == 1)
        {
            await _freed.Task;
            return;
        }
        try
        {
            await batcher.DisposeAsync();
            replicas.Dispose();
            // A freed version leaves megabytes of managed garbage (its parsed model, plans, warm-up results) in gen2. Where
            // large arrays start in gen0 (a deployment that raises DOTNET_GCLOHThreshold) no large-object allocation
            // triggers the next gen2 collection soon: a repository cycling versions then held ~1.5 MiB more per version
            // until one came (RetirementMemoryTests). A background collection, so calls keep running meanwhile.
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: false);
            // The native heap keeps freed blocks for reuse (Engine:ReuseLargeAllocations); without this, removing models
            // never lowered the resident size (RetirementMemoryTests). ONNX Runtime's shared arena first hands back its
            // empty regions, which hold what this version's largest runs needed.
            OnnxRuntimeArena.Shrink();
            NativeHeap.ReturnFreePages();
        }
        finally
        {
            _freed.TrySetResult();
        }
    }
}
