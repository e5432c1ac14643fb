using JacService.Core.Graphs;
using static TorchSharp.torch;

namespace JacService.Testing;

/// <summary>
/// A CPU stand-in for CUDA graphs, which cannot run here: "recording" runs the pass once and keeps its outputs as the
/// static outputs; "replaying" runs the same pass again, on whatever its static inputs hold by then, and writes the
/// results into those outputs, which is what a CUDA graph's replay does. A caller that forgot to refresh the static
/// inputs, or read outputs it had not kept, gets stale numbers, as it would from a real graph.
/// </summary>
internal sealed class RerunRecorder : IGraphRecorder
{
    public int Recordings { get; private set; }
    public int Replays { get; private set; }
    public int Freed { get; private set; }

    /// <summary>When set, every recording fails with this message, as a capture does for a pass that syncs with the host.</summary>
    public string? Failure { get; set; }

    public (Tensor[] Outputs, IReplayableGraph Graph) Record(Func<Tensor[]> pass)
    {
        if (Failure is { } failure) throw new InvalidOperationException(failure);
        Recordings++;
        using var scope = NewDisposeScope();
        var outputs = pass().Select(t => t.clone().DetachFromDisposeScope()).ToArray();
        return (outputs, new Graph(this, pass, outputs));
    }

    private sealed class Graph(RerunRecorder owner, Func<Tensor[]> pass, Tensor[] outputs) : IReplayableGraph
    {
        public void Replay()
        {
            owner.Replays++;
            using var scope = NewDisposeScope();
            var fresh = pass();
            for (int i = 0; i < outputs.Length; i++) outputs[i].copy_(fresh[i]);
        }

        public void Dispose() => owner.Freed++;
    }
}
