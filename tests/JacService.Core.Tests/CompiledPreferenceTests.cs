using JacService.Core.Compiled;
using JacService.Core.Models;

namespace JacService.Core.Tests;

/// <summary>
/// The choice between a compiled derivative graph and the interpreter per (graph, batch size): the faster of the two when
/// first timed, kept; each batch size timed on its own; none timed when calibration is off; a graph whose result
/// disagrees with the interpreter's never serves, whichever is faster.
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
    public void WithoutCalibrationTheGraphIsCheckedByOneRunOfEach()
    {
        var preference = new CompiledPreference(calibrate: false, check: true);
        Assert.True(Serves(preference, _graph, 256, Compiled(30), Interpreted(1)));
        Assert.False(Serves(preference, _graph, 8, Compiled(30, value: -1), Interpreted(1)));
        Assert.Equal((2, 2), (_compiledRuns, _interpretedRuns));
        Assert.Single(_disagreements);
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
