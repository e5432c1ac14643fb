using System.IO.Pipelines;
using JacService.Server.Admission;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Time.Testing;

namespace JacService.Server.Tests;

/// <summary>
/// A response write that waits for the client past the timeout resets the call, once; one that completes in time, or at
/// once, does not. The reset (here the stall callback) is what completes the stalled write, as Kestrel's does.
/// </summary>
public class TimedResponseBodyTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly FakeTimeProvider _clock = new();
    private readonly ClientWindow _inner = new();
    private int _stalls;

    private TimedResponseBody Body() => new(new DefaultHttpContext(), "Predict", _inner, Timeout, _clock, _ =>
    {
        _stalls++;
        _inner.Reset();
    });

    [Fact]
    public async Task AWriteTheClientTakesAtOnceIsNotTimed()
    {
        _inner.Open = true;
        var body = Body();

        var flushed = await body.Writer.FlushAsync();
        _clock.Advance(Timeout * 2);

        Assert.False(flushed.IsCompleted);
        Assert.False(body.Stalled);
        Assert.Equal(0, _stalls);
    }

    [Fact]
    public async Task AWriteTheClientTakesWithinTheTimeoutIsNotReset()
    {
        var body = Body();

        var flush = body.Writer.FlushAsync().AsTask();
        _clock.Advance(Timeout - TimeSpan.FromSeconds(1));
        Assert.False(flush.IsCompleted);
        _inner.Read();
        await flush;
        _clock.Advance(Timeout);

        Assert.False(body.Stalled);
        Assert.Equal(0, _stalls);
    }

    [Fact]
    public async Task AFlushThatWaitsPastTheTimeoutResetsTheCallOnce()
    {
        var body = Body();

        var flush = body.Writer.FlushAsync().AsTask();
        _clock.Advance(Timeout - TimeSpan.FromSeconds(1));
        Assert.False(body.Stalled);
        _clock.Advance(TimeSpan.FromSeconds(1));

        Assert.True((await flush.WaitAsync(TimeSpan.FromSeconds(10))).IsCompleted);
        Assert.True(body.Stalled);
        Assert.Equal(1, _stalls);
    }

    [Fact]
    public async Task AWriteAndACompletionAreTimedLikeAFlush()
    {
        var body = Body();
        var write = body.Writer.WriteAsync(new byte[10]).AsTask();
        _clock.Advance(Timeout);
        await write.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, _stalls);

        _inner.Unreset();
        var completion = body.CompleteAsync();
        _clock.Advance(Timeout);
        await completion.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(2, _stalls);
    }

    /// <summary>A stream's response body whose writes complete when the client reads, or when the stream is reset.</summary>
    private sealed class ClientWindow : PipeWriter, IHttpResponseBodyFeature
    {
        private TaskCompletionSource<FlushResult> _read = NewRead();

        public bool Open { get; set; }

        public void Read() => _read.TrySetResult(new FlushResult(isCanceled: false, isCompleted: false));

        public void Reset() => _read.TrySetResult(new FlushResult(isCanceled: false, isCompleted: true));

        public void Unreset() => _read = NewRead();

        private static TaskCompletionSource<FlushResult> NewRead() => new(TaskCreationOptions.RunContinuationsAsynchronously);

        private ValueTask<FlushResult> Waiting() =>
            Open ? ValueTask.FromResult(new FlushResult(false, false)) : new ValueTask<FlushResult>(_read.Task);

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => Waiting();

        public override ValueTask<FlushResult> WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default) => Waiting();

        public Task CompleteAsync() => Waiting().AsTask();

        public override void Advance(int bytes) { }

        public override Memory<byte> GetMemory(int sizeHint = 0) => new byte[Math.Max(sizeHint, 16)];

        public override Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;

        public override void CancelPendingFlush() { }

        public override void Complete(Exception? exception = null) { }

        public Stream Stream => Stream.Null;

        public PipeWriter Writer => this;

        public void DisableBuffering() { }

        public Task StartAsync(CancellationToken cancellationToken = default) => Task.CompletedTask;

        public Task SendFileAsync(string path, long offset, long? count, CancellationToken cancellationToken = default) => Task.CompletedTask;
    }
}
