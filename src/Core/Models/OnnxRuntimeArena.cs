using Google.Protobuf;
using JacService.Core.Onnx.Proto;
using Microsoft.ML.OnnxRuntime;

namespace JacService.Core.Models;

/// <summary>
/// One CPU arena in ONNX Runtime's environment for every version's sessions, Predict's and the derivative graphs':
/// it holds what the largest runs at one time needed, where an arena per session held each session's largest run
/// (small_cnn's graphs took a server to 1.6 GiB; eight torchvision classifiers' Predict sessions, warmed up at 64
/// images, 4.5 GiB more than the shared one). Without an arena, every run allocated its intermediates afresh: 5-7x
/// the page faults per call and about a fifth less served Vjp throughput on layernorm_gelu (docs/benchmarks.md).
/// </summary>
public static class OnnxRuntimeArena
{
    private static readonly Lazy<bool> Registered = new(() =>
    {
        using var memory = new OrtMemoryInfo(OrtMemoryInfo.allocatorCPU, OrtAllocatorType.ArenaAllocator, 0, OrtMemType.Default);
        using var arena = new OrtArenaCfg(0, -1, -1, -1);
        OrtEnv.Instance().CreateAndRegisterAllocator(memory, arena);
        return true;
    });

    /// <summary>Registers the arena on first use; true once it is (sessions then take their tensors from it).</summary>
    internal static bool Use() => Registered.Value;

    private static readonly Lazy<(InferenceSession Session, RunOptions Shrinking)> Shrinker = new(() =>
    {
        var session = OnnxRuntimeForward.NewSession(IdentityModel(), weights: null, threads: 1);
        var shrinking = new RunOptions();
        // Read at the end of a run: the session's CPU arena, here the shared one, frees every region no tensor is in.
        shrinking.AddRunConfigEntry("memory.enable_memory_arena_shrinkage", "cpu:0");
        return (session, shrinking);
    });

    private static readonly object ShrinkLock = new();

    /// <summary>
    /// Gives the arena's free regions back to the native heap: without this the arena keeps, for the process's life,
    /// what the largest runs ever needed, freed versions' included (a DenseNet-121 warmed up and freed left ~0.65 GiB
    /// in it). The next large runs allocate again. False where no session has used the arena yet or ONNX Runtime is
    /// not available.
    /// </summary>
    public static bool Shrink()
    {
        if (!Registered.IsValueCreated) return false;
        try
        {
            lock (ShrinkLock)
            {
                var (session, shrinking) = Shrinker.Value;
                using var input = OrtValue.CreateTensorValueFromMemory(new float[1], [1]);
                using var _ = session.Run(shrinking, ["x"], [input], ["y"]);
                return true;
            }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException or OnnxRuntimeException)
        {
            return false;
        }
    }

    /// <summary>y = Identity(x), one float: the smallest run that reaches the arena.</summary>
    private static byte[] IdentityModel()
    {
        var one = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = new TensorShapeProto() } };
        one.TensorType.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = 1 });
        var graph = new GraphProto { Name = "shrink" };
        graph.Node.Add(new NodeProto { OpType = "Identity", Input = { "x" }, Output = { "y" } });
        graph.Input.Add(new ValueInfoProto { Name = "x", Type = one });
        graph.Output.Add(new ValueInfoProto { Name = "y", Type = one.Clone() });
        var model = new ModelProto { IrVersion = 8, Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 13 });
        return model.ToByteArray();
    }
}
