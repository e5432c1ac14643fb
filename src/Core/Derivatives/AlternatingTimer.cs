using System.Diagnostics;
using JacService.Core.Planning;
using static TorchSharp.torch;

namespace JacService.Core.Derivatives;

/// <summary>
/// Times two ways to the same result against each other on the thread that will run the winner: each untimed first (so
/// neither pays for what its first runs touch), then both in turn, repeated while the rounds are quick; each one's least
/// time counts. A first round of over a second is the measurement itself.
/// </summary>
internal static class AlternatingTimer
{
    /// <summary>
    /// Rounds at most, while the rounds so far took less than <see cref="RepeatFor"/>. One timed run each picked the
    /// slower mode for relu_classifier at batch 256 in one served run of two (its forward and reverse passes differ by a
    /// fifth), where a moment's preemption is enough.
    /// </summary>
    private const int MaxRounds = 5;

    /// <summary>
    /// Untimed runs of each first. One was not enough for a compiled graph's large buffers: ONNX Runtime's second run of
    /// upsampler's forward-mode Jacobian of 256 rows took 142-185 ms against 26-31 ms from the third on, and AUTO chose
    /// reverse mode (45-77 ms) on it.
    /// </summary>
    private const int WarmRuns = 2;

    /// <summary>Runs this slow are timed once each: repeating them would only add to the first request's wait.</summary>
    public static readonly TimeSpan RepeatFor = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// A warm-up round this slow is the measurement: what later runs would save (an arena grown, pages touched) is small
    /// beside runs of seconds, and the first request waits for every run. ConvNeXt-Tiny's first Vjp of eight images took
    /// 14-23 s with a timed round after the warm one, against 2 s from then on.
    /// </summary>
    public static readonly TimeSpan FirstRoundSuffices = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Timed runs of the second are stopped at their budget only where it is at least this long: below it, what stopping
    /// costs (a token, a timer, ONNX Runtime's run options) would weigh on close calls, and the run it saves is short.
    /// </summary>
    private const double StopFromUs = 1_000;

    /// <summary>
    /// A first timed round this many times slower than the last untimed one was disturbed (a collection of the managed heap,
    /// the thread preempted), and is followed by another even where it took past <see cref="RepeatFor"/>: one such round
    /// decided alone, and its choice is kept for the process's life. A 100 ms pause in a 1 ms run chose a 30 ms way over it.
    /// </summary>
    private const double DisturbedRound = 2;

    /// <summary>
    /// The least microseconds of a run of each. With <paramref name="secondWithin"/> (the most microseconds the second may
    /// take, given the first's, for the answer to change), a first run of the first that took over <see cref="RepeatFor"/>
    /// (runs too slow to repeat, for which what a first run costs beyond later ones is small) leaves the second that long
    /// and stops it there (between its steps, through <see cref="BatchCancellation"/>), its time then infinite: the
    /// interpreter, 2-5x slower than a large CNN's compiled Vjp, ran for seconds on each new batch size only to lose.
    /// Each timed run of the second is stopped the same way once it has run as long as the first's least allows: it could
    /// no longer change the answer, since the first's least only falls. <paramref name="ranOnce"/>: each has already run
    /// once untimed (AUTO's check runs of compiled graphs), which counts as the first of the untimed runs.
    /// </summary>
    public static (double First, double Second) Least(Action first, Action second, bool gpu, Func<double, double>? secondWithin = null, bool ranOnce = false)
    {
        double lastWarmUs = 0;
        for (int warm = ranOnce ? 1 : 0; warm < WarmRuns; warm++)
        {
            double firstUs = Time(first, gpu);
            bool firstRound = warm == (ranOnce ? 1 : 0);
            double secondUs = firstRound && secondWithin is not null && firstUs > RepeatFor.TotalMicroseconds
                ? TimeWithin(second, gpu, secondWithin(firstUs))
                : Time(second, gpu);
            lastWarmUs = firstUs + secondUs;
            if (firstRound && lastWarmUs > FirstRoundSuffices.TotalMicroseconds) return (firstUs, secondUs);
        }
        double a = double.PositiveInfinity, b = double.PositiveInfinity;
        var rounds = Stopwatch.StartNew();
        for (int round = 0; round < MaxRounds && (round == 0 || rounds.Elapsed < RepeatFor
                                                   || round == 1 && rounds.Elapsed.TotalMicroseconds > DisturbedRound * lastWarmUs); round++)
        {
            // In turn, so that a slow moment of the machine does not land on every run of one.
            a = Math.Min(a, Time(first, gpu));
            double budget = secondWithin?.Invoke(a) ?? double.PositiveInfinity;
            b = Math.Min(b, budget >= StopFromUs && budget < double.PositiveInfinity ? TimeWithin(second, gpu, budget) : Time(second, gpu));
        }
        return (a, b);
    }

    /// <summary>Microseconds of one run, or infinity where it ran past <paramref name="budgetUs"/> and was stopped.</summary>
    public static double TimeWithin(Action run, bool gpu, double budgetUs)
    {
        var batch = BatchCancellation.Current;
        using var budget = CancellationTokenSource.CreateLinkedTokenSource(batch);
        using var deadline = Deadlines.CancelAfter(budget, TimeSpan.FromMicroseconds(Math.Max(1, budgetUs)));
        try
        {
            using (BatchCancellation.Enter(budget.Token)) return Time(run, gpu);
        }
        // Stopped between passes' steps (OperationCanceledException) or inside an op's loop, which the evaluator reports as
        // the node's failure: either way the run was stopped, not the batch.
        catch (Exception) when (budget.IsCancellationRequested && !batch.IsCancellationRequested)
        {
            return double.PositiveInfinity;
        }
    }

    /// <summary>Microseconds of one run. On a GPU the run is waited for: its kernels run after the calls that launch them return.</summary>
    public static double Time(Action run, bool gpu)
    {
        using var scope = NewDisposeScope();
        long start = Stopwatch.GetTimestamp();
        run();
        if (gpu) cuda.synchronize();
        return Stopwatch.GetElapsedTime(start).TotalMicroseconds;
    }
}
