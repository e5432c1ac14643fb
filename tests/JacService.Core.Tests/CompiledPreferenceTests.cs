using JacService.Core.Compiled;
using JacService.Core.Models;
using JacService.Core.Planning;

namespace JacService.Core.Tests;

/// <summary>
/// The choice between a compiled derivative graph and the interpreter per (graph, batch size): the faster of the two when
/// first timed, kept; each batch size timed on its own; none timed when calibration is off; a graph whose result
/// disagrees with the interpreter's on its first batch of one row or of more never serves, whichever is faster.
/// </summary>
public class CompiledPreferenceTests
{
    private readonly object _graph = new();
    private int _compiledRuns, _interpretedRuns;
    private readonly List<string> _disagreements = [];

    private Func<EngineResult> Compiled(int milliseconds, float value = 1) =>
        () => { _compiledRuns++; Thread.Sleep(milliseconds); return Result(value) with { Compiled = true }; };
    private Func<EngineResult> Interpreted(int milliseconds) => () => { _interpretedRuns++; Thread.Sleep(milliseconds); return Result(1); };

    private static EngineResult Result(float value) =>
        new(new Dictionary<string, HostTensor> { ["y"] = new([2, 3], [.. Enumerable.Repeat(value, 6)]) }, new Dictionary<string, HostTensor>());

    /// <summary>The last result the timing handed back (<see cref="CompiledPreference.Compiled"/>'s <c>ran</c>).</summary>
    private EngineResult? _ran;

    private bool Serves(CompiledPreference preference, object graph, long batch, Func<EngineResult> compiled, Func<EngineResult> interpreted) =>
        preference.Compiled(graph, batch, compiled, interpreted, _disagreements.Add, out _ran);

    [Fact]
    public void TheFasterServesAndTheChoiceIsKept()
    {
        var preference = new CompiledPreference(calibrate: true, check: true);
        Assert.False(Serves(preference, _graph, 256, Compiled(30), Interpreted(1)));
        Assert.False(_ran!.Compiled, "the timing's last run of the interpreter is the call's answer");
        int timed = _compiledRuns;
        Assert.True(timed >= 2, "a first run, then at least one timed round");
        Assert.Equal(timed, _interpretedRuns);
        Assert.False(Serves(preference, _graph, 256, Compiled(30), Interpreted(1)));
        Assert.Null(_ran);
        Assert.Equal(timed, _compiledRuns);

        Assert.False(preference.Settled(_graph, 256));
        Assert.Null(preference.Settled(_graph, 1));

        // Another batch size is timed on its own.
        Assert.True(Serves(preference, _graph, 1, Compiled(1), Interpreted(30)));
        Assert.True(_ran!.Compiled);
        Assert.True(_compiledRuns > timed);
        Assert.Empty(_disagreements);
    }

    [Fact]
    public void EachGraphIsTimedOnItsOwn()
    {
        var preference = new CompiledPreference(calibrate: true, check: true);
        Assert.True(Serves(preference, _graph, 16, Compiled(1), Interpreted(30)));
        Assert.False(Serves(preference, new object(), 16, Compiled(30), Interpreted(1)));
    }

    [Fact]
    public void AGraphThatDisagreesDoesNotServeHoweverFast()
    {
        var preference = new CompiledPreference(calibrate: true, check: true);
        Assert.False(Serves(preference, _graph, 16, Compiled(1, value: 1.5f), Interpreted(30)));
        Assert.False(_ran!.Compiled);
        Assert.False(Serves(preference, _graph, 16, Compiled(1, value: 1.5f), Interpreted(30)));
        Assert.Equal("its result on a batch of 16 disagreed with the interpreter's: output 'y' differs from the interpreter's by 0.5 root mean square, "
            + "33.3 % of its scale (1.5); most at element 0: 1.5 where the interpreter gives 1", Assert.Single(_disagreements));
    }

    [Fact]
    public void WithoutCalibrationTheGraphIsCheckedOnItsFirstBatchOfOneRowAndItsFirstOfMore()
    {
        var preference = new CompiledPreference(calibrate: false, check: true);
        Assert.True(Serves(preference, _graph, 256, Compiled(30), Interpreted(1)));
        Assert.Equal((1, 1), (_compiledRuns, _interpretedRuns));
        // Another size of more than one row runs the same nodes: no run of either, the call runs the graph.
        Assert.True(Serves(preference, _graph, 8, Compiled(30), Interpreted(1)));
        Assert.Null(_ran);
        Assert.Equal((1, 1), (_compiledRuns, _interpretedRuns));
        // One row, where a value that should broadcast along the batch axis shows nothing wrong with more, is checked on its own.
        Assert.False(Serves(preference, _graph, 1, Compiled(30, value: -1), Interpreted(1)));
        Assert.Equal((2, 2), (_compiledRuns, _interpretedRuns));
        Assert.Single(_disagreements);
    }

    /// <summary>
    /// Where no check is due, an interpreter that has run long enough to lose to a slow graph (over 0.1 s) is stopped: it
    /// can no longer win, and the first caller of that size would wait for all of it (DenseNet-121's Vjp of 16 images: 13.2 s before).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AnInterpreterThatCanNoLongerWinIsStoppedWhereNoCheckIsDue(bool insideAnOp)
    {
        var preference = new CompiledPreference(calibrate: true, check: true);
        Assert.True(Serves(preference, _graph, 2, Compiled(1), Interpreted(30)));
        Assert.True(Serves(preference, _graph, 8, Compiled(200), Stepped(300, out var steps, insideAnOp)));
        Assert.True(_ran!.Compiled);
        Assert.InRange(steps(), 1, 299);
        Assert.Empty(_disagreements);
    }

    [Fact]
    public void AnInterpreterWhoseResultChecksTheGraphRunsToTheEnd()
    {
        var preference = new CompiledPreference(calibrate: true, check: true);
        Assert.True(Serves(preference, _graph, 8, Compiled(700), Stepped(60, out var steps)));
        Assert.Equal(60, steps());
        Assert.Empty(_disagreements);
    }

    /// <summary>
    /// An interpreter of <paramref name="count"/> 10 ms steps that stops between them when its batch is abandoned, as the
    /// engine's passes do, or (<paramref name="insideAnOp"/>) inside an op's loop, which the evaluator reports as the node's failure.
    /// </summary>
    private Func<EngineResult> Stepped(int count, out Func<int> steps, bool insideAnOp = false)
    {
        int done = 0;
        steps = () => done;
        return () =>
        {
            _interpretedRuns++;
            for (int i = 0; i < count; i++)
            {
                if (insideAnOp && BatchCancellation.Current.IsCancellationRequested)
                    throw new NodeEvaluationException("loop", "Loop", "stopped", new OperationCanceledException());
                BatchCancellation.ThrowIfRequested();
                Thread.Sleep(10);
                done++;
            }
            return Result(1);
        };
    }

    /// <summary>
    /// A size the interpreter fails on is the graph's, unchecked and settled, so later calls of it run the graph alone.
    /// A request the interpreter refuses, or a batch abandoned while it ran, settles nothing.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ASizeTheInterpreterFailsOnIsTheGraphs(bool calibrate)
    {
        var preference = new CompiledPreference(calibrate, check: true);
        Func<EngineResult> failing = () => { _interpretedRuns++; throw new InvalidOperationException("the engine's plan refuses this size"); };
        Assert.True(Serves(preference, _graph, 4, Compiled(1), failing));
        Assert.True(_ran!.Compiled);
        Assert.Equal(1, _interpretedRuns);
        Assert.True(preference.Settled(_graph, 4));
        Assert.True(Serves(preference, _graph, 4, Compiled(1), failing));
        Assert.Equal(1, _interpretedRuns);
        Assert.Empty(_disagreements);

        Assert.Throws<InvalidRequestException>(() => Serves(preference, _graph, 2, Compiled(1), () => throw new InvalidRequestException("refused")));
        Assert.Null(preference.Settled(_graph, 2));

        using var abandoned = new CancellationTokenSource();
        Func<EngineResult> abandoning = () => { abandoned.Cancel(); throw new InvalidOperationException("stopped inside an op"); };
        using (BatchCancellation.Enter(abandoned.Token))
            Assert.Throws<InvalidOperationException>(() => Serves(preference, _graph, 8, Compiled(1), abandoning));
        Assert.Null(preference.Settled(_graph, 8));
    }

    [Fact]
    public void WithoutCalibrationOrCheckTheGraphServesUntouched()
    {
        var preference = new CompiledPreference(calibrate: false, check: false);
        Assert.True(Serves(preference, _graph, 256, Compiled(30, value: 7), Interpreted(1)));
        Assert.Null(_ran);
        Assert.Equal(0, _compiledRuns + _interpretedRuns);
    }
}
