using JacService.Core.Compiled;

namespace JacService.Core.Tests;

/// <summary>
/// The choice between a compiled derivative graph and the interpreter per (graph, batch size): the faster of the two when
/// first timed, kept; each batch size timed on its own; none timed when calibration is off.
/// </summary>
public class CompiledPreferenceTests
{
    private readonly object _graph = new();
    private int _compiledRuns, _interpretedRuns;

    private Action Compiled(int milliseconds) => () => { _compiledRuns++; Thread.Sleep(milliseconds); };
    private Action Interpreted(int milliseconds) => () => { _interpretedRuns++; Thread.Sleep(milliseconds); };

    [Fact]
    public void TheFasterServesAndTheChoiceIsKept()
    {
        var preference = new CompiledPreference(calibrate: true);
        Assert.False(preference.Compiled(_graph, 256, Compiled(30), Interpreted(1)));
        int timed = _compiledRuns;
        Assert.True(timed >= 2, "a first run, then at least one timed round");
        Assert.Equal(timed, _interpretedRuns);
        Assert.False(preference.Compiled(_graph, 256, Compiled(30), Interpreted(1)));
        Assert.Equal(timed, _compiledRuns);

        // Another batch size is timed on its own.
        Assert.True(preference.Compiled(_graph, 1, Compiled(1), Interpreted(30)));
        Assert.True(_compiledRuns > timed);
    }

    [Fact]
    public void EachGraphIsTimedOnItsOwn()
    {
        var preference = new CompiledPreference(calibrate: true);
        Assert.True(preference.Compiled(_graph, 16, Compiled(1), Interpreted(30)));
        Assert.False(preference.Compiled(new object(), 16, Compiled(30), Interpreted(1)));
    }

    [Fact]
    public void WithoutCalibrationTheGraphServesUntimed()
    {
        var preference = new CompiledPreference(calibrate: false);
        Assert.True(preference.Compiled(_graph, 256, Compiled(30), Interpreted(1)));
        Assert.Equal(0, _compiledRuns + _interpretedRuns);
    }
}
