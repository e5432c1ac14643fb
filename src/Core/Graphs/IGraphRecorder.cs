using static TorchSharp.torch;

namespace JacService.Core.Graphs;

/// <summary>
/// Records one pass as a graph that can be replayed: on a GPU, a CUDA graph (<see cref="CudaGraphRecorder"/>). The
/// seam exists so the bookkeeping around graphs (<see cref="CapturedPasses"/>) runs in tests on the CPU, where a
/// stand-in replays by running the pass again.
/// </summary>
internal interface IGraphRecorder
{
    /// <summary>
    /// Warms <paramref name="pass"/> up and records it. The outputs the recorded pass returned are the graph's static
    /// outputs: each replay writes them again, from whatever the static tensors the pass reads hold by then. Throws
    /// when the pass cannot be recorded; the caller then runs it eagerly.
    /// </summary>
    (Tensor[] Outputs, IReplayableGraph Graph) Record(Func<Tensor[]> pass);
}
