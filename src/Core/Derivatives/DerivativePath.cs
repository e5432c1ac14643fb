using JacService.Core.Onnx;
using JacService.Core.Ops;

namespace JacService.Core.Derivatives;

/// <summary>
/// Where derivatives flow for one (wrt, of): the nodes downstream of wrt and upstream of an output in of. Only they
/// carry tangents forward or cotangents back; everything else is computed as plain values.
/// </summary>
internal sealed class DerivativePath
{
    private DerivativePath(bool[] carries, bool[] dependsOnWrt, bool[] read)
    {
        Carries = carries;
        DependsOnWrt = dependsOnWrt;
        ReadByReverse = read;
    }

    /// <summary>Per node index: the node propagates derivatives.</summary>
    public bool[] Carries { get; }

    /// <summary>Per value id: the value depends on wrt (only those need a cotangent).</summary>
    public bool[] DependsOnWrt { get; }

    /// <summary>Per value id: a reverse rule of a carrying node reads the value, so the primal pass must keep it.</summary>
    public bool[] ReadByReverse { get; }

    public static DerivativePath Build(ModelGraph graph, int wrt, int[] of)
    {
        var nodes = graph.Nodes;
        var dependsOnWrt = new bool[graph.ValueCount];
        dependsOnWrt[graph.InputIds[wrt]] = true;
        foreach (var node in nodes)
        {
            if (OpTable.Rules[node.OpType].Kind == OpKind.Constant) continue;
            if (node.Inputs.Any(i => i >= 0 && dependsOnWrt[i]))
                foreach (var o in node.Outputs.Where(o => o >= 0)) dependsOnWrt[o] = true;
        }
        var feedsOf = new bool[graph.ValueCount];
        foreach (var o in of) feedsOf[graph.OutputIds[o]] = true;
        var carries = new bool[nodes.Length];
        var read = new bool[graph.ValueCount];
        string wrtName = graph.Inputs[wrt].Name;
        for (int k = nodes.Length - 1; k >= 0; k--)
        {
            var node = nodes[k];
            if (!node.Outputs.Any(o => o >= 0 && feedsOf[o])) continue;
            foreach (var i in node.Inputs.Where(i => i >= 0)) feedsOf[i] = true;
            carries[k] = node.Inputs.Any(i => i >= 0 && dependsOnWrt[i]);
            if (carries[k])
                foreach (var id in node.Inputs.Concat(node.Outputs).Where(id => id >= 0)) read[id] = true;
            var rule = OpTable.Rules[node.OpType];
            foreach (var i in rule.NonDifferentiableInputs.Where(i => i < node.Inputs.Length && node.Inputs[i] >= 0 && dependsOnWrt[node.Inputs[i]]))
                throw new InvalidRequestException(
                    $"derivatives with respect to '{wrtName}' are not supported by this model: {node} takes its input {i} " +
                    $"('{graph.ValueNames[node.Inputs[i]]}') from '{wrtName}', and {node.OpType} carries no derivative through that input");
        }
        return new DerivativePath(carries, dependsOnWrt, read);
    }
}
