namespace JacService.Core.Models;

/// <summary>Limits of the engine, shared by every model version.</summary>
public sealed record EngineLimits
{
    /// <summary>Working memory one pass may use for tangents, or for kept values plus cotangents; the basis (then the batch) is split to stay under it.</summary>
    public long WorkingMemoryBytes { get; init; } = 512L << 20;

    /// <summary>Largest result (outputs plus Jacobians) a request may ask for; larger ones are refused before any work.</summary>
    public long MaxResultBytes { get; init; } = 256L << 20;

    /// <summary>Plans kept per model version (one per distinct set of input shapes).</summary>
    public int MaxCachedPlans { get; init; } = 64;

    /// <summary>
    /// Largest tangent or cotangent chunk (one value's, for all its directions) a pass makes. glibc serves blocks over
    /// 64 MiB on a thread's own arena with a fresh mapping whatever its thresholds, and touching fresh pages cost up to
    /// 10x the computation on these machines (mlp_tanh's Hessian at batch 256: 2.5 s on an executor thread against
    /// 0.23 s in-process); chunks under this size come from reused heap memory, and stay closer to the caches.
    /// </summary>
    public long LargestTemporaryBytes { get; init; } = 32L << 20;

    /// <summary>
    /// Serve Predict through ONNX Runtime where the model's inputs and outputs are float32 (see OnnxRuntimeForward);
    /// resolved false on a GPU, where Predict runs on the device.
    /// </summary>
    public bool PredictWithOnnxRuntime { get; init; } = true;

    /// <summary>
    /// Serve Jacobians and Vjp through derivative graphs in ONNX Runtime where every op on the path has a compiled rule and the
    /// model's inputs and outputs are float32 (see Compiled.CompiledDerivatives); resolved false on a GPU.
    /// </summary>
    public bool CompileDerivatives { get; init; } = true;

    /// <summary>
    /// Most nodes a derivative graph may hold and still be compiled: ONNX Runtime's session preparation grows faster than
    /// the graph, and the first call of each (wrt, of, mode) waits for it (with 1.32: 0.5 s at 4,800 nodes, 1.1 s at 9,600,
    /// 2.5 s at 19,200, a tanh recurrence unrolled over 600 to 2,400 steps, bench/deep_graphs.sh; 1.31 took 9.8 s and 46 s
    /// for the first two). Larger graphs are served by the interpreter.
    /// </summary>
    public int MaxCompiledNodes { get; init; } = 20_000;

    /// <summary>
    /// Threads of one run of a version's ONNX Runtime sessions (Predict and the derivative graphs): the executor thread
    /// calling it and the rest from the session's own pool, which sleeps between runs instead of spinning. The server
    /// sets it from the model's Batching:IntraOpThreads, as it sets libtorch's threads.
    /// </summary>
    public int OnnxRuntimeThreads { get; init; } = 1;

    /// <summary>A version's ONNX Runtime sessions read one copy of its weights (<see cref="SharedWeights"/>); off only to measure what that saves.</summary>
    internal bool ShareWeights { get; init; } = true;

    /// <summary>What a model file may hold; checked at load, and while planning each new set of input shapes.</summary>
    public ModelLimits Model { get; init; } = new();

    /// <summary>
    /// Where this model version's tensors live ("cpu", "cuda:0"): the first of <see cref="Devices"/>, or for a replica
    /// the device it was loaded on.
    /// </summary>
    public string Device { get; init; } = ComputeDevices.Cpu;

    /// <summary>Every device a version has a replica on: resolved from Engine:Device (<see cref="ComputeDevices"/>).</summary>
    public IReadOnlyList<string> Devices { get; init; } = [ComputeDevices.Cpu];

    /// <summary>
    /// Record each pass as a CUDA graph and replay it (resolved from Engine:CudaGraphs: true only on a GPU with the
    /// graph library present; see <see cref="Graphs.CapturedPasses"/>).
    /// </summary>
    public bool CudaGraphs { get; init; }

    /// <summary>Why passes are not recorded as CUDA graphs (for GetModel); empty when they are.</summary>
    public string CudaGraphsNote { get; init; } = "the device is the CPU";

    /// <summary>
    /// AUTO times both modes on the first batch of each shape, and a compiled derivative graph is timed against the
    /// interpreter on the first batch of each size (true); or AUTO picks by size alone and compiled graphs always serve (false).
    /// </summary>
    public bool CalibrateAuto { get; init; } = true;

    /// <summary>
    /// Compare what ONNX Runtime serves (Predict, each compiled derivative graph) with the interpreter's result on the
    /// first batches, and take a path that disagrees out of service (<see cref="ResultAgreement"/>).
    /// </summary>
    public bool CheckAgainstInterpreter { get; init; } = true;

    /// <summary>Apply <see cref="Onnx.GraphRewrites"/> to each graph at load (Engine:GraphRewrites).</summary>
    public bool RewriteGraph { get; init; } = true;
}
