using JacService.Core.Planning;

namespace JacService.Core.Tests;

/// <summary>
/// The deadlines that stop AUTO's losing runs come from a thread of their own, not the thread pool, whose callbacks ran
/// late when its threads were busy (a 0.35 s budget not fired after 0.9 s in this test host).
/// </summary>
public class DeadlinesTests
{
    [Fact]
    public void ASourceIsCancelledAtItsDeadlineOffThePool()
    {
        using var source = new CancellationTokenSource();
        bool? onPool = null;
        source.Token.Register(() => onPool = Thread.CurrentThread.IsThreadPoolThread);

        using (Deadlines.CancelAfter(source, TimeSpan.FromMilliseconds(20)))
            Assert.True(source.Token.WaitHandle.WaitOne(TimeSpan.FromSeconds(30)), "not cancelled");

        Assert.False(onPool);
    }

    [Fact]
    public void ARegistrationDisposedBeforeItsDeadlineNeverCancels()
    {
        using var early = new CancellationTokenSource();
        using var later = new CancellationTokenSource();
        Deadlines.CancelAfter(early, TimeSpan.FromMilliseconds(50)).Dispose();

        // A later deadline that fires shows the earlier one's time has passed.
        using (Deadlines.CancelAfter(later, TimeSpan.FromMilliseconds(100)))
            Assert.True(later.Token.WaitHandle.WaitOne(TimeSpan.FromSeconds(30)), "the later deadline did not fire");

        Assert.False(early.IsCancellationRequested);
    }
}
