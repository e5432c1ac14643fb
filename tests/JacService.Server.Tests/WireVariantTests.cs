using Google.Protobuf;
using Google.Protobuf.Reflection;
using JacService.Core.Models;
using JacService.Server.Grpc;
using Public = JacService.Protos.V1;
using Wire = JacService.Protos.V1.Wire;

namespace JacService.Server.Tests;

/// <summary>
/// The server answers with the wire variant of jacservice.proto (generated from it at build time) while clients read
/// the public messages: the two must be the same contract field for field, and a tensor written from a result array
/// must read back as the public Tensor's floats.
/// </summary>
public class WireVariantTests
{
    [Fact]
    public void EveryWireMessageHasThePublicFieldsExceptTensorDataAsBytes()
    {
        var wire = Wire.JacserviceWireReflection.Descriptor.MessageTypes;
        var pub = Public.JacserviceReflection.Descriptor.MessageTypes;
        Assert.Equal(pub.Select(m => m.Name), wire.Select(m => m.Name));
        foreach (var (p, w) in pub.Zip(wire))
        {
            Assert.Equal(Fields(p), Fields(w).Select(f => p.Name == "Tensor" && f.Name == "data" ? f with { Type = "repeated Float" } : f));
            Assert.Equal(p.NestedTypes.Select(Fields).SelectMany(f => f), w.NestedTypes.Select(Fields).SelectMany(f => f));
        }
        var data = Wire.Tensor.Descriptor.FindFieldByName("data");
        Assert.Equal((FieldType.Bytes, false), (data.FieldType, data.IsRepeated));
    }

    private sealed record Field(string Message, int Number, string Name, string Type);

    private static IEnumerable<Field> Fields(MessageDescriptor m) => m.Fields.InFieldNumberOrder().Select(f => new Field(m.Name, f.FieldNumber, f.Name,
        (f.IsRepeated ? "repeated " : "") + f.FieldType + (f.FieldType is FieldType.Message or FieldType.Enum
            ? " " + (f.FieldType == FieldType.Message ? f.MessageType.Name : f.EnumType.Name) : "")));

    [Theory]
    [InlineData(new long[] { 2, 3 }, false)]
    [InlineData(new long[] { 1, 4 }, true)]
    [InlineData(new long[] { 0, 5 }, false)]
    public void AResultWrittenAsWireBytesReadsBackAsThePublicTensor(long[] shape, bool dropBatchAxis)
    {
        var values = Enumerable.Range(0, (int)(shape[0] * shape[1])).Select(i => i * 0.25f - 1e-7f * i).ToArray();
        var response = new Wire.BatchJacobianResponse { Model = "m", Version = "1", Mode = Wire.DerivativeMode.Reverse };
        TensorMapping.Fill(response.Jacobians, new Dictionary<string, HostTensor> { ["y"] = new(shape, values) }, dropBatchAxis);

        var read = Public.BatchJacobianResponse.Parser.ParseFrom(response.ToByteArray());
        Assert.Equal(("m", "1", Public.DerivativeMode.Reverse), (read.Model, read.Version, read.Mode));
        Assert.Equal(dropBatchAxis ? shape[1..] : shape, read.Jacobians["y"].Shape);
        Assert.Equal(values, read.Jacobians["y"].Data);
        // And the public message, written, is the same bytes: the wire variant changes nothing on the wire.
        Assert.Equal(read.ToByteArray(), response.ToByteArray());
    }
}
