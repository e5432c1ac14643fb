using JacService.Core.Models;
using JacService.Core.Onnx.Proto;
using JacService.Testing;
using static JacService.Core.Tests.HostileModels;

namespace JacService.Core.Tests;

/// <summary>
/// Each model limit, at its default, refuses a model built to break it, with the limit's setting, what was allowed and
/// what the file holds or would make; nothing the file declares is allocated first.
/// </summary>
public class HostileModelTests
{
    public static TheoryData<string> Cases => new(All.Select(c => c.Name));

    [Theory]
    [MemberData(nameof(Cases))]
    public void EachHostileModelIsRefusedWithTheLimitItBreaks(string name)
    {
        var hostile = All.Single(c => c.Name == name);

        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load(name, 1, hostile.Bytes, new EngineLimits()));

        Assert.Equal(hostile.Message, e.Message);
    }

    [Fact]
    public void AFileOverTheSizeLimitIsRefusedBeforeItIsRead()
    {
        var path = Path.Combine(Path.GetTempPath(), $"jacservice-huge-{Guid.NewGuid():N}.onnx");
        try
        {
            // Sparse: the file claims 1 GiB and a byte, and holds none of it on disk.
            using (var file = File.Create(path)) file.SetLength((1L << 30) + 1);

            var e = Assert.Throws<ModelLoadException>(() => ModelVersion.LoadFile("huge", 1, path, new EngineLimits()));

            Assert.Equal("the model has 1,073,741,825 bytes, over Limits:MaxModelFileMiB (1,073,741,824 bytes)", e.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void BytesOverTheSizeLimitAreRefusedBeforeTheyAreParsed()
    {
        var limits = new EngineLimits { Model = new ModelLimits { MaxFileBytes = 1000 } };

        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load("big", 1, new byte[2000], limits));

        Assert.Equal("the model has 2,000 bytes, over Limits:MaxModelFileMiB (1,000 bytes)", e.Message);
    }

    [Fact]
    public void EachLimitIsASetting()
    {
        // One under the limit each time, where the default refused it: the limit, not the model, decided.
        var raised = new EngineLimits
        {
            Model = new ModelLimits { MaxNodes = MaxNodes + 1, MaxGraphDepth = MaxGraphDepth + 1, MaxPlannedElements = 2_000_000_000_000 },
        };
        using (ModelVersion.Load("deep_chain", 1, Chain(MaxGraphDepth + 1), raised)) { }
        using (ModelVersion.Load("constant_of_shape", 1, Model([Node("Relu", "r", ["x"], "y")], inputShape: [-1, 4]), raised)) { }

        var lowered = new EngineLimits { Model = new ModelLimits { MaxNodes = 10 } };
        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load("chain", 1, Chain(11), lowered));
        Assert.Equal("the graph has 11 nodes, over Limits:MaxNodes 10", e.Message);
    }

    [Fact]
    public void TheFixtureModelsLoadAtTheTightestLimitsTheSettingsAllow()
    {
        // Limits:MaxNestingDepth may not go below 10: real models nest 7 deep (model, graph, value, type, tensor type, shape, dim).
        // A Loop body adds its node, attribute and graph, and a sequence type two more: scripted_rnn nests 12 deep.
        var tight = new EngineLimits { Model = new ModelLimits { MaxNestingDepth = 10 } };
        var loops = new EngineLimits { Model = new ModelLimits { MaxNestingDepth = 12 } };
        foreach (var name in Fixtures.Names)
            using (ModelVersion.Load(name, 1, File.ReadAllBytes(Fixtures.ModelPath(name)), name == "scripted_rnn" ? loops : tight)) { }
        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load("scripted_rnn", 1, File.ReadAllBytes(Fixtures.ModelPath("scripted_rnn")), tight));
        Assert.Contains("deeper than Limits:MaxNestingDepth 10", e.Message);
    }

    [Fact]
    public void ARequestWhoseShapesWouldPlanOverTheLimitIsRefusedBeforeItRuns()
    {
        // y = x[:, :, None] * x[:, None, :] on a dynamic axis: the caller's length decides the size, squared.
        var bytes = Model(
            [
                Node("Unsqueeze", "u", ["x", "axis2"], "u0"),
                Node("Unsqueeze", "v", ["x", "axis1"], "v0"),
                Node("Mul", "outer", ["u0", "v0"], "y"),
            ],
            inputShape: [-1, -1], initializers: [Ints("axis2", 2), Ints("axis1", 1)]);
        using var model = ModelVersion.Load("outer", 1, bytes, new EngineLimits());

        Assert.Equal([100, 100], model.OutputSampleShape([new HostTensor([1, 100], new float[100])], 0));
        var e = Assert.Throws<PlanTooLargeException>(() => model.OutputSampleShape([new HostTensor([1, 20_000], new float[20_000])], 0));

        Assert.Equal(
            $"planning one sample: node 'outer' (Mul) would make 400,000,000 elements, bringing the plan to 400,060,000, over Limits:MaxPlannedElements {MaxPlannedElements}",
            e.Message);
    }

    [Fact]
    public void ANameTooLongToQuoteIsLeftOutOfTheMessage()
    {
        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load("long", 1,
            Model([Node("Relu", new string('n', 65), ["x"], "y", new AttributeProto { Name = "note", Type = AttributeProto.Types.AttributeType.String, S = Google.Protobuf.ByteString.CopyFrom(new byte[MaxStringBytes + 1]) })]),
            new EngineLimits()));

        Assert.Equal($"graph.node[0].attribute[0] ('note').s has 65,537 bytes, over Limits:MaxStringBytes {MaxStringBytes}", e.Message);
    }
}
