using System.Diagnostics;

namespace JacService.Core.Planning;

/// <summary>
/// Cancels token sources at their deadlines from a thread of its own. <see cref="CancellationTokenSource.CancelAfter(TimeSpan)"/>
/// runs its callback on the thread pool, and a pool whose threads are all busy runs it late: a 0.35 s budget of AUTO's
/// timing had not fired when the 0.9 s run it was to stop ended (a test host's pool, five threads, two items waiting).
/// A server's pool can be as busy under load or while versions load and warm up.
/// </summary>
internal static class Deadlines
{
    private static readonly object Gate = new();
    private static readonly List<(CancellationTokenSource Source, long Due)> Pending = [];
    private static Thread? _thread;

    /// <summary>
    /// Cancels <paramref name="source"/> once <paramref name="after"/> has passed, unless the returned registration is
    /// disposed first. Dispose it before the source: it is then never cancelled after its disposal.
    /// </summary>
    public static Registration CancelAfter(CancellationTokenSource source, TimeSpan after)
    {
        // Capped, so that a budget of centuries is late rather than an overflow into the past.
        long due = Stopwatch.GetTimestamp() + (long)Math.Min(after.TotalSeconds * Stopwatch.Frequency, long.MaxValue / 4);
        lock (Gate)
        {
            Pending.Add((source, due));
            if (_thread is null)
            {
                _thread = new Thread(Run) { IsBackground = true, Name = "JacService deadlines" };
                _thread.Start();
            }
            Monitor.Pulse(Gate);
        }
        return new Registration(source);
    }

    public readonly struct Registration(CancellationTokenSource source) : IDisposable
    {
        private readonly CancellationTokenSource _source = source;

        public void Dispose()
        {
            var source = _source;
            lock (Gate) Pending.RemoveAll(p => p.Source == source);
        }
    }

    private static void Run()
    {
        lock (Gate)
            while (true)
            {
                // One at a time and found afresh: a source's callbacks may dispose other registrations meanwhile.
                int due;
                while ((due = Pending.FindIndex(p => p.Due <= Stopwatch.GetTimestamp())) >= 0)
                {
                    var source = Pending[due].Source;
                    Pending.RemoveAt(due);
                    // Under the lock, so that a registration disposed meanwhile is not cancelled: its source may be gone.
                    try
                    {
                        source.Cancel();
                    }
                    catch (Exception e) when (e is AggregateException or ObjectDisposedException)
                    {
                        // A callback's failure is its own, and a source disposed before its registration was given up
                        // too early: either way the deadlines of others still come, and this thread must not end.
                    }
                }
                if (Pending.Count == 0)
                {
                    Monitor.Wait(Gate);
                    continue;
                }
                double seconds = (Pending.Min(p => p.Due) - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency;
                // At most a day at a time: a wait takes no more than 24.8 days.
                Monitor.Wait(Gate, TimeSpan.FromSeconds(Math.Clamp(seconds, 0, 86_400)) + TimeSpan.FromMilliseconds(0.5));
            }
    }
}
