using static TorchSharp.torch;

namespace JacService.Core.Graphs;

/// <summary>
/// Records a pass as a CUDA graph on one GPU, the way PyTorch's torch.cuda.graph does: on a side stream from libtorch's
/// pool (capture refuses the default stream), after eager warm-up runs on that stream (cuBLAS and cuDNN set up their
/// per-stream state and workspaces there, which a capture could not), with the capture's allocations in the graph's
/// private memory pool. Must be called on the executor thread that will replay the graph.
/// </summary>
internal sealed class CudaGraphRecorder(int deviceIndex) : IGraphRecorder
{
    private const int WarmUpRuns = 2;

    public (Tensor[] Outputs, IReplayableGraph Graph) Record(Func<Tensor[]> pass)
    {
        CudaGraphNative.Check(CudaGraphNative.jac_side_stream_begin(deviceIndex, out var side), "making a side stream current");
        try
        {
            for (int i = 0; i < WarmUpRuns; i++)
            {
                using var scope = NewDisposeScope();
                pass();
            }
            CudaGraphNative.Check(CudaGraphNative.jac_graph_new(deviceIndex, out var handle), "creating a CUDA graph");
            var graph = new CudaGraph(handle);
            try
            {
                CudaGraphNative.Check(CudaGraphNative.jac_graph_capture_begin(handle), "beginning the capture");
                Tensor[] outputs;
                try
                {
                    using var scope = NewDisposeScope();
                    outputs = pass();
                    // The static outputs outlive the capture; the pass's other tensors go back to the graph's pool.
                    foreach (var o in outputs) o.DetachFromDisposeScope();
                }
                catch
                {
                    // Out of capture mode before the eager fallback runs on this thread.
                    CudaGraphNative.jac_graph_capture_end(handle);
                    throw;
                }
                int ended = CudaGraphNative.jac_graph_capture_end(handle);
                if (ended != 0)
                    foreach (var o in outputs) o.Dispose();
                CudaGraphNative.Check(ended, "ending the capture");
                return (outputs, graph);
            }
            catch
            {
                graph.Dispose();
                throw;
            }
        }
        finally
        {
            CudaGraphNative.Check(CudaGraphNative.jac_side_stream_end(side), "leaving the side stream");
        }
    }

    private sealed class CudaGraph(IntPtr handle) : IReplayableGraph
    {
        private IntPtr _handle = handle;

        public void Replay() => CudaGraphNative.Check(CudaGraphNative.jac_graph_replay(_handle), "replaying a CUDA graph");

        public void Dispose()
        {
            if (_handle == IntPtr.Zero) return;
            CudaGraphNative.jac_graph_free(_handle);
            _handle = IntPtr.Zero;
        }
    }
}
