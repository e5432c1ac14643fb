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
        long due = Stopwatch.GetTimestamp() + (long)(after.TotalSeconds * Stopwatch.Frequency);
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
                long now = Stopwatch.GetTimestamp(), next = long.MaxValue;
                for (int i = Pending.Count - 1; i >= 0; i--)
                {
                    if (Pending[i].Due > now)
                    {
                        next = Math.Min(next, Pending[i].Due);
                        continue;
                    }
                    // Under the lock, so that a registration disposed meanwhile is not cancelled: its source may be gone.
                    try
                    {
                        Pending[i].Source.Cancel();
                    }
                    catch (AggregateException)
                    {
                        // A callback's failure is its own; the deadlines of others still come.
                    }
                    Pending.RemoveAt(i);
                }
                if (next == long.MaxValue) Monitor.Wait(Gate);
                else Monitor.Wait(Gate, TimeSpan.FromSeconds((next - now) / (double)Stopwatch.Frequency) + TimeSpan.FromMilliseconds(0.5));
            }
    }
}
