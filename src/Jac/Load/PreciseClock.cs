using System.Diagnostics;
using System.Runtime.InteropServices;

namespace JacService.Jac.Load;

/// <summary>
/// Sleeps until a Stopwatch timestamp. Thread.Sleep and Task.Delay wake on a ~1 ms timer, which would add up to a
/// millisecond of the tool's own lateness to every open-loop send; on Linux, clock_nanosleep on the monotonic clock
/// (the clock behind Stopwatch there) wakes within tens of microseconds without spinning a core that the server
/// under test needs.
/// </summary>
internal static class PreciseClock
{
    private const int ClockMonotonic = 1;
    private const int TimerAbsTime = 1;

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [DllImport("libc", EntryPoint = "clock_nanosleep")]
    private static extern int ClockNanosleep(int clock, int flags, ref TimeSpec request, IntPtr remain);

    private static readonly bool Native = OperatingSystem.IsLinux() && Stopwatch.Frequency == 1_000_000_000;

    public static void SleepUntil(long timestamp)
    {
        long wait = timestamp - Stopwatch.GetTimestamp();
        if (wait <= 0) return;
        if (Native)
        {
            var at = new TimeSpec { Seconds = timestamp / 1_000_000_000, Nanoseconds = timestamp % 1_000_000_000 };
            // A signal ends the sleep early (EINTR); sleep again rather than send early.
            while (Stopwatch.GetTimestamp() < timestamp) ClockNanosleep(ClockMonotonic, TimerAbsTime, ref at, IntPtr.Zero);
            return;
        }
        // Thread.Sleep rounds below a millisecond to 0, a yield: that would spin a core between close sends.
        Thread.Sleep(TimeSpan.FromMilliseconds(Math.Max(1, wait * 1000.0 / Stopwatch.Frequency)));
    }
}
