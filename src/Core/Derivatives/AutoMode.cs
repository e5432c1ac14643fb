using System.Collections.Concurrent;
using JacService.Core.Ops;
using JacService.Core.Planning;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace JacService.Core.Derivatives;

/// <summary>
/// Chooses forward or reverse mode per (input shapes, wrt, of) by timing both on the real plan the first time they are
/// asked for, on the executor thread that runs them, and keeps the choice. Sizes alone mislead at small batches,
/// where the fixed cost of a pass (one forward pass vs a primal plus a backward pass) outweighs the arithmetic.
/// </summary>
/// <remarks>
/// Replicas of one version on several GPUs share one set of choices (<c>sharing</c>): the devices are alike, so what
/// one replica timed holds for all, and GetModel shows them in one place.
/// </remarks>
/// <remarks>
/// Where a mode's Jacobian runs as a compiled graph (<c>compiled</c>: the unit for wrt, of, mode and input shapes, or null),
/// that graph is what is timed for it, whole.
/// </remarks>
internal sealed class AutoMode(ModelParts parts, ForwardMode forward, ReverseMode reverse, AutoMode? sharing = null,
    Func<int, int[], DerivativeMode, long[][], Compiled.CompiledDerivative?>? compiled = null,
    Action<Compiled.CompiledDerivative, OnnxRuntimeException>? failed = null)
{
    /// <summary>Directions timed per mode; a side with more is extrapolated linearly from this many.</summary>
    private const long ProbeDirections = 16;

    private readonly ConcurrentDictionary<string, Lazy<DerivativeChoice>> _choices = sharing?._choices ?? new();

    public IReadOnlyList<DerivativeChoice> Choices =>
        _choices.Values.Where(l => l.IsValueCreated).Select(l => l.Value)
            .OrderBy(c => c.Wrt).ThenBy(c => string.Join(",", c.Of)).ThenBy(c => c.Batch).ToList();

    public DerivativeMode Choose(Tensor[] inputs, int wrt, int[] of)
    {
        var key = Key(inputs.Select(t => t.Dims()).ToArray(), wrt, of);
        return SharedEntries.GetOrCompute(_choices, key, () => Calibrate(inputs, wrt, of)).Mode;
    }

    /// <summary>
    /// Takes choices made on another snapshot of the same structure (<see cref="Onnx.ModelGraph.Structure"/>) as this
    /// one's own, so its first batches of those shapes do not time both modes again. Only where every input's shape
    /// follows from the batch size (no other dynamic axis) and the names still resolve; returns how many were taken.
    /// </summary>
    public int Adopt(IEnumerable<DerivativeChoice> choices)
    {
        var graph = parts.Graph;
        if (graph.Inputs.Any(i => i.Shape.Skip(1).Any(d => d < 0))) return 0;
        int adopted = 0;
        foreach (var choice in choices)
        {
            int wrt = graph.Inputs.ToList().FindIndex(i => i.Name == choice.Wrt);
            var of = choice.Of.Select(name => graph.Outputs.ToList().FindIndex(o => o.Name == name)).ToArray();
            if (wrt < 0 || of.Any(o => o < 0)) continue;
            var shapes = graph.Inputs.Select(i => (long[])[choice.Batch, .. i.Shape.Skip(1)]).ToArray();
            if (_choices.TryAdd(Key(shapes, wrt, of), new Lazy<DerivativeChoice>(choice))) adopted++;
        }
        return adopted;
    }

    private static string Key(long[][] shapes, int wrt, int[] of) => $"{Planning.Planner.Key(shapes)}|{wrt}|{string.Join(",", of)}";

    private DerivativeChoice Calibrate(Tensor[] inputs, int wrt, int[] of)
    {
        var graph = parts.Graph;
        long batch = inputs[0].size(0);
        long n = Shapes.Product(inputs[wrt].Dims()[1..]);
        long m;
        using (var plan = parts.Plans.Lease(inputs)) m = of.Sum(o => parts.SampleElements(plan.Plan, o, batch));
        string wrtName = graph.Inputs[wrt].Name;
        string[] ofNames = of.Select(o => graph.Outputs[o].Name).ToArray();
        if (!parts.Limits.CalibrateAuto || n == 0 || m == 0)
        {
            var rule = m < n ? DerivativeMode.Reverse : DerivativeMode.Forward;
            return new DerivativeChoice(wrtName, ofNames, batch, rule, 0, 0, Timed: false);
        }
        // The mode with fewer directions goes first, as the likely winner; the other is stopped once it has run as long as
        // the first took (AlternatingTimer.Least), since it can no longer win. Timed in full, the loser cost most of a large
        // model's warm-up: a 200 MB MLP (64 inputs, 8 outputs) spent 4.5 s on one forward-mode Jacobian of 64 rows, against
        // 0.6 s in reverse mode, and ran it twice.
        bool reverseFirst = m < n;
        var (firstMode, secondMode) = reverseFirst ? (DerivativeMode.Reverse, DerivativeMode.Forward) : (DerivativeMode.Forward, DerivativeMode.Reverse);
        long Directions(DerivativeMode mode) => mode == DerivativeMode.Forward ? n : m;
        var first = Probe(firstMode, inputs, wrt, of, Directions(firstMode), null);
        // A first check run too slow to repeat is the first's measure: the second's check stops there too.
        Func<double, double>? within = first.CheckUs > AlternatingTimer.RepeatFor.TotalMicroseconds ? scale => first.CheckUs * first.Scale / scale : null;
        var second = Probe(secondMode, inputs, wrt, of, Directions(secondMode), within);
        // Check runs of both (compiled graphs) of over a second together are the measurement, as a first round that long is
        // for the timer.
        bool measured = first.CheckUs > 0 && second.CheckUs > 0 && first.CheckUs + second.CheckUs > AlternatingTimer.FirstRoundSuffices.TotalMicroseconds;
        var (firstUs, secondUs) = second.CheckUs == double.PositiveInfinity || measured
            ? (first.CheckUs, second.CheckUs)
            : AlternatingTimer.Least(first.Run, second.Run, parts.Limits.Device != Models.ComputeDevices.Cpu, us => us * first.Scale / second.Scale,
                ranOnce: first.CheckUs > 0 && second.CheckUs > 0);
        firstUs *= first.Scale;
        secondUs *= second.Scale;
        var (forwardUs, reverseUs) = reverseFirst ? (secondUs, firstUs) : (firstUs, secondUs);
        var mode = reverseUs < forwardUs ? DerivativeMode.Reverse : DerivativeMode.Forward;
        return new DerivativeChoice(wrtName, ofNames, batch, mode, forwardUs, reverseUs, Timed: true);
    }

    /// <summary>
    /// What is timed for a mode and by how much its time is scaled: the compiled graph's whole Jacobian where there is one,
    /// else the interpreter's pass over <see cref="ProbeDirections"/> of the <paramref name="all"/> directions. A compiled
    /// graph is run once here, untimed by the comparison (CheckUs is that run's time; zero for the interpreter, which is not
    /// run): ONNX Runtime may fail to run a graph it loaded, and where the interpreter's pass runs, the graph is then taken
    /// out of service (<paramref name="failed"/>) and the interpreter timed instead, as a call does
    /// (<see cref="Models.ModelVersion"/>): a faster way to the same answer never fails a call. With <paramref name="within"/>
    /// (the most microseconds the run may take, given its scale) a run past it is stopped, and CheckUs is infinite.
    /// </summary>
    private (Action Run, double Scale, double CheckUs) Probe(DerivativeMode mode, Tensor[] inputs, int wrt, int[] of, long all, Func<double, double>? within)
    {
        long probe = Math.Min(all, ProbeDirections);
        var pass = mode == DerivativeMode.Forward ? forward.Jacobian : (Func<Tensor[], int, int[], long, (Tensor[], Tensor[])>)reverse.Jacobian;
        (Action, double, double) interpreted = (() => pass(inputs, wrt, of, probe), (double)all / probe, 0);
        if (compiled?.Invoke(wrt, of, mode, inputs.Select(t => t.Dims()).ToArray()) is not { } unit) return interpreted;
        // A graph that would run this batch in parts computes every direction as the call would, where the interpreter's
        // probe computes a few: small_cnn's forward graph at 64 rows made its warm-up 6x longer.
        if (unit.BytesPerSample * inputs[0].size(0) > parts.Limits.WorkingMemoryBytes) return interpreted;
        var host = inputs.Select(t => new Models.HostTensor(t.Dims(), t.data<float>().ToArray())).ToArray();
        void Run() => unit.Run(host, null);
        try
        {
            bool gpu = parts.Limits.Device != Models.ComputeDevices.Cpu;
            double checkUs = within is null ? AlternatingTimer.Time(Run, gpu) : AlternatingTimer.TimeWithin(Run, gpu, within(1));
            return (Run, 1, checkUs);
        }
        catch (OnnxRuntimeException e)
        {
            using (NewDisposeScope()) pass(inputs, wrt, of, probe);
            failed?.Invoke(unit, e);
            return interpreted;
        }
    }
}
