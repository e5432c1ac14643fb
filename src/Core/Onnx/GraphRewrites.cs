using JacService.Core.Ops;
using static TorchSharp.torch;

namespace JacService.Core.Onnx;

/// <summary>
/// Rewrites of a loaded graph that compute the same function, and the same derivatives of every order, in fewer
/// passes over memory (Engine:GraphRewrites; ONNX Runtime folds BatchNormalization into Conv at its basic level too):
/// <list type="bullet">
/// <item>an inference BatchNormalization after a Conv is folded into the Conv's weights and bias, computed in float64;</item>
/// <item>MaxPool(Relu(x)) becomes Relu(MaxPool(x)): max and Relu commute exactly, the first maximum of a window is
/// the same cell before and after Relu wherever Relu's slope there is not zero, and Relu then runs on the pooled
/// tensor, a quarter of the size for a 2×2 pool.</item>
/// </list>
/// Only values no request can name change: graph inputs and outputs keep their ids, a value is rewritten only when one
/// node reads it, and nodes keep their names (errors still name the file's nodes). On small_cnn the two cut a Vjp
/// of 256 rows by ~15 % (docs/benchmarks.md, "Graph rewrites").
/// </summary>
public static class GraphRewrites
{
    /// <summary>The rewritten graph, which takes over <paramref name="graph"/>'s initializers, or the same graph when no rewrite applies.</summary>
    /// <param name="applied">One line per rewrite, naming its nodes.</param>
    public static ModelGraph Apply(ModelGraph graph, List<string> applied)
    {
        var editor = new Editor(graph);
        for (int k = 0; k < editor.Nodes.Count; k++)
        {
            if (editor.Nodes[k] is not { } node) continue;
            string? done = node.OpType switch
            {
                "BatchNormalization" => FoldIntoConv(editor, k),
                "Relu" => PoolBeforeRelu(editor, k),
                _ => null,
            };
            if (done is not null) applied.Add(done);
        }
        return applied.Count == 0 ? graph : editor.Build();
    }

    private static string? FoldIntoConv(Editor e, int k)
    {
        var bn = e.Nodes[k]!;
        // The shapes the reader lets through: an input or output it names "" is absent (-1), and only what the rewrite
        // reads is required here.
        if (bn.Inputs.Length < 5 || bn.Outputs is not [>= 0, ..]) return null;
        int convOutput = bn.Inputs[0];
        if (e.Producer(convOutput) is not { } c || e.Nodes[c] is not { OpType: "Conv", Inputs.Length: >= 2 } conv) return null;
        if (e.IsGraphOutput(convOutput) || e.Uses(convOutput) != 1) return null;
        if (e.Initializer(conv.Inputs[1]) is not { } w || w.dim() < 3) return null;
        Tensor? b = conv.Inputs.Length > 2 && conv.Inputs[2] >= 0 ? e.Initializer(conv.Inputs[2]) : null;
        if (conv.Inputs.Length > 2 && conv.Inputs[2] >= 0 && b is null) return null;
        var p = bn.Inputs[1..5].Select(e.Initializer).ToArray();
        long channels = w.size(0);
        if (p.Any(t => t is null || t.numel() != channels) || b is { } bias && bias.numel() != channels) return null;

        double epsilon = bn.Attributes.Float("epsilon", 1e-5f);
        Tensor weight, shift;
        using (NewDisposeScope())
        {
            var (gamma, beta, mean, variance) = (p[0]!.to_type(ScalarType.Float64), p[1]!.to_type(ScalarType.Float64),
                p[2]!.to_type(ScalarType.Float64), p[3]!.to_type(ScalarType.Float64));
            var factor = gamma / variance.Plus(epsilon).sqrt();
            long[] perChannel = [channels, .. Enumerable.Repeat(1L, (int)w.dim() - 1)];
            weight = (w.to_type(ScalarType.Float64) * factor.reshape(perChannel)).to_type(w.dtype).MoveToOuterDisposeScope();
            var before = b is null ? zeros_like(mean) : b.to_type(ScalarType.Float64).reshape(channels);
            shift = ((before - mean) * factor).Plus(beta).to_type(w.dtype).MoveToOuterDisposeScope();
        }
        int weightId = e.AddInitializer($"{e.Name(conv.Inputs[1])}*{bn.Name}", weight);
        int shiftId = e.AddInitializer($"{(b is null ? conv.Name + ".bias" : e.Name(conv.Inputs[2]))}*{bn.Name}", shift);
        e.Replace(c, new GraphNode
        {
            Index = c, Name = conv.Name, OpType = "Conv", Attributes = conv.Attributes,
            Inputs = [conv.Inputs[0], weightId, shiftId], Outputs = [bn.Outputs[0]],
        });
        e.Remove(k);
        return $"folded {bn} into {conv}";
    }

    private static string? PoolBeforeRelu(Editor e, int k)
    {
        var relu = e.Nodes[k]!;
        // A fuzzed file left Relu without its input (absent, -1): moving the MaxPool before it would give the MaxPool none.
        if (relu.Inputs is not [>= 0, ..] || relu.Outputs is not [var activated, ..]) return null;
        if (e.IsGraphOutput(activated) || e.Uses(activated) != 1 || e.Consumer(activated) is not { } m) return null;
        var pool = e.Nodes[m]!;
        // An Indices output (refused at load today) would see the ties Relu makes among a window's non-positive cells.
        if (pool.OpType != "MaxPool" || pool.Inputs is not [var pooledInput, ..] || pooledInput != activated
            || pool.Outputs is not [>= 0, ..] || pool.Outputs.Skip(1).Any(o => o >= 0)) return null;
        int pooled = e.AddValue($"{e.Name(pool.Outputs[0])} before {relu.Name}");
        e.Replace(k, new GraphNode
        {
            Index = k, Name = pool.Name, OpType = pool.OpType, Attributes = pool.Attributes, Inputs = [relu.Inputs[0]], Outputs = [pooled],
        });
        e.Replace(m, new GraphNode
        {
            Index = m, Name = relu.Name, OpType = relu.OpType, Attributes = relu.Attributes, Inputs = [pooled], Outputs = [pool.Outputs[0]],
        });
        return $"moved {pool} before {relu}";
    }

    /// <summary>The graph being rewritten: nodes by position (null once removed), values, and who reads each.</summary>
    private sealed class Editor
    {
        private readonly ModelGraph _graph;
        private readonly List<string> _names;
        private readonly Dictionary<int, Tensor> _initializers;
        private readonly HashSet<int> _outputs;
        private readonly List<List<int>> _readers = [];
        private readonly List<int> _producer = [];

        public List<GraphNode?> Nodes { get; }

        public Editor(ModelGraph graph)
        {
            _graph = graph;
            _names = [.. graph.ValueNames];
            _initializers = new Dictionary<int, Tensor>(graph.Initializers);
            _outputs = [.. graph.OutputIds];
            Nodes = [.. graph.Nodes];
            foreach (var _ in _names) { _readers.Add([]); _producer.Add(-1); }
            for (int k = 0; k < Nodes.Count; k++) Index(k, Nodes[k]!, add: true);
        }

        private void Index(int k, GraphNode node, bool add)
        {
            foreach (var i in node.Inputs.Where(i => i >= 0))
                if (add) _readers[i].Add(k); else _readers[i].Remove(k);
            foreach (var o in node.Outputs.Where(o => o >= 0)) _producer[o] = add ? k : -1;
        }

        public string Name(int id) => _names[id];
        public bool IsGraphOutput(int id) => _outputs.Contains(id);
        // An absent value (-1, a name "" the reader lets through) has no readers and no producer: a rewrite asking about one
        // finds nothing to rewrite instead of indexing past the lists.
        public int Uses(int id) => id >= 0 ? _readers[id].Count : 0;
        public int? Consumer(int id) => id >= 0 && _readers[id].Count == 1 ? _readers[id][0] : null;
        public int? Producer(int id) => id >= 0 && _producer[id] >= 0 ? _producer[id] : null;
        public Tensor? Initializer(int id) => _initializers.GetValueOrDefault(id);

        public int AddValue(string name)
        {
            _names.Add(name);
            _readers.Add([]);
            _producer.Add(-1);
            return _names.Count - 1;
        }

        public int AddInitializer(string name, Tensor value)
        {
            int id = AddValue(name);
            _initializers[id] = value;
            return id;
        }

        public void Replace(int k, GraphNode node)
        {
            Index(k, Nodes[k]!, add: false);
            Nodes[k] = node;
            Index(k, node, add: true);
        }

        public void Remove(int k)
        {
            Index(k, Nodes[k]!, add: false);
            Nodes[k] = null;
        }

        /// <summary>
        /// The graph with the surviving nodes renumbered in order (each rewrite keeps the order topological), and without
        /// the initializers no node reads any more.
        /// </summary>
        public ModelGraph Build()
        {
            var nodes = Nodes.OfType<GraphNode>().Select((n, k) => new GraphNode
            {
                Index = k, Name = n.Name, OpType = n.OpType, Attributes = n.Attributes, Inputs = n.Inputs, Outputs = n.Outputs,
            }).ToArray();
            var read = nodes.SelectMany(n => n.Inputs).ToHashSet();
            var readBefore = _graph.Nodes.SelectMany(n => n.Inputs).ToHashSet();
            foreach (var id in _graph.Initializers.Keys.Where(id => readBefore.Contains(id) && !read.Contains(id)))
            {
                _initializers[id].Dispose();
                _initializers.Remove(id);
            }
            return new ModelGraph
            {
                Inputs = _graph.Inputs,
                Outputs = _graph.Outputs,
                Opset = _graph.Opset,
                ComputeType = _graph.ComputeType,
                ValueNames = [.. _names],
                InputIds = _graph.InputIds,
                OutputIds = _graph.OutputIds,
                Nodes = nodes,
                Initializers = _initializers,
                Structure = _graph.Structure,
            };
        }
    }
}
