using System.Collections.Concurrent;
using JacService.Server.Grpc;
using TorchSharp;

namespace JacService.Server.Execution;

/// <summary>
/// Dedicated threads that own all tensor work. TorchSharp's dispose scopes, grad and inference modes are per
/// thread, so each piece of work runs synchronously on one of these threads, inside one dispose scope, and
/// hands back managed results; nothing here awaits.
/// </summary>
public sealed class TorchExecutor : IDisposable
{
    private readonly BlockingCollection<WorkItem> _queue;
    private readonly Thread[] _threads;

    public TorchExecutor(int threads, int intraOpThreads, int capacity)
    {
        _queue = new BlockingCollection<WorkItem>(capacity);
        _threads = Enumerable.Range(0, threads).Select(i => new Thread(() => Loop(intraOpThreads))
        {
            IsBackground = true,
            Name = $"torch-executor-{i}",
        }).ToArray();
        foreach (var t in _threads) t.Start();
    }

    /// <summary>Queues work; it is skipped if the caller has gone before a thread picks it up.</summary>
    public Task<T> RunAsync<T>(Func<T> work, CancellationToken cancellation)
    {
        var item = new WorkItem<T>(work, cancellation);
        if (!_queue.TryAdd(item))
            throw new ExecutorBusyException($"the server is at capacity ({_queue.BoundedCapacity} requests queued); retry later");
        return item.Task;
    }

    private void Loop(int intraOpThreads)
    {
        torch.set_num_threads(intraOpThreads);
        using var noGrad = torch.inference_mode();
        foreach (var item in _queue.GetConsumingEnumerable())
        {
            using var scope = torch.NewDisposeScope();
            item.Run();
        }
    }

    public void Dispose()
    {
        _queue.CompleteAdding();
        foreach (var t in _threads) t.Join(TimeSpan.FromSeconds(10));
        _queue.Dispose();
    }

    private abstract class WorkItem
    {
        public abstract void Run();
    }

    private sealed class WorkItem<T>(Func<T> work, CancellationToken cancellation) : WorkItem
    {
        private readonly TaskCompletionSource<T> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task<T> Task => _completion.Task;

        public override void Run()
        {
            if (cancellation.IsCancellationRequested)
            {
                _completion.TrySetCanceled(cancellation);
                return;
            }
            try
            {
                _completion.TrySetResult(work());
            }
            catch (Exception e)
            {
                _completion.TrySetException(e);
            }
        }
    }
}
