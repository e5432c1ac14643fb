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
    public void ARegistrationDisposedBeforeItsDeadlineNeverCancelsNorDoesOneOfCenturies()
    {
        using var early = new CancellationTokenSource();
        using var later = new CancellationTokenSource();
        Deadlines.CancelAfter(early, TimeSpan.FromMilliseconds(50)).Dispose();

        using var never = new CancellationTokenSource();
        using var far = Deadlines.CancelAfter(never, TimeSpan.MaxValue);
        // A later deadline that fires shows the earlier one's time has passed.
        using (Deadlines.CancelAfter(later, TimeSpan.FromMilliseconds(100)))
            Assert.True(later.Token.WaitHandle.WaitOne(TimeSpan.FromSeconds(30)), "the later deadline did not fire");

        Assert.False(early.IsCancellationRequested);
        Assert.False(never.IsCancellationRequested);
    }

    /// <summary>A source's callback that gives up another's deadline (its run ended) is obeyed, and the thread goes on.</summary>
    [Fact]
    public void ACallbackThatDisposesAnotherRegistrationIsObeyed()
    {
        using var first = new CancellationTokenSource();
        using var second = new CancellationTokenSource();
        using var third = new CancellationTokenSource();
        var secondDeadline = Deadlines.CancelAfter(second, TimeSpan.FromMilliseconds(25));
        first.Token.Register(secondDeadline.Dispose);

        using (Deadlines.CancelAfter(first, TimeSpan.FromMilliseconds(20)))
        using (Deadlines.CancelAfter(third, TimeSpan.FromMilliseconds(100)))
            Assert.True(third.Token.WaitHandle.WaitOne(TimeSpan.FromSeconds(30)), "the thread stopped");

        Assert.True(first.IsCancellationRequested);
        Assert.False(second.IsCancellationRequested);
    }
}
