using System.ComponentModel.DataAnnotations;
using JacService.Core.Graphs;
using JacService.Core.Models;

namespace JacService.Server.Execution;

/// <summary>Engine limits (configuration section "Engine").</summary>
public sealed class EngineOptions : IValidatableObject
{
    public const string Section = "Engine";

    /// <summary>
    /// Where parameters live and passes run: cpu, cuda (the first GPU), cuda:N, a comma-separated list of GPUs
    /// (cuda:0,cuda:1: a replica of every model version and its executors on each, batches spread over them), or auto
    /// (the first GPU if CUDA has one, else the CPU). Checked at start against what libtorch can reach.
    /// </summary>
    public string Device { get; set; } = ComputeDevices.Auto;

    /// <summary>
    /// Record each pass (per model version, kind of pass and input shapes) as a CUDA graph on its second run and replay
    /// it from then on: auto (on a GPU when the graph library, libJacServiceCudaGraphs, is present), on (refuse to start
    /// otherwise) or off. A pass that cannot be recorded runs eagerly, logged and shown in GetModel.
    /// </summary>
    public CudaGraphsSetting CudaGraphs { get; set; } = CudaGraphsSetting.Auto;

    /// <summary>
    /// Let matrix products and convolutions on a GPU run on TF32 tensor cores (about 3 significant digits instead of
    /// float32's 7). Off by default: derivatives are served to float32 precision, which TF32 does not give (cuDNN's
    /// convolutions would otherwise use it, libtorch's default).
    /// </summary>
    public bool AllowTf32 { get; set; }

    /// <summary>Working memory for one forward-mode pass; the tangent basis, then the batch, is split to fit.</summary>
    [Range(1, 1 << 20)]
    public int WorkingMemoryMiB { get; set; } = 512;

    /// <summary>Plans (one per distinct set of input shapes) kept per model version.</summary>
    [Range(1, 100_000)]
    public int MaxCachedPlans { get; set; } = 64;

    /// <summary>
    /// AUTO times forward and reverse mode on the first batch of each shape and keeps the faster, and a compiled
    /// derivative graph is timed against the interpreter on the first batch of each size, the faster serving it (true);
    /// or AUTO picks by size alone and compiled graphs serve wherever they compile (false: reproducible choices, no
    /// first-batch cost).
    /// </summary>
    public bool CalibrateAuto { get; set; } = true;

    /// <summary>
    /// Compare what ONNX Runtime serves with the interpreter, the reference, on the first batches: Predict on the first
    /// batch of one row and the first of more, each compiled derivative graph likewise (free where CalibrateAuto times
    /// both). One that disagrees is taken out of service, logged and shown in GetModel, and the interpreter serves it.
    /// Off saves one interpreter pass per check.
    /// </summary>
    public bool CheckAgainstInterpreter { get; set; } = true;

    /// <summary>
    /// Rewrite each loaded graph into one that computes the same values and derivatives in fewer passes
    /// (BatchNormalization folded into the Conv before it, MaxPool moved before the Relu feeding it; see GraphRewrites).
    /// Off runs the file's nodes as they are.
    /// </summary>
    public bool GraphRewrites { get; set; } = true;

    /// <summary>
    /// Keep large tensor blocks in the process heap for reuse instead of mapping them afresh for every batch (glibc's
    /// default above 32 MiB), which costs a page fault per page on first touch. The process then holds its peak heap.
    /// </summary>
    public bool ReuseLargeAllocations { get; set; } = true;

    /// <summary>
    /// After this many seconds without a batch running, give back once what the largest calls left reserved: ONNX
    /// Runtime's shared arena frees its empty regions and the native heap its free pages (which
    /// <see cref="ReuseLargeAllocations"/> otherwise keeps). A burst of large calls then does not hold its peak for the
    /// process's life; the first large calls after an idle spell fault their pages in again. 0: never.
    /// </summary>
    [Range(0, 86_400)]
    public double ReturnMemoryWhenIdleSeconds { get; set; } = 30;

    /// <summary>
    /// Let libtorch's MKL choose its matrix-product kernels by the CPU's features rather than its vendor: on AMD CPUs
    /// with AVX-512 (EPYC Zen 4/5) MKL otherwise runs its AVX2 code, 2-2.5x slower. No effect on Intel CPUs.
    /// </summary>
    public bool MklIgnoreCpuVendor { get; set; } = true;

    /// <summary>
    /// Serve Predict through ONNX Runtime (one session per model version beside the engine; float32 models) instead
    /// of the engine's interpreter: 2-12x faster forward passes. On the CPU only (see <see cref="ResolvedPredictWithOnnxRuntime"/>).
    /// </summary>
    public bool PredictWithOnnxRuntime { get; set; } = true;

    /// <summary>
    /// Serve Jacobians and Vjp through compiled derivative graphs in ONNX Runtime (the model's nodes and their
    /// derivatives as one graph per wrt, of and mode or Vjp directions; float32 models whose every op on the path has a
    /// compiled rule) instead of the engine's interpreter, which serves what cannot be compiled. On the CPU only.
    /// </summary>
    public bool CompileDerivatives { get; set; } = true;

    /// <summary>
    /// Most nodes a compiled derivative graph may hold (the model's nodes on the path and their derivatives); larger ones
    /// are served by the interpreter, as ONNX Runtime's preparation of a graph grows faster than its nodes (docs/ops.md).
    /// </summary>
    [Range(1, int.MaxValue)]
    public int MaxCompiledNodes { get; set; } = 20_000;

    /// <summary>The devices Engine:Device resolves to here (validation has refused a setting that resolves to none).</summary>
    public IReadOnlyList<string> ResolvedDevices() => ComputeDevices.Resolve(Device, ComputeDevices.CudaDevices()).Devices;

    /// <summary>Whether ONNX Runtime serves Predict on <paramref name="device"/>: on the CPU only, as its CPU build is what ships.</summary>
    public bool ResolvedPredictWithOnnxRuntime(string device) => PredictWithOnnxRuntime && device == ComputeDevices.Cpu;

    /// <summary>Whether compiled derivative graphs serve Jacobians and Vjp on <paramref name="device"/>: on the CPU only, like Predict through ONNX Runtime.</summary>
    public bool ResolvedCompileDerivatives(string device) => CompileDerivatives && device == ComputeDevices.Cpu;

    /// <summary>Whether passes are recorded as CUDA graphs on <paramref name="device"/>, and why not when they are not.</summary>
    public (bool On, string Note) ResolvedCudaGraphs(string device)
    {
        if (CudaGraphs == CudaGraphsSetting.Off) return (false, "Engine:CudaGraphs is off");
        if (device == ComputeDevices.Cpu) return (false, "the device is the CPU");
        return GraphLibrary.Availability is { } missing ? (false, missing) : (true, "");
    }

    public IEnumerable<ValidationResult> Validate(ValidationContext context) => Validate(ComputeDevices.CudaDevices(), GraphLibrary.Availability);

    /// <summary>The checks, against <paramref name="cudaDevices"/> GPUs and the graph library's absence (null: present).</summary>
    internal IEnumerable<ValidationResult> Validate(int cudaDevices, string? graphLibraryMissing)
    {
        var (devices, problem) = ComputeDevices.Resolve(Device, cudaDevices);
        if (problem is null && devices.Count > 1 && graphLibraryMissing is { } missing)
            problem = $"it names {devices.Count} GPUs, and each executor thread is bound to its GPU through the graph library, which is " +
                $"not available: {missing}; name one GPU";
        if (problem is not null)
        {
            yield return new ValidationResult($"Engine:Device '{Device}' cannot be served: {problem}", [nameof(Device)]);
            yield break;
        }
        if (CudaGraphs == CudaGraphsSetting.On && ResolvedCudaGraphs(devices[0]) is (false, var why))
            yield return new ValidationResult($"Engine:CudaGraphs is on, but graphs cannot run here: {why}; set it to auto or off", [nameof(CudaGraphs)]);
    }
}
