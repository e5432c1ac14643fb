using System.Runtime.InteropServices;

namespace JacService.Server.Batching;

/// <summary>
/// What an idle executor thread sleeps on: woken by <see cref="Set"/> or by a timeout precise to tens of microseconds.
/// .NET's own waits and timers count in whole milliseconds (a 300 µs wait either returns at once or takes 1 ms), which
/// would stretch a sub-millisecond batching delay to the timer's tick. On Linux this is an eventfd waited on with
/// ppoll, whose timeout is in nanoseconds (the kernel adds its 50 µs timer slack); elsewhere it falls back to a
/// millisecond wait rounded up, so a wait is never shorter than asked.
/// </summary>
public sealed class WakeSignal : IDisposable
{
    private const int EfdCloexec = 0x80000, EfdNonblock = 0x800;
    private const short PollIn = 0x1;
    private const int Eintr = 4;

    private readonly int _fd = -1;
    private readonly ManualResetEventSlim? _fallback;

    public WakeSignal()
    {
        if (OperatingSystem.IsLinux()) _fd = eventfd(0, EfdCloexec | EfdNonblock);
        if (_fd < 0) _fallback = new ManualResetEventSlim();
    }

    /// <summary>Wakes the waiter, or the next wait if none is waiting now (a wake is never lost).</summary>
    public void Set()
    {
        if (_fallback is not null)
        {
            _fallback.Set();
            return;
        }
        ulong one = 1;
        _ = write(_fd, ref one, sizeof(ulong));
    }

    /// <summary>Sleeps until <see cref="Set"/> or until <paramref name="timeout"/> has passed (null: no timeout).</summary>
    public void Wait(TimeSpan? timeout)
    {
        if (_fallback is not null)
        {
            _fallback.Wait(timeout is { } t ? (int)Math.Ceiling(t.TotalMilliseconds) : Timeout.Infinite);
            _fallback.Reset();
            return;
        }
        var poll = new PollFd { Fd = _fd, Events = PollIn };
        int ready;
        if (timeout is { } wait)
        {
            long ns = Math.Max(0, wait.Ticks) * 100;
            var spec = new TimeSpec { Seconds = ns / 1_000_000_000, Nanoseconds = ns % 1_000_000_000 };
            ready = ppoll(ref poll, 1, ref spec, IntPtr.Zero);
        }
        else
        {
            ready = ppoll(ref poll, 1, IntPtr.Zero, IntPtr.Zero);
        }
        if (ready < 0 && Marshal.GetLastPInvokeError() != Eintr)
            throw new InvalidOperationException($"ppoll on an executor thread's eventfd failed with errno {Marshal.GetLastPInvokeError()}");
        // Reading resets the counter, so wakes that came while awake are folded into this one.
        if (ready > 0) _ = read(_fd, out _, sizeof(ulong));
    }

    public void Dispose()
    {
        if (_fd >= 0) _ = close(_fd);
        _fallback?.Dispose();
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int eventfd(uint initval, int flags);

    [DllImport("libc", SetLastError = true)]
    private static extern nint write(int fd, ref ulong value, nint count);

    [DllImport("libc", SetLastError = true)]
    private static extern nint read(int fd, out ulong value, nint count);

    [DllImport("libc", SetLastError = true)]
    private static extern int ppoll(ref PollFd fds, nuint count, ref TimeSpec timeout, IntPtr sigmask);

    [DllImport("libc", SetLastError = true)]
    private static extern int ppoll(ref PollFd fds, nuint count, IntPtr timeout, IntPtr sigmask);

    [DllImport("libc", SetLastError = true)]
    private static extern int close(int fd);
}
