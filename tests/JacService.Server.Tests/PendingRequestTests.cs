using JacService.Core.Models;
using JacService.Server.Batching;

namespace JacService.Server.Tests;

/// <summary>A request's cancellation, from its caller and from the queue at once.</summary>
public class PendingRequestTests
{
    [Fact]
    public void TheQueueCancellingARequestDoesNotWaitForTheCallersCallback()
    {
        // The batcher's shape: the caller's cancellation callback ends by taking the batcher's lock (Wake), and an
        // executor holding that lock sweeps the queue and cancels the same request first. When Cancel waited for the
        // running callback, the two waited for each other for ever (a server in CI hung so).
        var gate = new object();
        using var caller = new CancellationTokenSource();
        var request = new PendingRequest([new HostTensor([1, 3], new float[3])], DateTimeOffset.UnixEpoch, null, caller.Token);
        using var callbackRunning = new ManualResetEventSlim();
        request.OnCancelled(() =>
        {
            callbackRunning.Set();
            lock (gate) request.Cancel();
        });

        var executor = new Thread(() =>
        {
            lock (gate)
            {
                new Thread(caller.Cancel) { IsBackground = true }.Start();
                callbackRunning.Wait();
                request.Cancel();
            }
        }) { IsBackground = true };
        executor.Start();

        // A deadlock never ends; a minute is only how long this test waits before it says so.
        Assert.True(executor.Join(TimeSpan.FromMinutes(1)), "the queue's Cancel waited for the caller's callback, which waited for the queue's lock");
        Assert.True(request.Task.IsCanceled);
    }
}
