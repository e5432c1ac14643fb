using System.Collections.Concurrent;
using System.Diagnostics;
using Grpc.Core;
using HdrHistogram;

namespace JacService.Jac.Load;

/// <summary>
/// Runs one load test. Open loop: a dedicated thread sends at the scheduled instants and latency runs from the
/// instant a call was due, not from when it left, so a stalled server cannot hide its stall by slowing the sender
/// (coordinated omission). Closed loop: N workers, each sending when its previous answer arrives.
/// </summary>
public sealed class LoadRunner
{
    private const long MaxMicros = 3_600_000_000; // one hour: longer calls are recorded as one hour
    private static readonly long LateTicks = Stopwatch.Frequency / 1000;

    private readonly LoadPlan _plan;
    private readonly Recorder _latency = NewRecorder();
    private readonly Recorder _lag = NewRecorder();
    private readonly long[] _codes = new long[32];
    private readonly ConcurrentDictionary<string, long> _messages = new();
    private long _sent, _ok, _errors, _late;

    public LoadRunner(LoadPlan plan) => _plan = plan;

    private static Recorder NewRecorder() => HistogramFactory.With64BitBucketSize().WithValuesFrom(1).WithValuesUpTo(MaxMicros)
        .WithPrecisionOf(3).WithThreadSafeWrites().WithThreadSafeReads().Create();

    public async Task<LoadReport> RunAsync(Action<LiveStatus>? onTick, CancellationToken cancellation)
    {
        var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
        long start = Stopwatch.GetTimestamp();
        Task load = _plan.OpenLoop ? OpenLoop(start, cancellation) : ClosedLoop(start, cancellation);

        var total = NewRecorder().GetIntervalHistogram();
        var timeline = new List<TimelinePoint>();
        double interval = Math.Clamp((_plan.Duration?.TotalSeconds ?? 10) / 60, 0.1, 1.0);
        long lastOk = 0, lastErrors = 0;
        double lastT = 0, pointStart = 0;
        HistogramBase? lastInterval = null;
        void Sample(bool final)
        {
            var h = _latency.GetIntervalHistogram();
            total.Add(h);
            double t = Stopwatch.GetElapsedTime(start).TotalSeconds;
            long ok = Interlocked.Read(ref _ok), errors = Interlocked.Read(ref _errors);
            if (final && lastInterval is not null && t - lastT < interval / 2)
            {
                // A sliver of time after the last full interval would plot as a spike or a dip: fold it into that point.
                lastInterval.Add(h);
                var p = timeline[^1];
                timeline[^1] = Point(pointStart, t, p.Ok + ok - lastOk, p.Errors + errors - lastErrors, lastInterval);
            }
            else if (t > lastT)
            {
                timeline.Add(Point(lastT, t, ok - lastOk, errors - lastErrors, h));
                (pointStart, lastInterval) = (lastT, h);
            }
            (lastOk, lastErrors, lastT) = (ok, errors, t);
            onTick?.Invoke(new LiveStatus(t, Fraction(t), Interlocked.Read(ref _sent), ok, errors, (ok + errors) / t));
        }
        while (await Task.WhenAny(load, Task.Delay(TimeSpan.FromSeconds(interval), CancellationToken.None)) != load)
            Sample(final: false);
        await load;
        double elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
        Sample(final: true);
        double cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalSeconds;

        long count = Interlocked.Read(ref _sent);
        var lag = _lag.GetIntervalHistogram();
        return new LoadReport
        {
            Method = _plan.Method,
            Model = _plan.Model,
            Target = _plan.Target,
            Mode = _plan.OpenLoop ? "open" : "closed",
            Ramp = _plan.Ramp.Kind,
            RpsTarget = _plan.OpenLoop ? _plan.Ramp.To : null,
            Concurrency = _plan.Concurrency,
            Connections = _plan.Connections,
            Batch = _plan.Rows,
            TimeoutS = _plan.Timeout.TotalSeconds,
            ElapsedS = elapsed,
            Count = count,
            Ok = _ok,
            Errors = _errors,
            Rps = count / elapsed,
            RowsPerS = _ok * (double)_plan.Rows / elapsed,
            LatencyMs = LoadReport.Milliseconds(total),
            Histogram = LoadReport.Bins(total),
            Percentiles = LoadReport.Curve(total),
            StatusCodes = Enumerable.Range(0, _codes.Length).Where(i => _codes[i] > 0).ToDictionary(i => ((StatusCode)i).ToString(), i => _codes[i]),
            ErrorMessages = _messages.OrderByDescending(p => p.Value).ToDictionary(p => p.Key, p => p.Value),
            LateSends = _late,
            SendLagMs = _plan.OpenLoop ? LoadReport.Milliseconds(lag).Where(p => p.Key is "p50" or "p99" or "max").ToDictionary() : null,
            ClientCpuS = cpu,
            ClientCpuUsPerCall = count > 0 ? cpu * 1e6 / count : 0,
            Timeline = timeline,
        };
    }

    private static TimelinePoint Point(double from, double to, long ok, long errors, HistogramBase h) =>
        new(Math.Round(to, 3), ok, errors, (ok + errors) / (to - from),
            h.TotalCount > 0 ? h.GetValueAtPercentile(50) / 1000.0 : 0, h.TotalCount > 0 ? h.GetValueAtPercentile(99) / 1000.0 : 0);

    private double Fraction(double t) =>
        _plan.Duration is { } d ? Math.Min(1, t / d.TotalSeconds)
        : _plan.Requests is { } n ? Math.Min(1, Interlocked.Read(ref _sent) / (double)n) : 0;

    private Task OpenLoop(long start, CancellationToken cancellation)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var slots = new SemaphoreSlim(_plan.Concurrency);
        var thread = new Thread(() =>
        {
            try
            {
                for (long k = 0; _plan.Requests is not { } n || k < n; k++)
                {
                    // The ramp's schedule ends the run, and so does the plan's duration, whichever comes first.
                    if (_plan.Ramp.SendTime(k) is not { } due || due >= (_plan.Duration?.TotalSeconds ?? double.PositiveInfinity)) break;
                    long intended = start + (long)(due * Stopwatch.Frequency);
                    // Sleep in slices no longer than 100 ms so Ctrl+C is noticed even at low rates.
                    while (!cancellation.IsCancellationRequested && Stopwatch.GetTimestamp() < intended)
                        PreciseClock.SleepUntil(Math.Min(intended, Stopwatch.GetTimestamp() + Stopwatch.Frequency / 10));
                    if (cancellation.IsCancellationRequested) break;
                    slots.Wait(cancellation);
                    long lag = Stopwatch.GetTimestamp() - intended;
                    _lag.RecordValue(Math.Clamp(lag * 1_000_000 / Stopwatch.Frequency, 0, MaxMicros));
                    if (lag > LateTicks) Interlocked.Increment(ref _late);
                    var send = _plan.Senders[k % _plan.Senders.Length];
                    // Started here, not handed to the thread pool: the call's synchronous start is a few microseconds,
                    // and a hand-off per call measured as more CPU (a thread wake each) for no better timing.
                    _ = SendAndRelease(send, intended, slots, cancellation);
                }
            }
            catch (OperationCanceledException)
            {
                // Ctrl+C while waiting for a free slot: stop sending; what is in flight still finishes (cancelled).
            }
            catch (Exception e)
            {
                done.SetException(e);
                return;
            }
            for (int i = 0; i < _plan.Concurrency; i++) slots.Wait(CancellationToken.None);
            done.SetResult();
        })
        { IsBackground = true, Name = "jac open-loop sender" };
        thread.Start();
        return done.Task;
    }

    private async Task SendAndRelease(Func<CallOptions, Task> send, long intended, SemaphoreSlim slots, CancellationToken cancellation)
    {
        try { await Execute(send, intended, cancellation); }
        finally { slots.Release(); }
    }

    private Task ClosedLoop(long start, CancellationToken cancellation)
    {
        long end = _plan.Duration is { } d ? start + (long)(d.TotalSeconds * Stopwatch.Frequency) : long.MaxValue;
        long claimed = 0;
        return Task.WhenAll(Enumerable.Range(0, _plan.Concurrency).Select(worker => Task.Run(async () =>
        {
            var send = _plan.Senders[worker % _plan.Senders.Length];
            while (!cancellation.IsCancellationRequested)
            {
                long now = Stopwatch.GetTimestamp();
                if (now >= end) break;
                if (worker >= ActiveWorkers((now - start) / (double)Stopwatch.Frequency))
                {
                    await Task.Delay(5, CancellationToken.None); // not yet this worker's turn in the ramp
                    continue;
                }
                if (_plan.Requests is { } n && Interlocked.Increment(ref claimed) > n) break;
                await Execute(send, now, cancellation);
            }
        }, CancellationToken.None)));
    }

    private int ActiveWorkers(double t) =>
        _plan.Ramp.Kind == "none" ? _plan.Concurrency : Math.Clamp((int)Math.Round(_plan.Ramp.LevelAt(t)), 1, _plan.Concurrency);

    private async Task Execute(Func<CallOptions, Task> send, long intended, CancellationToken cancellation)
    {
        Interlocked.Increment(ref _sent);
        StatusCode code = StatusCode.OK;
        string? error = null;
        try
        {
            // Without a deadline Grpc.Net.Client skips its per-call timer: --timeout 0 is for measuring the tool itself.
            DateTime? deadline = _plan.Timeout > TimeSpan.Zero ? DateTime.UtcNow + _plan.Timeout : null;
            await send(new CallOptions(deadline: deadline, cancellationToken: cancellation));
        }
        catch (RpcException e)
        {
            (code, error) = (e.StatusCode, e.Status.Detail);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            (code, error) = (StatusCode.Unknown, $"client: {e.GetType().Name}: {e.Message}");
        }
        long micros = (Stopwatch.GetTimestamp() - intended) * 1_000_000 / Stopwatch.Frequency;
        _latency.RecordValue(Math.Clamp(micros, 1, MaxMicros));
        Interlocked.Increment(ref _codes[(int)code]);
        if (code == StatusCode.OK)
        {
            Interlocked.Increment(ref _ok);
            return;
        }
        Interlocked.Increment(ref _errors);
        // Details can carry per-call text (correlation ids); a bounded table keeps a flood of them readable.
        string key = $"{code}: {error}";
        // ConcurrentDictionary.Count takes every lock: ask it only for a message not seen before.
        if (!_messages.ContainsKey(key) && _messages.Count >= 20) key = "(other messages)";
        _messages.AddOrUpdate(key, 1, (_, c) => c + 1);
    }
}
