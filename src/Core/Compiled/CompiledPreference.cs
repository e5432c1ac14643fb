using System.Collections.Concurrent;
using JacService.Core.Derivatives;

namespace JacService.Core.Compiled;

/// <summary>
/// Which serves each (compiled graph, batch size), the graph or the interpreter: whichever ran a batch of that size
/// faster when it first came, both timed in turn on the executor thread (<see cref="AlternatingTimer"/>, as AUTO times
/// modes). Neither wins everywhere: ONNX Runtime's convolutions trail libtorch's (oneDNN) on large batches, where
/// small_cnn's compiled Vjp ran 8.4k samples/s against the interpreter's 11.3k at batch 256, and 6.8k against 1.2k at
/// batch 1 (docs/benchmarks.md). Without <c>calibrate</c> (Engine:CalibrateAuto off) the graph serves.
/// </summary>
internal sealed class CompiledPreference(bool calibrate)
{
    /// <summary>
    /// How much faster the interpreter must be to serve instead. One timed round of each, taken while other callers load
    /// the machine, can favour either by chance; the graph is the usual winner and holds less memory, so a near tie keeps
    /// it. Without the margin, layernorm_gelu's served Vjp (256-row calls from 8 callers) lost about a fifth against
    /// graphs always serving.
    /// </summary>
    private const double InterpreterMargin = 1.25;

    private readonly ConcurrentDictionary<(object Graph, long Batch), Lazy<Choice>> _choices = new();

    /// <summary>One (graph, batch size) timed: microseconds per batch each way.</summary>
    private sealed record Choice(bool Compiled, double CompiledUs, double InterpreterUs);

    /// <summary>True when the compiled <paramref name="graph"/> serves batches of <paramref name="batch"/>; times both the first time.</summary>
    public bool Compiled(object graph, long batch, Action compiled, Action interpreted)
    {
        if (!calibrate) return true;
        var lazy = _choices.GetOrAdd((graph, batch), _ => new Lazy<Choice>(() =>
        {
            var (compiledUs, interpreterUs) = AlternatingTimer.Least(compiled, interpreted, gpu: false);
            return new Choice(compiledUs <= interpreterUs * InterpreterMargin, compiledUs, interpreterUs);
        }));
        try
        {
            return lazy.Value.Compiled;
        }
        catch
        {
            _choices.TryRemove((graph, batch), out _);
            throw;
        }
    }
}
