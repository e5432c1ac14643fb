using System.Collections.Concurrent;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Planning;

namespace JacService.Core.Compiled;

/// <summary>
/// Which serves each (compiled graph, batch size), the graph or the interpreter: whichever ran a batch of that size
/// faster when it first came, both timed in turn on the executor thread (<see cref="AlternatingTimer"/>, as AUTO times
/// modes). Neither wins everywhere: ONNX Runtime's convolutions trail libtorch's (oneDNN) on large batches, where
/// small_cnn's compiled Vjp ran 8.4k samples/s against the interpreter's 11.3k at batch 256, and 6.8k against 1.2k at
/// batch 1 (docs/benchmarks.md). Without <c>calibrate</c> (Engine:CalibrateAuto off) the graph serves.
/// <para>
/// With <c>check</c> (Engine:CheckAgainstInterpreter) the graph's result on its first batch of one row and its first of
/// more is also compared with the interpreter's (<see cref="ResultAgreement"/>), free where both are timed anyway, one
/// run of the interpreter otherwise; a graph that disagrees serves no batch of any size. The two cover what a graph can
/// get wrong along the batch axis (a value that broadcasts over it, or not) as Predict's check does; other sizes run the
/// same nodes. Where no check is due, an interpreter that has run long enough to lose to a slow graph (a tenth of a second
/// and more) is stopped there (<see cref="AlternatingTimer.Least"/>). A size the interpreter fails on is the graph's.
/// </para>
/// </summary>
internal sealed class CompiledPreference(bool calibrate, bool check)
{
    /// <summary>
    /// How much faster the interpreter must be to serve instead. One timed round of each, taken while other callers load
    /// the machine, can favour either by chance; the graph is the usual winner and holds less memory, so a near tie keeps
    /// it. Without the margin, layernorm_gelu's served Vjp (256-row calls from 8 callers) lost about a fifth against
    /// graphs always serving.
    /// </summary>
    private const double InterpreterMargin = 1.25;

    private readonly ConcurrentDictionary<(object Graph, long Batch), Lazy<Choice>> _choices = new();

    /// <summary>The graphs whose result agreed with the interpreter's on a batch of one row (false) and of more (true).</summary>
    private readonly ConcurrentDictionary<(object Graph, bool More), bool> _checked = new();

    /// <summary>One (graph, batch size) timed: microseconds per batch each way (0 untimed).</summary>
    private sealed record Choice(bool Compiled, double CompiledUs, double InterpreterUs);

    /// <summary>Whether the graph serves batches of this size, where that is settled already; null where not (yet).</summary>
    public bool? Settled(object graph, long batch) =>
        _choices.TryGetValue((graph, batch), out var lazy) && lazy.IsValueCreated ? lazy.Value.Compiled : null;

    /// <summary>The batch sizes chosen for <paramref name="graph"/> so far, by size: whether it serves each, and each way's time.</summary>
    public IReadOnlyList<(long Batch, bool Compiled, double CompiledUs, double InterpreterUs)> ChoicesOf(object graph) =>
        _choices.Where(c => c.Key.Graph == graph && c.Value.IsValueCreated)
            .Select(c => (c.Key.Batch, c.Value.Value.Compiled, c.Value.Value.CompiledUs, c.Value.Value.InterpreterUs))
            .OrderBy(c => c.Batch).ToArray();

    /// <summary>
    /// True when the compiled <paramref name="graph"/> serves batches of <paramref name="batch"/>; times both the first time
    /// (and compares their results where a check is due), and then <paramref name="ran"/> is the timing's last result of
    /// the way chosen, which the call need not compute again (null otherwise). A graph whose result disagrees is reported to
    /// <paramref name="disagreed"/>, once.
    /// </summary>
    public bool Compiled(object graph, long batch, Func<EngineResult> compiled, Func<EngineResult> interpreted, Action<string> disagreed,
        out EngineResult? ran)
    {
        ran = null;
        if (!calibrate && !check) return true;
        EngineResult? chosen = null;
        bool serves = SharedEntries.GetOrCompute(_choices, (graph, batch), () => Choose(graph, batch, compiled, interpreted, disagreed, out chosen)).Compiled;
        // Set only where this call's own inputs were timed (another caller's factory may have won the race).
        ran = chosen;
        return serves;
    }

    private Choice Choose(object graph, long batch, Func<EngineResult> compiled, Func<EngineResult> interpreted, Action<string> disagreed,
        out EngineResult? chosen)
    {
        var kind = (graph, batch > 1);
        bool checking = check && !_checked.ContainsKey(kind);
        if (!calibrate && !checking)
        {
            chosen = null;
            return new Choice(true, 0, 0);
        }
        EngineResult? fast = null, reference = null;
        double compiledUs = 0, interpreterUs = 0;
        bool interpreterFailed = false;
        EngineResult Interpreted()
        {
            try
            {
                return interpreted();
            }
            // Not a request the interpreter refuses (the caller's mistake stands), nor a batch its callers left.
            catch (Exception e) when (e is not (InvalidRequestException or OperationCanceledException or OutOfMemoryException)
                                      && !BatchCancellation.Current.IsCancellationRequested)
            {
                interpreterFailed = true;
                throw;
            }
        }
        try
        {
            if (calibrate)
                (compiledUs, interpreterUs) = AlternatingTimer.Least(() => fast = compiled(), () => reference = Interpreted(), gpu: false,
                    secondWithin: checking ? null : us => us / InterpreterMargin);
            else
            {
                fast = compiled();
                reference = Interpreted();
            }
        }
        // A size the interpreter cannot run is the graph's, unchecked and settled: neither the check nor the timing fails a
        // call the graph answers (Predict's ONNX Runtime on a batch the engine's plan refuses), nor runs again for it.
        catch (Exception) when (interpreterFailed && fast is not null)
        {
            chosen = fast;
            return new Choice(true, compiledUs, double.PositiveInfinity);
        }
        if (checking)
        {
            if (ResultAgreement.Disagreement(reference!, fast!) is { } why)
            {
                disagreed($"its result on a batch of {batch} disagreed with the interpreter's: {why}");
                chosen = reference;
                return new Choice(false, compiledUs, interpreterUs);
            }
            _checked.TryAdd(kind, true);
        }
        bool serves = !calibrate || compiledUs <= interpreterUs * InterpreterMargin;
        chosen = serves ? fast : reference;
        return new Choice(serves, compiledUs, interpreterUs);
    }
}
