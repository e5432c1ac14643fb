using System.Runtime.InteropServices;
using Google.Protobuf;
using Grpc.Core;
using JacService.Protos.Inference;
using JacService.Protos.V1;
using JacService.Testing;
using InferInput = JacService.Protos.Inference.ModelInferRequest.Types.InferInputTensor;
using InferOutput = JacService.Protos.Inference.ModelInferResponse.Types.InferOutputTensor;

namespace JacService.Integration.Tests;

/// <summary>
/// The Open Inference Protocol on the server's port, called through stubs generated from the protocol's .proto alone
/// (src/Protos/inference/open_inference_grpc.proto; JacobianService's stubs only to ask GetModel what to expect):
/// Predict and the derivatives through ModelInfer against the fixtures' references, metadata and readiness against GetModel.
/// </summary>
[Collection(ServerCollection.Name)]
public class OpenInferenceTests(ServerProcess server)
{
    private const double Tolerance = 1e-4;

    public static TheoryData<string> Models => new(Fixtures.Names);

    public static TheoryData<string> SecondOrderModels => new(Fixtures.SecondOrderNames);

    private GRPCInferenceService.GRPCInferenceServiceClient Oip => new(server.Channel);

    [Theory]
    [MemberData(nameof(Models))]
    public async Task ModelInferPredictsTheReferenceOutputs(string name)
    {
        var reference = Fixtures.Load(name);
        var version = (await server.Client.GetModelAsync(new GetModelRequest { Model = name })).Version;
        foreach (bool raw in new[] { false, true })
        {
            var request = Request(name, reference, raw);
            request.Id = $"predict-{name}-{raw}";
            var response = await Oip.ModelInferAsync(request);
            Assert.Equal((name, version, request.Id), (response.ModelName, response.ModelVersion, response.Id));
            Assert.Equal(reference.Outputs.Keys, response.Outputs.Select(o => o.Name));
            Assert.Equal(raw ? response.Outputs.Count : 0, response.RawOutputContents.Count);
            foreach (var (output, expected) in reference.Outputs)
                CompareOutput(response, output, expected, $"{name}.{output} raw={raw}");
        }
    }

    [Fact]
    public async Task Fp64InputsAreTakenAsTheEngineComputesInFloat32()
    {
        var reference = Fixtures.Load("two_inputs");
        foreach (bool raw in new[] { false, true })
        {
            var request = new ModelInferRequest { ModelName = "two_inputs" };
            foreach (var (input, t) in reference.Inputs)
            {
                var tensor = new InferInput { Name = input, Datatype = "FP64", Shape = { t.Shape } };
                var values = t.Floats.Select(f => (double)f).ToArray();
                if (raw) request.RawInputContents.Add(ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan())));
                else tensor.Contents = new InferTensorContents { Fp64Contents = { values } };
                request.Inputs.Add(tensor);
            }
            var response = await Oip.ModelInferAsync(request);
            foreach (var (output, expected) in reference.Outputs)
                CompareOutput(response, output, expected, $"two_inputs.{output} FP64 raw={raw}");
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task ModelInferComputesTheReferenceJacobians(string name)
    {
        var reference = Fixtures.Load(name);
        foreach (var (wrt, perOutput) in reference.Jacobians)
        {
            var request = Request(name, reference, raw: true);
            request.Parameters["jacservice.derivative"] = Text("jacobian");
            request.Parameters["jacservice.wrt"] = Text(wrt);
            var response = await Oip.ModelInferAsync(request);
            // The outputs as for Predict, then one Jacobian per output ([B] ++ out_shape ++ in_shape(wrt)), in the model's order
            // (the reference files list outputs in that order).
            Assert.Equal([.. reference.Outputs.Keys, .. perOutput.Keys.Select(o => $"{o}__jacobian__{wrt}")], response.Outputs.Select(o => o.Name));
            foreach (var (output, expected) in perOutput)
                CompareOutput(response, $"{output}__jacobian__{wrt}", expected, $"{name} d{output}/d{wrt}");
            foreach (var (output, expected) in reference.Outputs)
                CompareOutput(response, output, expected, $"{name}.{output}");
            Assert.Contains(response.Parameters["jacservice.mode"].StringParam, new[] { "forward", "reverse" });
        }
    }

    [Theory]
    [InlineData("forward")]
    [InlineData("reverse")]
    public async Task ModeOfAJacobianIsTheOneAskedFor(string mode)
    {
        var reference = Fixtures.Load("two_outputs");
        var (wrt, perOutput) = reference.Jacobians.First();
        var request = Request("two_outputs", reference, raw: false);
        request.Parameters["jacservice.derivative"] = Text("jacobian");
        request.Parameters["jacservice.mode"] = Text(mode);
        request.Parameters["jacservice.of"] = Text("log_var");
        // Only the Jacobian, by its name: requested outputs pick from the outputs and the derivatives.
        request.Outputs.Add(new ModelInferRequest.Types.InferRequestedOutputTensor { Name = $"log_var__jacobian__{wrt}" });
        var response = await Oip.ModelInferAsync(request);
        Assert.Equal(mode, response.Parameters["jacservice.mode"].StringParam);
        Assert.Equal([$"log_var__jacobian__{wrt}"], response.Outputs.Select(o => o.Name));
        CompareOutput(response, $"log_var__jacobian__{wrt}", perOutput["log_var"], $"two_outputs dlog_var/d{wrt} {mode}");
    }

    [Theory]
    [MemberData(nameof(SecondOrderModels))]
    public async Task ModelInferComputesTheReferenceHessiansAndLaplacians(string name)
    {
        var reference = Fixtures.Load(name);
        foreach (var (wrt, hessians) in reference.Hessians!)
        {
            var request = Request(name, reference, raw: false);
            request.Parameters["jacservice.derivative"] = Text("hessian");
            request.Parameters["jacservice.wrt"] = Text(wrt);
            request.Parameters["jacservice.include_jacobian"] = new InferParameter { BoolParam = true };
            var response = await Oip.ModelInferAsync(request);
            // The file may hold Hessians for fewer samples than the batch (wide_classifier: 2 of 3): those are compared.
            foreach (var (output, expected) in hessians)
                CompareOutput(response, $"{output}__hessian__{wrt}", expected, $"{name} hessian {output}/{wrt}", firstRows: expected.Shape[0]);
            foreach (var (output, expected) in reference.Jacobians[wrt])
                CompareOutput(response, $"{output}__jacobian__{wrt}", expected, $"{name} jacobian {output}/{wrt}");

            request = Request(name, reference, raw: false);
            request.Parameters["jacservice.derivative"] = Text("laplacian");
            request.Parameters["jacservice.wrt"] = Text(wrt);
            response = await Oip.ModelInferAsync(request);
            foreach (var (output, expected) in reference.Laplacians![wrt])
                CompareOutput(response, $"{output}__laplacian__{wrt}", expected, $"{name} laplacian {output}/{wrt}");
            Assert.DoesNotContain(response.Outputs, o => o.Name.Contains("__jacobian__"));
        }
        if (reference.LaplaciansAxes is { } partial)
            foreach (var (wrt, axes) in partial.Axes)
            {
                var request = Request(name, reference, raw: false);
                request.Parameters["jacservice.derivative"] = Text("laplacian");
                request.Parameters["jacservice.wrt"] = Text(wrt);
                request.Parameters["jacservice.axes"] = Text(string.Join(",", axes));
                var response = await Oip.ModelInferAsync(request);
                foreach (var (output, expected) in partial.Values[wrt])
                    CompareOutput(response, $"{output}__laplacian__{wrt}", expected, $"{name} laplacian axes {output}/{wrt}");
            }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task MetadataAndReadinessMatchGetModel(string name)
    {
        var info = await server.Client.GetModelAsync(new GetModelRequest { Model = name });
        var metadata = await Oip.ModelMetadataAsync(new ModelMetadataRequest { Name = name });
        Assert.Equal(name, metadata.Name);
        Assert.Equal("onnx_onnxv1", metadata.Platform);
        Assert.Contains(info.Version, metadata.Versions);
        Assert.Equal(info.Version, metadata.Properties["version"]);
        Assert.Equal(Signatures(info.Inputs), metadata.Inputs.Select(t => (t.Name, t.Datatype, string.Join(",", t.Shape))));
        Assert.Equal(Signatures(info.Outputs), metadata.Outputs.Select(t => (t.Name, t.Datatype, string.Join(",", t.Shape))));

        Assert.Equal("READY", info.State);
        Assert.True((await Oip.ModelReadyAsync(new ModelReadyRequest { Name = name })).Ready);
        Assert.True((await Oip.ModelReadyAsync(new ModelReadyRequest { Name = name, Version = info.Version })).Ready);
        Assert.False((await Oip.ModelReadyAsync(new ModelReadyRequest { Name = name, Version = "987654" })).Ready);
    }

    [Fact]
    public async Task TheServerIsLiveReadyAndNamesItsExtension()
    {
        Assert.True((await Oip.ServerLiveAsync(new ServerLiveRequest())).Live);
        Assert.True((await Oip.ServerReadyAsync(new ServerReadyRequest())).Ready);
        var metadata = await Oip.ServerMetadataAsync(new ServerMetadataRequest());
        Assert.Equal("jacservice", metadata.Name);
        Assert.NotEmpty(metadata.Version);
        Assert.Contains("jacservice_derivatives", metadata.Extensions);
        Assert.False((await Oip.ModelReadyAsync(new ModelReadyRequest { Name = "no_such_model" })).Ready);
    }

    [Fact]
    public async Task ErrorsTakeTheStatusCodesOfJacobianService()
    {
        var reference = Fixtures.Load("mlp_tanh");
        await Refused(StatusCode.NotFound, "model 'no_such_model' not found", Request("no_such_model", reference, raw: false));
        await Refused(StatusCode.NotFound, "version 987654", Request("mlp_tanh", reference, raw: false, version: "987654"));
        var error = await Assert.ThrowsAsync<RpcException>(async () => await Oip.ModelMetadataAsync(new ModelMetadataRequest { Name = "no_such_model" }));
        Assert.Equal(StatusCode.NotFound, error.StatusCode);

        var wrongShape = Request("mlp_tanh", reference, raw: false);
        wrongShape.Inputs[0].Shape[1] = 16;
        wrongShape.Inputs[0].Contents.Fp32Contents.RemoveAt(0);
        await Refused(StatusCode.InvalidArgument, "has 95 values in fp32_contents; its shape takes 48", wrongShape);

        var shortRaw = Request("mlp_tanh", reference, raw: true);
        shortRaw.RawInputContents[0] = ByteString.CopyFrom(shortRaw.RawInputContents[0].Span[4..]);
        await Refused(StatusCode.InvalidArgument, "380 bytes of raw contents", shortRaw);

        var both = Request("mlp_tanh", reference, raw: true);
        both.Inputs[0].Contents = new InferTensorContents { Fp32Contents = { 1f } };
        await Refused(StatusCode.InvalidArgument, "use one or the other", both);

        var text = Request("mlp_tanh", reference, raw: false);
        text.Inputs[0].Datatype = "BYTES";
        await Refused(StatusCode.InvalidArgument, "datatype 'BYTES'", text);

        var typo = Request("mlp_tanh", reference, raw: false);
        typo.Parameters["jacservice.derivative"] = Text("jacobian");
        typo.Parameters["jacservice.wtr"] = Text("x");
        await Refused(StatusCode.InvalidArgument, "unknown parameter 'jacservice.wtr'", typo);

        var badWrt = Request("mlp_tanh", reference, raw: false);
        badWrt.Parameters["jacservice.derivative"] = Text("jacobian");
        badWrt.Parameters["jacservice.wrt"] = Text("no_such_input");
        await Refused(StatusCode.InvalidArgument, "no_such_input", badWrt);

        var unknownOutput = Request("mlp_tanh", reference, raw: false);
        unknownOutput.Outputs.Add(new ModelInferRequest.Types.InferRequestedOutputTensor { Name = "y__jacobian__x" });
        await Refused(StatusCode.InvalidArgument, "requested output 'y__jacobian__x' is not among this request's results: y", unknownOutput);

        // Another server's parameters are not ours to refuse.
        var foreign = Request("mlp_tanh", reference, raw: false);
        foreign.Parameters["priority"] = new InferParameter { Int64Param = 1 };
        Assert.Single((await Oip.ModelInferAsync(foreign)).Outputs);
    }

    /// <summary>
    /// Triton's "timeout" parameter (microseconds) bounds the wait before the request is computed: 1 µs has passed by the
    /// time the batcher takes the request, so it is refused as a gRPC deadline would be; 60 s leaves the call as it was.
    /// </summary>
    [Fact]
    public async Task TheTimeoutParameterIsADeadlineInTheQueue()
    {
        var reference = Fixtures.Load("mlp_tanh");
        var expired = Request("mlp_tanh", reference, raw: false);
        expired.Parameters["timeout"] = new InferParameter { Int64Param = 1 };
        await Refused(StatusCode.DeadlineExceeded, "the deadline passed after", expired);

        var ample = Request("mlp_tanh", reference, raw: false);
        ample.Parameters["timeout"] = new InferParameter { Int64Param = 60_000_000 };
        CompareOutput(await Oip.ModelInferAsync(ample), "y", reference.Outputs["y"], "timeout 60 s");

        var text = Request("mlp_tanh", reference, raw: false);
        text.Parameters["timeout"] = Text("5s");
        await Refused(StatusCode.InvalidArgument, "parameter timeout must be an int64_param of 0 or more microseconds", text);
    }

    private async Task Refused(StatusCode code, string message, ModelInferRequest request)
    {
        var error = await Assert.ThrowsAsync<RpcException>(async () => await Oip.ModelInferAsync(request));
        Assert.Equal(code, error.StatusCode);
        Assert.Contains(message, error.Status.Detail);
    }

    /// <summary>The reference inputs as FP32 tensors, in fp32_contents or in raw_input_contents.</summary>
    private static ModelInferRequest Request(string name, Reference reference, bool raw, string version = "")
    {
        var request = new ModelInferRequest { ModelName = name, ModelVersion = version };
        foreach (var (input, t) in reference.Inputs)
        {
            var tensor = new InferInput { Name = input, Datatype = "FP32", Shape = { t.Shape } };
            if (raw) request.RawInputContents.Add(ByteString.CopyFrom(MemoryMarshal.AsBytes(t.Floats.AsSpan())));
            else tensor.Contents = new InferTensorContents { Fp32Contents = { t.Floats } };
            request.Inputs.Add(tensor);
        }
        return request;
    }

    private static void CompareOutput(ModelInferResponse response, string name, RefTensor expected, string what, long? firstRows = null)
    {
        int index = response.Outputs.ToList().FindIndex(o => o.Name == name);
        Assert.True(index >= 0, $"{what}: no output '{name}' among {string.Join(", ", response.Outputs.Select(o => o.Name))}");
        InferOutput output = response.Outputs[index];
        Assert.Equal("FP32", output.Datatype);
        IReadOnlyList<float> data = response.RawOutputContents.Count > 0
            ? MemoryMarshal.Cast<byte, float>(response.RawOutputContents[index].Span).ToArray()
            : output.Contents.Fp32Contents;
        long[] shape = [.. output.Shape];
        if (firstRows is { } rows)
        {
            data = data.Take((int)(rows * (data.Count / shape[0]))).ToList();
            shape[0] = rows;
        }
        Compare.Close(expected, shape, data, Tolerance, what);
    }

    private static IEnumerable<(string, string, string)> Signatures(IEnumerable<TensorInfo> tensors) =>
        tensors.Select(t => (t.Name, t.Dtype == "float" ? "FP32" : t.Dtype.ToUpperInvariant(), string.Join(",", t.Shape)));

    private static InferParameter Text(string value) => new() { StringParam = value };
}
