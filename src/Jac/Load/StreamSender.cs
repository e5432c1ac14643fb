using System.Collections.Concurrent;
using Grpc.Core;
using JacService.Protos.V1;

namespace JacService.Jac.Load;

/// <summary>
/// jacobian-stream: each call of the load is one message on a JacobianStream, its answer awaited before the stream is
/// used again, so a closed loop of N workers keeps N streams with one sample in flight on each (an open loop opens as
/// many as it has calls in flight). A stream whose answer is late or lost is dropped and a new one opened.
/// </summary>
public sealed class StreamSender(JacobianService.JacobianServiceClient client, JacobianRequest request) : IAsyncDisposable
{
    private readonly ConcurrentBag<AsyncDuplexStreamingCall<JacobianRequest, JacobianStreamResponse>> _idle = [];

    public async Task Send(CallOptions call)
    {
        if (!_idle.TryTake(out var stream))
            stream = client.JacobianStream(cancellationToken: call.CancellationToken);
        bool reusable = false;
        try
        {
            // The call's deadline bounds this message's answer; the stream itself has none.
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(call.CancellationToken);
            if (call.Deadline is { } deadline) timeout.CancelAfter(deadline - DateTime.UtcNow);
            await stream.RequestStream.WriteAsync(request, timeout.Token);
            if (!await stream.ResponseStream.MoveNext(timeout.Token))
                throw new RpcException(new Status(StatusCode.Unavailable, "the server ended the stream"));
            var answer = stream.ResponseStream.Current;
            reusable = true;
            if (answer.Code != 0) throw new RpcException(new Status((StatusCode)answer.Code, answer.Message));
        }
        catch (OperationCanceledException) when (!call.CancellationToken.IsCancellationRequested)
        {
            throw new RpcException(new Status(StatusCode.DeadlineExceeded, "no answer on the stream before the deadline"));
        }
        finally
        {
            if (reusable) _idle.Add(stream);
            else stream.Dispose();
        }
    }

    /// <summary>Ends the idle streams as a client should: no more requests, then the server's end of the call.</summary>
    public async ValueTask DisposeAsync()
    {
        while (_idle.TryTake(out var stream))
        {
            using (stream)
            {
                try
                {
                    await stream.RequestStream.CompleteAsync();
                    while (await stream.ResponseStream.MoveNext(CancellationToken.None)) { }
                }
                catch (RpcException)
                {
                    // Already ended.
                }
            }
        }
    }
}
