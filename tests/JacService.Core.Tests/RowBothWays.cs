using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Core.Ops;

namespace JacService.Core.Tests;

/// <summary>
/// An op row's model (float32, as ONNX Runtime runs it) loaded twice, with compiled graphs serving wherever they compile
/// and with the interpreter alone, and what a derivative of it takes: the row's inputs, its differentiated input and
/// every output.
/// </summary>
internal sealed class RowBothWays : IDisposable
{
    /// <summary>Rows of ops with compiled rules; an expanded op compiles through the rules of the ops it expands into.</summary>
    public static IEnumerable<OpRows.Row> Compilable =>
        OpRows.Rows.Where(r => OnnxModelReader.ExpandedOps.Contains(r.OpType) || OpTable.Rules[r.OpType].Compiled is not null);

    public RowBothWays(string row)
    {
        var g = new OnnxBuilder();
        OpRows.ByName[row].Build(g);
        var bytes = OpForwardOrtTests.OrtModel(g.ToBytes(), OnnxType.Float);
        // Compiled graphs serve wherever they compile, not only where timing finds them faster (CompiledPreferenceTests).
        Compiled = ModelVersion.Load(row, 1, bytes, new EngineLimits { CalibrateAuto = false });
        Interpreted = ModelVersion.Load(row, 1, bytes, new EngineLimits { CompileDerivatives = false });
        Inputs = g.Inputs.Select(i => new HostTensor(i.Shape, i.Data.Select(d => (float)d).ToArray())).ToArray();
        Wrt = g.Inputs.ToList().FindIndex(i => i.Differentiated);
        Of = Compiled.ResolveOf([]);
    }

    public ModelVersion Compiled { get; }
    public ModelVersion Interpreted { get; }
    public HostTensor[] Inputs { get; }
    public int Wrt { get; }
    public int[] Of { get; }

    public void Dispose()
    {
        Compiled.Dispose();
        Interpreted.Dispose();
    }
}
