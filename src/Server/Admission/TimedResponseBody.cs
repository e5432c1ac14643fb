using System.IO.Pipelines;
using Microsoft.AspNetCore.Http.Features;

namespace JacService.Server.Admission;

/// <summary>
/// The response body of one gRPC call, whose writes may wait for the client for a bounded time. HTTP/2 flow control
/// holds a write until the client reads, and Kestrel's MinResponseDataRate does not time a stream whose own window is
/// full, so a client that stops reading would hold its call, and the call's memory, until it goes away. A flush or write
/// that has not completed after the timeout resets the stream (<see cref="Stalled"/>), which completes the write.
/// Writes that complete at once (a response within Kestrel's buffer) cost no timer.
/// </summary>
public sealed class TimedResponseBody : IHttpResponseBodyFeature
{
    private readonly IHttpResponseBodyFeature _inner;
    private readonly TimeSpan _timeout;
    private readonly TimeProvider _clock;
    private readonly Action<TimedResponseBody> _stall;

    /// <param name="stall">Resets the call once a write has waited past <paramref name="timeout"/>; one delegate for every call.</param>
    public TimedResponseBody(HttpContext context, string method, IHttpResponseBodyFeature inner, TimeSpan timeout, TimeProvider clock,
        Action<TimedResponseBody> stall)
    {
        Context = context;
        Method = method;
        _inner = inner;
        _timeout = timeout;
        _clock = clock;
        _stall = stall;
        Writer = new TimedWriter(inner.Writer, this);
    }

    // Set on the timer's thread, read on the handler's once the reset has cancelled its call.
    private volatile bool _stalled;

    public HttpContext Context { get; }

    /// <summary>The RPC's name.</summary>
    public string Method { get; }

    /// <summary>True once a write has waited past the timeout and the stream was reset.</summary>
    public bool Stalled => _stalled;

    public TimeSpan Timeout => _timeout;

    public PipeWriter Writer { get; }

    // grpc-dotnet writes through Writer; the stream is Kestrel's own, untimed.
    public Stream Stream => _inner.Stream;

    public void DisableBuffering() => _inner.DisableBuffering();

    public Task StartAsync(CancellationToken cancellationToken = default) => _inner.StartAsync(cancellationToken);

    public Task SendFileAsync(string path, long offset, long? count, CancellationToken cancellationToken = default) =>
        _inner.SendFileAsync(path, offset, count, cancellationToken);

    /// <summary>Sends what is buffered and the trailers, which for a unary call is its whole answer: timed like a flush.</summary>
    public Task CompleteAsync()
    {
        var completing = _inner.CompleteAsync();
        return completing.IsCompleted ? completing : WaitAsync(completing);
    }

    private ValueTask<FlushResult> Timed(ValueTask<FlushResult> write) =>
        write.IsCompleted ? write : new ValueTask<FlushResult>(WaitAsync(write.AsTask()));

    private async Task<T> WaitAsync<T>(Task<T> pending)
    {
        await WaitAsync((Task)pending);
        return await pending;
    }

    private async Task WaitAsync(Task pending)
    {
        try
        {
            await pending.WaitAsync(_timeout, _clock);
            return;
        }
        catch (TimeoutException)
        {
        }
        _stalled = true;
        // The reset completes the pending write: Kestrel lets go of what the stream had not sent.
        _stall(this);
        await pending;
    }

    private sealed class TimedWriter(PipeWriter inner, TimedResponseBody body) : PipeWriter
    {
        public override void Advance(int bytes) => inner.Advance(bytes);

        public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

        public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);

        public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;

        public override long UnflushedBytes => inner.UnflushedBytes;

        public override void CancelPendingFlush() => inner.CancelPendingFlush();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) =>
            body.Timed(inner.FlushAsync(cancellationToken));

        public override ValueTask<FlushResult> WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default) =>
            body.Timed(inner.WriteAsync(source, cancellationToken));
    }
}
