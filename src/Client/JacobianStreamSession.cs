using Grpc.Core;
using JacService.Protos.V1;

namespace JacService.Client;

/// <summary>
/// One JacobianStream call: one sample's Jacobian per <see cref="JacobianAsync"/>, each sent as a message on the same
/// HTTP/2 stream instead of a call of its own. Safe to use from many tasks at once; requests are pipelined (the server
/// computes up to its Limits:MaxStreamRequestsInFlight of them at a time) and each task gets its own answer. A request
/// the server refuses fails its own task with the <see cref="RpcException"/> a unary Jacobian would have thrown; the
/// session goes on. When the call itself ends (its deadline, cancellation, the server going away, a message it could
/// not parse) every pending and later request fails with that status. The stream is not retried: open a new session.
/// Dispose ends the call after the pending answers have arrived.
/// </summary>
public sealed class JacobianStreamSession : IAsyncDisposable
{
    private readonly AsyncDuplexStreamingCall<JacobianRequest, JacobianStreamResponse> _call;
    private readonly JacobianRequest _template;
    private readonly SemaphoreSlim _sending = new(1, 1);
    private readonly Queue<TaskCompletionSource<JacobianResult>> _pending = new();
    private readonly Task _receiving;
    private RpcException? _ended;

    internal JacobianStreamSession(AsyncDuplexStreamingCall<JacobianRequest, JacobianStreamResponse> call, JacobianRequest template)
    {
        _call = call;
        _template = template;
        _receiving = Receive();
    }

    /// <summary>Outputs and Jacobians of ONE sample (inputs without the batch axis), as <see cref="JacServiceClient.JacobianAsync"/> gives them.</summary>
    public async Task<JacobianResult> JacobianAsync(IReadOnlyDictionary<string, FloatTensor> inputs)
    {
        var request = _template.Clone();
        foreach (var (name, t) in inputs) request.Inputs[name] = t.ToProto();
        var answer = new TaskCompletionSource<JacobianResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        await _sending.WaitAsync();
        try
        {
            // Answers come in the order requests were written, so enqueueing and writing happen under one lock.
            lock (_pending)
            {
                if (_ended is not null) throw _ended;
                _pending.Enqueue(answer);
            }
            try
            {
                await _call.RequestStream.WriteAsync(request);
            }
            catch (Exception e)
            {
                // The call has ended; the receiver may already know its status, which Fail keeps.
                Fail(e as RpcException ?? new RpcException(new Status(StatusCode.Unavailable, "the stream could not be written: " + e.Message)));
            }
        }
        finally
        {
            _sending.Release();
        }
        return await answer.Task;
    }

    private async Task Receive()
    {
        try
        {
            await foreach (var response in _call.ResponseStream.ReadAllAsync())
            {
                TaskCompletionSource<JacobianResult> answer;
                lock (_pending)
                {
                    if (!_pending.TryDequeue(out answer!))
                        throw new InvalidDataException($"the server answered request {response.Sequence}, which was not sent");
                }
                if (response.Code == 0)
                {
                    var r = response.Result;
                    answer.SetResult(new JacobianResult(r.Model, r.Version, JacServiceClient.FromProto(r.Outputs), JacServiceClient.FromProto(r.Jacobians)) { Mode = r.Mode });
                }
                else
                {
                    answer.SetException(new RpcException(new Status((StatusCode)response.Code, response.Message)));
                }
            }
            Fail(new RpcException(new Status(StatusCode.Unavailable, "the server ended the stream")));
        }
        catch (RpcException e)
        {
            Fail(e);
        }
        catch (Exception e)
        {
            Fail(new RpcException(new Status(StatusCode.Internal, e.Message)));
        }
    }

    private void Fail(RpcException e)
    {
        lock (_pending)
        {
            _ended ??= e;
            while (_pending.TryDequeue(out var answer)) answer.TrySetException(_ended);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _sending.WaitAsync();
        try
        {
            if (_ended is null) await _call.RequestStream.CompleteAsync();
        }
        catch (RpcException)
        {
            // Already ended: the pending requests have their status.
        }
        finally
        {
            _sending.Release();
        }
        await _receiving;
        _call.Dispose();
        _sending.Dispose();
    }
}
