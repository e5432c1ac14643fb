using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Google.Protobuf;
using JacService.Core.Compiled;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Core.Onnx.Proto;
using JacService.Testing;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// A version's ONNX Runtime sessions read one copy of its weights: every float weight is held once, and no derivative
/// graph multiplies by a transposed copy of one, which ONNX Runtime would fold into a constant of that graph's own.
/// What this saves is measured in docs/benchmarks.md ("One copy of the weights per version").
/// </summary>
public class SharedWeightsTests
{
    public static TheoryData<string> FixtureNames => [.. Fixtures.Names];

    /// <summary>
    /// The weights of matrix products and convolutions are held once; constants of other ops (biases added by Add, scales,
    /// shifts) are left to each session, which may rewrite them (<see cref="AConstantOnATransposedPathIsLeftToEachSession"/>).
    /// </summary>
    [Theory]
    [MemberData(nameof(FixtureNames))]
    public void EveryWeightOfAProductIsHeldOnce(string name)
    {
        var bytes = File.ReadAllBytes(Fixtures.ModelPath(name));
        var graph = ModelProto.Parser.ParseFrom(bytes).Graph;
        var inputs = graph.Input.Select(i => i.Name).ToHashSet();
        var floats = graph.Initializer
            .Where(t => t.DataType == (int)TensorProto.Types.DataType.Float && !inputs.Contains(t.Name) && t.Dims.All(d => d > 0))
            .ToDictionary(t => t.Name, t => t.Dims.Aggregate(1L, (a, d) => a * d) * sizeof(float));
        var nodes = AllNodes(graph).ToList();
        bool onlyInProducts(string name) => nodes.Where(n => n.Input.Contains(name))
            .All(n => n.OpType is "MatMul" or "Gemm" or "Conv" or "ConvTranspose" or "LSTM" or "GRU" or "RNN");
        long all = floats.Values.Sum(), least = floats.Where(f => onlyInProducts(f.Key)).Sum(f => f.Value);

        using var weights = SharedWeights.TryFrom(Parsed(bytes), new ModelLimits());

        Assert.NotNull(weights);
        Assert.True(all > 0, $"{name} has no float weights");
        Assert.InRange(weights.Bytes, least, all);
    }

    /// <summary>
    /// The sessions read the engine's tensors where they hold the file's values, so a weight is held once for both; a
    /// weight a graph rewrite changed (a BatchNormalization folded into the Conv before it) is copied, as the engine's
    /// tensor no longer holds what the file's graph, which ONNX Runtime runs, reads.
    /// </summary>
    [Theory]
    [MemberData(nameof(FixtureNames))]
    public void TheSessionsReadTheEnginesTensorsWhereTheyHoldTheFilesValues(string name)
    {
        var bytes = File.ReadAllBytes(Fixtures.ModelPath(name));
        using var read = OnnxModelReader.Read(bytes, ScalarType.Float32, new ModelLimits());
        var applied = new List<string>();
        using var rewritten = GraphRewrites.Apply(OnnxModelReader.Read(bytes, ScalarType.Float32, new ModelLimits()), applied);

        using var asRead = SharedWeights.TryFrom(Parsed(bytes), new ModelLimits(), read.InitializerByName())!;
        using var copied = SharedWeights.TryFrom(Parsed(bytes), new ModelLimits())!;
        using var afterRewrites = SharedWeights.TryFrom(Parsed(bytes), new ModelLimits(), rewritten.InitializerByName())!;

        Assert.Equal(copied.Bytes, asRead.Bytes);
        Assert.Equal((copied.Bytes, 0L), (copied.CopiedBytes, asRead.CopiedBytes));
        Assert.Equal(copied.Bytes, afterRewrites.Bytes);
        if (applied.Any(a => a.Contains("BatchNormalization"))) Assert.InRange(afterRewrites.CopiedBytes, 1, copied.Bytes - 1);
        else Assert.Equal(0L, afterRewrites.CopiedBytes);
    }

    /// <summary>
    /// The file kept for writing derivative graphs leaves the float weights the engine holds byte for byte to its tensors
    /// (all of them as read; all but those a rewrite folded after rewrites) and parses back to what the reader parses
    /// from the file, byte for byte.
    /// </summary>
    [Theory]
    [MemberData(nameof(FixtureNames))]
    public void TheKeptFileParsesBackWholeWithTheEnginesWeightsLeftToIt(string name)
    {
        var bytes = File.ReadAllBytes(Fixtures.ModelPath(name));
        var limits = new ModelLimits();
        byte[] whole = OnnxModelReader.Parse(bytes, limits).ToByteArray();
        var applied = new List<string>();
        using var read = OnnxModelReader.Read(bytes, ScalarType.Float32, limits);
        using var rewritten = GraphRewrites.Apply(OnnxModelReader.Read(bytes, ScalarType.Float32, limits), applied);
        // The raw float weights the engine holds under the file's names (a scripted loop's body is unrolled into values of other names).
        var held = read.InitializerByName();
        long rawFloats = OnnxModelReader.Parse(bytes, limits).Graph.Initializer
            .Where(t => t.DataType == (int)TensorProto.Types.DataType.Float && held(t.Name) is not null).Sum(t => (long)t.RawData.Length);

        var asRead = KeptModel.From(Parsed(bytes), limits, held);
        var afterRewrites = KeptModel.From(Parsed(bytes), limits, rewritten.InitializerByName());

        Assert.True(rawFloats > 0, $"{name} has no raw float weights");
        Assert.InRange(asRead.Bytes, 1, bytes.Length - rawFloats);
        if (applied.Any(a => a.Contains("BatchNormalization"))) Assert.InRange(afterRewrites.Bytes, asRead.Bytes + 1, bytes.Length - 1);
        else Assert.Equal(asRead.Bytes, afterRewrites.Bytes);
        Assert.Equal(whole, asRead.Expanded().ToByteArray());
        Assert.Equal(whole, afterRewrites.Expanded().ToByteArray());
        Assert.Equal(whole, KeptModel.From(Parsed(bytes), limits, held: null).Expanded().ToByteArray());
    }

    /// <summary>
    /// The kept file gives each derivative graph the engine's weights where they are, not a copy: a copy per graph was a
    /// fresh allocation of the weights' size each (200 MB per graph of a 200 MB MLP's warm-up).
    /// </summary>
    [Fact]
    public void TheKeptFileGivesTheEnginesWeightsWithoutACopy()
    {
        var bytes = File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh"));
        var limits = new ModelLimits();
        using var read = OnnxModelReader.Read(bytes, ScalarType.Float32, limits);
        var held = read.InitializerByName();

        var given = KeptModel.From(Parsed(bytes), limits, held).Expanded().Graph.Initializer.Where(t => held(t.Name) is not null).ToList();

        Assert.NotEmpty(given);
        foreach (var tensor in given)
            Assert.True(Unsafe.AreSame(ref MemoryMarshal.GetReference(held(tensor.Name)!.bytes), ref MemoryMarshal.GetReference(tensor.RawData.Span)),
                $"{tensor.Name} is a copy");
    }

    /// <summary>
    /// A graph written from the kept file and read back by the engine (a Jacobian's graph, to be differentiated again for
    /// a Hessian) holds the engine's weights it was given as those tensors, not read into copies; its own tensors are its
    /// own, and disposing it leaves the engine's intact.
    /// </summary>
    [Fact]
    public void AGraphReadBackHoldsTheEnginesWeightsItWasGivenNotCopies()
    {
        var bytes = File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh"));
        var limits = new ModelLimits();
        using var read = OnnxModelReader.Read(bytes, ScalarType.Float32, limits);
        var held = read.InitializerByName();
        var written = KeptModel.From(Parsed(bytes), limits, held).Expanded();

        using (var back = OnnxModelReader.ReadWritten(written, ScalarType.Float32, limits, held))
        {
            var weights = back.Initializers.Select(p => (Name: back.ValueNames[p.Key], Tensor: p.Value)).Where(w => held(w.Name) is not null).ToList();
            Assert.NotEmpty(weights);
            foreach (var (name, tensor) in weights)
                Assert.True(Unsafe.AreSame(ref MemoryMarshal.GetReference(held(name)!.bytes), ref MemoryMarshal.GetReference(tensor.bytes)), $"{name} is a copy");
            using var copies = OnnxModelReader.ReadWritten(written, ScalarType.Float32, limits);
            Assert.All(copies.Initializers, p => Assert.False(Unsafe.AreSame(ref MemoryMarshal.GetReference(held(copies.ValueNames[p.Key])!.bytes),
                ref MemoryMarshal.GetReference(p.Value.bytes))));
        }
        Assert.All(read.Initializers, p => Assert.False(p.Value.IsInvalid));
        Assert.Equal(Parsed(bytes).Graph.Initializer[0].RawData.ToByteArray(), held(Parsed(bytes).Graph.Initializer[0].Name)!.bytes.ToArray());
    }

    /// <summary>The file as a version parses it once at load, for the engine, its shared weights and its kept model.</summary>
    private static ModelProto Parsed(byte[] bytes) => OnnxModelReader.ParseAsWritten(bytes, new ModelLimits());

    /// <summary>The engine's tensor for each initializer of <paramref name="graph"/>, by name: what a version gives its sessions.</summary>

    /// <summary>A graph's nodes and those of its subgraphs (Loop and If bodies read the graph's weights by name).</summary>
    private static IEnumerable<NodeProto> AllNodes(GraphProto graph) =>
        graph.Node.SelectMany(n => n.Attribute.SelectMany(a => a.G is null ? a.Graphs : [a.G, .. a.Graphs]).SelectMany(AllNodes).Prepend(n));

    /// <summary>
    /// ConvNeXt's layer scale: a [C, 1, 1] constant that two blocks multiply (the second through Identity, as PyTorch
    /// exports shared values), each a value transposed to channels-last and back. ONNX Runtime pushes the Transposes
    /// through the Muls and rewrites the constant to [1, 1, C] in place; a shared copy kept its shape, and every run
    /// failed ("Attempting to broadcast an axis by a dimension other than 1. 3 by 4"). The products' weights stay shared.
    /// </summary>
    [Fact]
    public void AConstantOnATransposedPathIsLeftToEachSession()
    {
        var g = new OnnxBuilder();
        var x = g.X(2, 4, 3, 5);
        var scale = g.W(4, 1, 1);
        var h = x;
        foreach (var blockScale in new[] { scale, g.Node("Identity", [scale]) })
        {
            var mixed = g.Node("MatMul", [g.Node("Transpose", [h], ("perm", new[] { 0, 2, 3, 1 })), g.W(4, 4)]);
            h = g.Node("Add", [g.Node("Mul", [blockScale, g.Node("Transpose", [mixed], ("perm", new[] { 0, 3, 1, 2 }))]), h]);
        }
        g.Output(h);
        var bytes = OpForwardOrtTests.OrtModel(g.ToBytes(), OnnxType.Float);

        using var model = ModelVersion.Load("layer_scale", 1, bytes, new EngineLimits { CalibrateAuto = false });
        using (var weights = SharedWeights.TryFrom(Parsed(bytes), new ModelLimits())) Assert.Equal(2 * 4 * 4 * sizeof(float), weights!.Bytes);
        Assert.Equal(("onnxruntime", ""), (model.PredictRuntime, model.PredictRuntimeNote));
        var inputs = new[] { new HostTensor([2, 4, 3, 5], g.Inputs[0].Data.Select(v => (float)v).ToArray()) };
        using var scope = NewDisposeScope();
        var served = model.Predict(inputs).Outputs.Single().Value;
        var engine = model.PredictInEngine(inputs).Outputs.Single().Value;
        Assert.Equal(engine.Shape, served.Shape);
        for (int i = 0; i < engine.Data.Length; i++) Assert.Equal(engine.Data[i], served.Data[i], 1e-4f);

        using var interpreter = ModelVersion.Load("layer_scale", 1, bytes, new EngineLimits { CompileDerivatives = false });
        var cotangents = new[] { new HostTensor([2, 4, 3, 5], Enumerable.Range(0, 120).Select(i => (float)Math.Sin(i)).ToArray()) };
        var vjp = model.Vjp(inputs, 0, [0], cotangents);
        var expected = interpreter.Vjp(inputs, 0, [0], cotangents).Jacobians.Single().Value;
        Assert.True(vjp.Compiled, Assert.Single(model.CompiledDerivatives).Note);
        var actual = vjp.Jacobians.Single().Value;
        for (int i = 0; i < expected.Data.Length; i++) Assert.Equal(expected.Data[i], actual.Data[i], 1e-4f);
    }

    /// <summary>
    /// A derivative graph's session is given the shared weights from memory, their data left out of the bytes ONNX Runtime
    /// parses (for a 200 MB model, 0.9 s per graph went to parsing and copying them), and computes what a session of the
    /// whole graph computes: optimisations that fold a weight (a Conv and its BatchNormalization) read the same values.
    /// </summary>
    [Theory]
    [MemberData(nameof(FixtureNames))]
    public void DerivativeGraphsLeaveTheSharedWeightsOutAndComputeTheSame(string name)
    {
        var bytes = File.ReadAllBytes(Fixtures.ModelPath(name));
        var limits = new EngineLimits();
        using var graph = OnnxModelReader.Read(bytes, ScalarType.Float32, limits.Model);
        if (graph.Inputs.Concat(graph.Outputs).Any(t => t.ElementType != ElementType.Float)) return;
        using var parts = new ModelParts(graph, limits);
        var held = graph.InitializerByName();
        using var weights = SharedWeights.TryFrom(Parsed(bytes), limits.Model, held)!;
        using var compiled = new CompiledDerivatives(KeptModel.From(Parsed(bytes), limits.Model, held), parts, weights);
        long[][] shapes = graph.Inputs.Select(i => (long[])[3, .. i.Shape[1..]]).ToArray();
        var rng = new Random(7);
        var inputs = shapes.Select(s => new HostTensor(s, Enumerable.Range(0, (int)HostTensor.Elements(s)).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray())).ToArray();
        string[] inputNames = graph.Inputs.Select(i => i.Name).ToArray(), outputNames = graph.Outputs.Select(o => o.Name).ToArray();

        var whole = compiled.Write(0, [0], shapes, DerivativeMode.Reverse, null);
        var leaving = compiled.Write(0, [0], shapes, DerivativeMode.Reverse, null);
        long wholeBytes = whole.Model.CalculateSize();
        CompiledDerivative.Result[] results = [new(DerivativeGraphWriter.JacobianPrefix + outputNames[0], "jac", "jac", [.. whole.OfSamples[0], .. whole.WrtSample])];
        using var fromWhole = new CompiledDerivative(whole, weights: null, inputNames, outputNames, results);
        using var fromMemory = new CompiledDerivative(leaving, weights, inputNames, outputNames, results);

        // Each shared weight that the graph reads has left: what stays is the graph and the weights not shared.
        var external = leaving.Model.Graph.Initializer.Where(t => t.ExternalData.Any(e => e.Value == OrtExternalInitializers.Location)).ToList();
        long left = external.Sum(t => t.Dims.Aggregate(1L, (a, d) => a * d) * sizeof(float));
        Assert.InRange(left, weights.Bytes * 9 / 10, weights.Bytes);
        // A weight's reference to its data: about 80 bytes.
        Assert.InRange(leaving.Model.CalculateSize(), 1, wholeBytes - left + 128 * external.Count);
        var expected = fromWhole.Run(inputs, into: null);
        var actual = fromMemory.Run(inputs, into: null);
        foreach (var (key, tensor) in expected.Outputs.Concat(expected.Derivatives))
        {
            var other = actual.Outputs.Concat(actual.Derivatives).Single(p => p.Key == key).Value;
            Assert.Equal(tensor.Shape, other.Shape);
            for (int i = 0; i < tensor.Data.Length && i < HostTensor.Elements(tensor.Shape); i++)
                Assert.True(Math.Abs(tensor.Data[i] - other.Data[i]) <= 1e-5f * (1 + Math.Abs(tensor.Data[i])), $"{name} {key}[{i}]: {other.Data[i]} from memory, {tensor.Data[i]} from the whole graph");
        }
    }

    /// <summary>
    /// A weight counts as read as ONNX Runtime counts it: a subgraph's own initializer of the same name hides it, and
    /// ONNX Runtime drops a weight only such subgraphs read before it would take the replacement (and then refuses that).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AWeightThatOnlyASubgraphsOwnInitializerHidesKeepsItsData(bool elseReadsTheGraphs)
    {
        var g = new OnnxBuilder();
        var x = g.X(2, 4);
        var w = g.W(4, 4);
        g.Output(g.Node("MatMul", [x, w]));
        var bytes = OpForwardOrtTests.OrtModel(g.ToBytes(), OnnxType.Float);
        using var weights = SharedWeights.TryFrom(Parsed(bytes), new ModelLimits())!;
        var model = ModelProto.Parser.ParseFrom(bytes);
        var weight = model.Graph.Initializer.Single(t => t.Name == w);
        GraphProto Branch(string output, bool own)
        {
            var body = new GraphProto { Name = output, Node = { new NodeProto { OpType = "MatMul", Input = { x, w }, Output = { output } } }, Output = { new ValueInfoProto { Name = output } } };
            if (own) body.Initializer.Add(weight.Clone());
            return body;
        }
        var node = model.Graph.Node.Single();
        node.OpType = "If";
        node.Input.Clear();
        node.Input.Add("cond");
        node.Attribute.Add(new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = Branch("then", own: true) });
        node.Attribute.Add(new AttributeProto { Name = "else_branch", Type = AttributeProto.Types.AttributeType.Graph, G = Branch("else", own: !elseReadsTheGraphs) });

        var left = weights.LeaveOut(model);

        Assert.Equal(elseReadsTheGraphs ? [w] : [], left.Select(l => l.Name).ToArray());
        Assert.Equal(elseReadsTheGraphs, weight.DataLocation == TensorProto.Types.DataLocation.External);
    }

    [Theory]
    [MemberData(nameof(FixtureNames))]
    public void DerivativeGraphsReadEveryWeightAsStored(string name)
    {
        var bytes = File.ReadAllBytes(Fixtures.ModelPath(name));
        var limits = new EngineLimits();
        using var graph = OnnxModelReader.Read(bytes, ScalarType.Float32, limits.Model);
        using var parts = new ModelParts(graph, limits);
        using var compiled = new CompiledDerivatives(KeptModel.From(Parsed(bytes), limits.Model, held: null), parts, weights: null);
        var initializers = ModelProto.Parser.ParseFrom(bytes).Graph.Initializer.Select(t => t.Name).ToHashSet();
        long[][] shapes = graph.Inputs.Select(i => (long[])[2, .. i.Shape[1..]]).ToArray();

        foreach (var (mode, directions) in new (DerivativeMode, long?)[] { (DerivativeMode.Forward, null), (DerivativeMode.Reverse, null), (DerivativeMode.Forward, 3), (DerivativeMode.Reverse, 3) })
        {
            var written = compiled.Write(0, [0], shapes, mode, directions).Model.Graph;
            var derivative = written.Node.Where(n => n.Output.Any(o => o.StartsWith("jac/", StringComparison.Ordinal))).ToList();
            Assert.NotEmpty(derivative);
            var transposed = derivative.Where(n => n.OpType == "Transpose" && n.Input.Any(initializers.Contains)).Select(n => n.Input[0]);
            Assert.True(!transposed.Any(), $"{name} {mode} {directions}: derivative nodes transpose the weights {string.Join(", ", transposed)}");
        }
    }
}
