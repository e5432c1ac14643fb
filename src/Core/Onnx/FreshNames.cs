using JacService.Core.Onnx.Proto;

namespace JacService.Core.Onnx;

/// <summary>
/// The value names a graph has taken, and new ones for what an expansion writes into it: the name asked for, else
/// name#1, name#2, ... (a file may already use any name).
/// </summary>
internal sealed class FreshNames
{
    private readonly HashSet<string> _taken;

    public FreshNames(IEnumerable<string> taken) => _taken = new HashSet<string>(taken, StringComparer.Ordinal);

    /// <summary>The names a graph's inputs, initializers and nodes define (not its bodies': see <see cref="ControlFlow"/>).</summary>
    public static FreshNames Of(GraphProto graph) =>
        new(graph.Input.Select(v => v.Name).Concat(graph.Initializer.Select(t => t.Name)).Concat(graph.Node.SelectMany(n => n.Output)));

    public string Fresh(string name)
    {
        string fresh = name;
        for (int k = 1; !_taken.Add(fresh); k++) fresh = $"{name}#{k}";
        return fresh;
    }
}
