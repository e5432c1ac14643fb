using System.Collections.Concurrent;
using JacService.Core.Ops;
using static TorchSharp.torch;

namespace JacService.Core.Graphs;

/// <summary>
/// One model version's passes as replayable graphs (CUDA graphs on a GPU). Per key (what the pass computes and the
/// shape of every input it reads), the first run is eager and the second records the pass on static copies of its
/// inputs; from then on a run copies its inputs into those, replays the graph and reads its static outputs. A pass
/// that cannot be recorded (it reads a device value on the host, or builds a tensor from host memory) runs eagerly
/// from then on, reported once through <see cref="CaptureFailed"/> and kept in <see cref="Fallbacks"/>. With no
/// recorder (a CPU device, Engine:CudaGraphs off) every pass runs eagerly and nothing is kept.
/// </summary>
internal sealed class CapturedPasses(IGraphRecorder? recorder, int maxGraphs) : IDisposable
{
    /// <summary>Eager runs of a key before it is recorded: a shape seen once may never come again.</summary>
    public const int EagerRunsBeforeRecording = 1;

    private readonly ConcurrentDictionary<string, Slot> _slots = new();
    private int _graphs;

    public bool Enabled => recorder is not null;

    /// <summary>Graphs recorded and alive.</summary>
    public int Recorded => Volatile.Read(ref _graphs);

    /// <summary>Keys that run eagerly for good, and why.</summary>
    public IReadOnlyList<(string Key, string Reason)> Fallbacks =>
        _slots.Where(p => p.Value.Failure is not null).Select(p => (p.Key, p.Value.Failure!)).OrderBy(p => p.Key).ToList();

    /// <summary>(key, reason) when a pass could not be recorded and will run eagerly.</summary>
    public event Action<string, string>? CaptureFailed;

    /// <summary>
    /// Runs <paramref name="pass"/> on <paramref name="inputs"/> (eagerly, or as its graph's replay) and hands its
    /// outputs to <paramref name="read"/>, which must copy what it keeps: a replay's outputs are the graph's static
    /// tensors, written again by the next replay. Safe from several executor threads: those that want the same graph
    /// take turns. An eager run of the pass beside a replay costs several replays (on the H200, a 256-row Jacobian of
    /// mlp_tanh took 1.2 ms eager; with graphs, where the second executor ran eagerly, batches averaged 0.6 ms, about
    /// what half eager would give), and the GPU runs one thread's kernels after the other's anyway. Eager runs (a
    /// key's first, or one that is not recorded) need no turn.
    /// </summary>
    /// <remarks>
    /// The key is <paramref name="kind"/>, <paramref name="wrt"/>, <paramref name="of"/> and every input's shape, and is
    /// only written out where passes are recorded: on the CPU its string and shape reads would be work for nothing.
    /// </remarks>
    public T Run<T>(string kind, int wrt, int[]? of, Tensor[] inputs, Func<Tensor[], Tensor[]> pass, Func<Tensor[], T> read)
    {
        if (recorder is null) return read(pass(inputs));
        string key = Key(kind, wrt, of, inputs);
        var slot = _slots.GetOrAdd(key, _ => new Slot());
        lock (slot)
        {
            if (slot.Graph is not null || TryRecord(key, slot, inputs, pass))
            {
                for (int i = 0; i < inputs.Length; i++) slot.Inputs![i].copy_(inputs[i]);
                slot.Graph!.Replay();
                return read(slot.Outputs!);
            }
        }
        return read(pass(inputs));
    }

    /// <summary>False to run eagerly this time: too early, no room, or the recording failed (then for good).</summary>
    private static string Key(string kind, int wrt, int[]? of, Tensor[] inputs) =>
        $"{kind} wrt {wrt} of {string.Join(",", of ?? [])} shapes {Planning.Planner.Key(inputs.Select(t => t.Dims()).ToArray())}";

    private bool TryRecord(string key, Slot slot, Tensor[] inputs, Func<Tensor[], Tensor[]> pass)
    {
        if (slot.Failure is not null || slot.EagerRuns++ < EagerRunsBeforeRecording) return false;
        if (Interlocked.Increment(ref _graphs) > maxGraphs)
        {
            Interlocked.Decrement(ref _graphs);
            return false;
        }
        var statics = inputs.Select(t => t.clone().DetachFromDisposeScope()).ToArray();
        try
        {
            var (outputs, graph) = recorder!.Record(() => pass(statics));
            (slot.Inputs, slot.Outputs, slot.Graph) = (statics, outputs, graph);
            return true;
        }
        catch (Exception e)
        {
            Interlocked.Decrement(ref _graphs);
            foreach (var t in statics) t.Dispose();
            slot.Failure = NativeErrors.Trim(e.Message);
            CaptureFailed?.Invoke(key, slot.Failure);
            return false;
        }
    }

    public void Dispose()
    {
        foreach (var slot in _slots.Values)
        {
            lock (slot)
            {
                slot.Graph?.Dispose();
                foreach (var t in (slot.Inputs ?? []).Concat(slot.Outputs ?? [])) t.Dispose();
                (slot.Graph, slot.Inputs, slot.Outputs) = (null, null, null);
            }
        }
        _slots.Clear();
    }

    private sealed class Slot
    {
        public int EagerRuns;
        public string? Failure;
        public Tensor[]? Inputs;
        public Tensor[]? Outputs;
        public IReplayableGraph? Graph;
    }
}
