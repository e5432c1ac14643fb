using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using JacService.Protos.Inference;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// The Open Inference Protocol's HTTP/REST binding on its own port (OpenInference:RestUrl), called with HttpClient and
/// JSON written here from the protocol's description: Predict and the derivatives against the fixtures' references,
/// metadata and readiness against the gRPC binding's answers, errors as HTTP statuses with the protocol's error body.
/// </summary>
[Collection(ServerCollection.Name)]
public class OpenInferenceRestTests(ServerProcess server) : IDisposable
{
    private const double Tolerance = 1e-4;

    public static TheoryData<string> Models => new(Fixtures.Names);

    public static TheoryData<string> SecondOrderModels => new(Fixtures.SecondOrderNames);

    private readonly HttpClient _http = new() { BaseAddress = new Uri($"http://127.0.0.1:{server.RestPort}") };

    public void Dispose() => _http.Dispose();

    [Theory]
    [MemberData(nameof(Models))]
    public async Task InferPredictsTheReferenceOutputs(string name)
    {
        var reference = Fixtures.Load(name);
        var version = (await server.Client.GetModelAsync(new GetModelRequest { Model = name })).Version;
        // The protocol takes tensor data flat or nested in row-major order.
        foreach (bool nested in new[] { false, true })
        {
            var body = Body(reference, nested);
            body["id"] = $"predict-{name}-{nested}";
            var response = await Infer(name, body);
            Assert.Equal((name, version, $"predict-{name}-{nested}"), ((string)response["model_name"]!, (string)response["model_version"]!, (string)response["id"]!));
            Assert.Equal(reference.Outputs.Keys, Outputs(response).Select(o => (string)o["name"]!));
            foreach (var (output, expected) in reference.Outputs)
                CompareOutput(response, output, expected, $"{name}.{output} nested={nested}");
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task InferComputesTheReferenceJacobians(string name)
    {
        var reference = Fixtures.Load(name);
        foreach (var (wrt, perOutput) in reference.Jacobians)
        {
            var body = Body(reference);
            body["parameters"] = new JsonObject { ["jacservice.derivative"] = "jacobian", ["jacservice.wrt"] = wrt };
            var response = await Infer(name, body);
            Assert.Equal([.. reference.Outputs.Keys, .. perOutput.Keys.Select(o => $"{o}__jacobian__{wrt}")], Outputs(response).Select(o => (string)o["name"]!));
            foreach (var (output, expected) in perOutput)
                CompareOutput(response, $"{output}__jacobian__{wrt}", expected, $"{name} d{output}/d{wrt}");
            Assert.Contains((string)response["parameters"]!["jacservice.mode"]!, new[] { "forward", "reverse" });
        }
    }

    [Theory]
    [MemberData(nameof(SecondOrderModels))]
    public async Task InferComputesTheReferenceHessiansAndLaplacians(string name)
    {
        var reference = Fixtures.Load(name);
        foreach (var (wrt, hessians) in reference.Hessians!)
        {
            var body = Body(reference);
            // A JSON boolean is the gRPC binding's bool_param.
            body["parameters"] = new JsonObject { ["jacservice.derivative"] = "hessian", ["jacservice.wrt"] = wrt, ["jacservice.include_jacobian"] = true };
            var response = await Infer(name, body);
            foreach (var (output, expected) in hessians)
                CompareOutput(response, $"{output}__hessian__{wrt}", expected, $"{name} hessian {output}/{wrt}", firstRows: expected.Shape[0]);
            foreach (var (output, expected) in reference.Jacobians[wrt])
                CompareOutput(response, $"{output}__jacobian__{wrt}", expected, $"{name} jacobian {output}/{wrt}");

            body = Body(reference);
            body["parameters"] = new JsonObject { ["jacservice.derivative"] = "laplacian", ["jacservice.wrt"] = wrt };
            body["outputs"] = new JsonArray([.. reference.Laplacians![wrt].Keys.Select(o => (JsonNode)new JsonObject { ["name"] = $"{o}__laplacian__{wrt}" })]);
            response = await Infer(name, body);
            Assert.Equal(reference.Laplacians[wrt].Keys.Select(o => $"{o}__laplacian__{wrt}"), Outputs(response).Select(o => (string)o["name"]!));
            foreach (var (output, expected) in reference.Laplacians[wrt])
                CompareOutput(response, $"{output}__laplacian__{wrt}", expected, $"{name} laplacian {output}/{wrt}");
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task MetadataAndReadinessMatchTheGrpcBinding(string name)
    {
        var grpc = await new GRPCInferenceService.GRPCInferenceServiceClient(server.Channel).ModelMetadataAsync(new ModelMetadataRequest { Name = name });
        var metadata = await Get($"/v2/models/{name}");
        Assert.Equal(name, (string)metadata["name"]!);
        Assert.Equal(grpc.Platform, (string)metadata["platform"]!);
        Assert.Equal(grpc.Versions, metadata["versions"]!.AsArray().Select(v => (string)v!));
        Assert.Equal(grpc.Properties["version"], (string)metadata["properties"]!["version"]!);
        Assert.Equal(grpc.Inputs.Select(Signature), metadata["inputs"]!.AsArray().Select(Signature));
        Assert.Equal(grpc.Outputs.Select(Signature), metadata["outputs"]!.AsArray().Select(Signature));
        string version = grpc.Properties["version"];
        Assert.Equal(version, (string)(await Get($"/v2/models/{name}/versions/{version}"))["properties"]!["version"]!);

        Assert.Equal(HttpStatusCode.OK, (await _http.GetAsync($"/v2/models/{name}/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await _http.GetAsync($"/v2/models/{name}/versions/{version}/ready")).StatusCode);
        // The protocol's health answers: 200 for true, a 4xx for false.
        Assert.Equal(HttpStatusCode.BadRequest, (await _http.GetAsync($"/v2/models/{name}/versions/987654/ready")).StatusCode);
    }

    [Fact]
    public async Task TheServerIsLiveReadyAndNamesItsExtension()
    {
        Assert.Equal(HttpStatusCode.OK, (await _http.GetAsync("/v2/health/live")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await _http.GetAsync("/v2/health/ready")).StatusCode);
        var metadata = await Get("/v2");
        Assert.Equal("jacservice", (string)metadata["name"]!);
        Assert.NotEmpty((string)metadata["version"]!);
        Assert.Contains("jacservice_derivatives", metadata["extensions"]!.AsArray().Select(e => (string)e!));
        Assert.Contains("binary_tensor_data", metadata["extensions"]!.AsArray().Select(e => (string)e!));
        Assert.Equal(HttpStatusCode.BadRequest, (await _http.GetAsync("/v2/models/no_such_model/ready")).StatusCode);
    }

    [Fact]
    public async Task ErrorsAreTheGrpcBindingsStatusesAsHttpStatuses()
    {
        var reference = Fixtures.Load("mlp_tanh");
        await Refused(HttpStatusCode.NotFound, "model 'no_such_model' not found", "no_such_model", Body(reference));
        await Refused(HttpStatusCode.NotFound, "version 987654", "mlp_tanh/versions/987654", Body(reference));
        var missing = await _http.GetAsync("/v2/models/no_such_model");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Contains("model 'no_such_model' not found", await ErrorOf(missing));

        var wrongCount = Body(reference);
        wrongCount["inputs"]![0]!["shape"] = new JsonArray(2, 32);
        await Refused(HttpStatusCode.BadRequest, "input 'x' has 96 values in data; its shape [2, 32] takes 64", "mlp_tanh", wrongCount);

        var wrongShape = Body(reference);
        wrongShape["inputs"]![0]!["shape"] = new JsonArray(6, 16);
        await Refused(HttpStatusCode.BadRequest, "expected shape [B, 32], got [6, 16]", "mlp_tanh", wrongShape);

        var text = Body(reference);
        text["inputs"]![0]!["data"]![5] = "0.5";
        await Refused(HttpStatusCode.BadRequest, "input 'x' has \"0.5\" at value 5 of its data; expected a finite number (FP32)", "mlp_tanh", text);

        var typo = Body(reference);
        typo["input"] = typo["inputs"]!.DeepClone();
        await Refused(HttpStatusCode.BadRequest, "the request has a key \"input\"", "mlp_tanh", typo);

        var badParameter = Body(reference);
        badParameter["parameters"] = new JsonObject { ["jacservice.derivative"] = "jacobian", ["jacservice.wtr"] = "x" };
        await Refused(HttpStatusCode.BadRequest, "unknown parameter 'jacservice.wtr'", "mlp_tanh", badParameter);

        var binaryWithoutHeader = BinaryBody(reference).Json;
        await Refused(HttpStatusCode.BadRequest, "input 'x' has binary_data_size, but the request has no Inference-Header-Content-Length header", "mlp_tanh", binaryWithoutHeader);

        var notJson = await _http.PostAsync("/v2/models/mlp_tanh/infer", new StringContent("{\"inputs\": [", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, notJson.StatusCode);
        Assert.StartsWith("the request body is not valid JSON", await ErrorOf(notJson));

        // A compressed body is refused by its encoding, not parsed as JSON that fails.
        var gzipped = new ByteArrayContent(new byte[] { 0x1f, 0x8b, 8, 0 });
        gzipped.Headers.ContentEncoding.Add("gzip");
        var compressed = await _http.PostAsync("/v2/models/mlp_tanh/infer", gzipped);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, compressed.StatusCode);
        Assert.Equal("identity", compressed.Headers.GetValues("Accept-Encoding").Single());
        Assert.Equal("the request body has Content-Encoding 'gzip', which is not served; send it uncompressed", await ErrorOf(compressed));

        // JSON whose structure parses but whose strings are not UTF-8 (found by fuzzing: it was INTERNAL).
        var latin1 = await _http.PostAsync("/v2/models/mlp_tanh/infer", new ByteArrayContent(Encoding.Latin1.GetBytes("{\"inputs\": [], \"id\": \"caf\xe9\"}")));
        Assert.Equal(HttpStatusCode.BadRequest, latin1.StatusCode);
        Assert.StartsWith("the request body is not valid UTF-8", await ErrorOf(latin1));

        // Triton's timeout (microseconds before the request is computed): 1 µs has passed by the time the batcher takes it.
        var expired = Body(reference);
        expired["parameters"] = new JsonObject { ["timeout"] = 1 };
        await Refused(HttpStatusCode.GatewayTimeout, "the deadline passed after", "mlp_tanh", expired);
        var negative = Body(reference);
        negative["parameters"] = new JsonObject { ["timeout"] = -1 };
        await Refused(HttpStatusCode.BadRequest, "parameter timeout must be an int64_param of 0 or more microseconds", "mlp_tanh", negative);

        // Another server's parameters are not ours to refuse.
        var foreign = Body(reference);
        foreign["parameters"] = new JsonObject { ["priority"] = 1 };
        Assert.Single(Outputs(await Infer("mlp_tanh", foreign)));
    }

    /// <summary>
    /// Triton's binary tensor data extension, as its HTTP client uses it by default: every input's float32 bytes after the
    /// JSON and every output's bytes after the answer's, on every fixture, against the references; the framing headers.
    /// </summary>
    [Theory]
    [MemberData(nameof(Models))]
    public async Task BinaryTensorDataInAndOutGivesTheReferenceJacobians(string name)
    {
        var reference = Fixtures.Load(name);
        foreach (var (wrt, perOutput) in reference.Jacobians)
        {
            var (json, binary) = BinaryBody(reference);
            json["model_name"] = name;
            json["parameters"] = new JsonObject { ["jacservice.derivative"] = "jacobian", ["jacservice.wrt"] = wrt, ["binary_data_output"] = true };
            var (response, outputs) = await InferBinary(name, json, binary);
            foreach (var (output, expected) in reference.Outputs)
                Compare.Close(expected, ShapeOf(response, output), outputs[output], Tolerance, $"{name}.{output}");
            foreach (var (output, expected) in perOutput)
                Compare.Close(expected, ShapeOf(response, $"{output}__jacobian__{wrt}"), outputs[$"{output}__jacobian__{wrt}"], Tolerance, $"{name} d{output}/d{wrt}");
        }
    }

    /// <summary>
    /// One input in binary and the others in JSON, one output in binary and the others in JSON ("binary_data" per output
    /// over "binary_data_output"), in the order the request names the outputs.
    /// </summary>
    [Fact]
    public async Task BinaryAndJsonTensorsMixInOneCall()
    {
        var reference = Fixtures.Load("two_inputs");
        var (json, binary) = BinaryBody(reference);
        var inputs = json["inputs"]!.AsArray();
        var second = inputs[1]!.AsObject();
        second.Remove("parameters");
        second["data"] = new JsonArray([.. reference.Inputs[(string)second["name"]!].Floats.Select(f => (JsonNode)f)]);
        int firstBytes = 4 * reference.Inputs[(string)inputs[0]!["name"]!].Floats.Length;
        string wrt = reference.Jacobians.Keys.First(), jacobian = $"y__jacobian__{wrt}";
        json["parameters"] = new JsonObject { ["binary_data_output"] = true, ["jacservice.derivative"] = "jacobian", ["jacservice.wrt"] = wrt };
        json["outputs"] = new JsonArray(
            new JsonObject { ["name"] = jacobian },
            new JsonObject { ["name"] = "y", ["parameters"] = new JsonObject { ["binary_data"] = false } });
        var (response, binaryOutputs) = await InferBinary("two_inputs", json, binary[..firstBytes]);
        Assert.Equal([jacobian, "y"], Outputs(response).Select(o => (string)o["name"]!));
        Assert.Equal([jacobian], binaryOutputs.Keys);
        Compare.Close(reference.Jacobians[wrt]["y"], ShapeOf(response, jacobian), binaryOutputs[jacobian], Tolerance, jacobian);
        CompareOutput(response, "y", reference.Outputs["y"], "y");
    }

    [Fact]
    public async Task BinaryFramingMistakesAreRefusedSayingWhatWasExpected()
    {
        var (json, binary) = BinaryBody(Fixtures.Load("mlp_tanh"));
        byte[] head = Encoding.UTF8.GetBytes(json.ToJsonString());
        async Task Expect(string header, byte[] body, string message)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v2/models/mlp_tanh/infer") { Content = new ByteArrayContent(body) };
            request.Content.Headers.TryAddWithoutValidation("Inference-Header-Content-Length", header);
            var response = await _http.SendAsync(request);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal(message, await ErrorOf(response));
        }
        await Expect("twelve", [.. head, .. binary], "Inference-Header-Content-Length is 'twelve'; expected the length of the body's JSON in bytes");
        await Expect($"{head.Length + binary.Length + 1}", [.. head, .. binary],
            $"Inference-Header-Content-Length is {head.Length + binary.Length + 1}; the body has {head.Length + binary.Length} bytes, of which the JSON is the first");
        await Expect($"{head.Length}", [.. head, .. binary[..^4]],
            $"input 'x' has binary_data_size {binary.Length:N0}; the body has {binary.Length - 4:N0} bytes left after its JSON and the inputs before it");
        await Expect($"{head.Length}", [.. head, .. binary, 0],
            $"the body has 1 bytes after the inputs' binary data ({binary.Length:N0} bytes by their binary_data_size); send each input's bytes once");
    }

    private async Task<(JsonNode Json, Dictionary<string, float[]> Binary)> InferBinary(string model, JsonObject json, byte[] binary)
    {
        byte[] head = Encoding.UTF8.GetBytes(json.ToJsonString());
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/v2/models/{model}/infer") { Content = new ByteArrayContent([.. head, .. binary]) };
        request.Content.Headers.ContentType = new("application/octet-stream");
        request.Content.Headers.Add("Inference-Header-Content-Length", head.Length.ToString());
        var response = await _http.SendAsync(request);
        byte[] body = await response.Content.ReadAsByteArrayAsync();
        Assert.True(response.IsSuccessStatusCode, $"{model}: HTTP {(int)response.StatusCode}: {Encoding.UTF8.GetString(body)}");
        Assert.Equal("application/octet-stream", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(body.Length, response.Content.Headers.ContentLength);
        int jsonLength = int.Parse(response.Headers.GetValues("Inference-Header-Content-Length").Single());
        var answer = JsonNode.Parse(body.AsSpan(0, jsonLength))!;
        var outputs = new Dictionary<string, float[]>();
        int at = jsonLength;
        foreach (var output in Outputs(answer).Where(o => o["parameters"]?["binary_data_size"] is not null))
        {
            int size = (int)output["parameters"]!["binary_data_size"]!;
            Assert.Null(output["data"]);
            outputs[(string)output["name"]!] = MemoryMarshal.Cast<byte, float>(body.AsSpan(at, size)).ToArray();
            at += size;
        }
        Assert.Equal(body.Length, at);
        return (answer, outputs);
    }

    /// <summary>The reference inputs as FP32 tensors of the binary tensor data extension: the JSON, and their bytes in order.</summary>
    private static (JsonObject Json, byte[] Binary) BinaryBody(Reference reference) => (new JsonObject
    {
        ["inputs"] = new JsonArray([.. reference.Inputs.Select(p => (JsonNode)new JsonObject
        {
            ["name"] = p.Key,
            ["shape"] = new JsonArray([.. p.Value.Shape.Select(d => (JsonNode)d)]),
            ["datatype"] = "FP32",
            ["parameters"] = new JsonObject { ["binary_data_size"] = 4 * p.Value.Floats.Length },
        })]),
    }, [.. reference.Inputs.Values.SelectMany(t => MemoryMarshal.AsBytes(t.Floats.AsSpan()).ToArray())]);

    private static long[] ShapeOf(JsonNode response, string output) =>
        [.. Outputs(response).Single(o => (string)o["name"]! == output)["shape"]!.AsArray().Select(d => (long)d!)];

    /// <summary>
    /// The REST routes answer on their port only, and that port serves nothing else: not the gRPC services, not metrics.
    /// Each call counts in jacservice_requests_total as the gRPC method it stands for.
    /// </summary>
    [Fact]
    public async Task TheRestPortServesTheProtocolOnlyAndItsCallsAreCounted()
    {
        using var metricsPort = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{server.MetricsPort}") };
        Assert.Equal(HttpStatusCode.NotFound, (await metricsPort.GetAsync("/v2/health/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await _http.GetAsync("/metrics")).StatusCode);
        var grpcOverRest = await _http.PostAsync("/jacservice.v1.JacobianService/Predict", new ByteArrayContent([0, 0, 0, 0, 0]));
        Assert.Equal(HttpStatusCode.NotFound, grpcOverRest.StatusCode);

        string Series(string metrics) => metrics.Split('\n').FirstOrDefault(l => l.StartsWith("jacservice_requests_total{", StringComparison.Ordinal)
            && l.Contains("method=\"ModelInfer\"") && l.Contains("model=\"two_inputs\"") && l.Contains("status=\"OK\"")) ?? "";
        static long Count(string line) => line.Length == 0 ? 0 : long.Parse(line[(line.LastIndexOf(' ') + 1)..]);
        long before = Count(Series(await metricsPort.GetStringAsync("/metrics")));
        await Infer("two_inputs", Body(Fixtures.Load("two_inputs")));
        // The exporter serves what it collected a moment ago: read until the call shows.
        long after = before;
        for (int attempt = 0; attempt < 50 && after == before; attempt++, await Task.Delay(100))
            after = Count(Series(await metricsPort.GetStringAsync("/metrics")));
        Assert.Equal(before + 1, after);
    }

    private async Task Refused(HttpStatusCode status, string message, string model, JsonObject body)
    {
        var response = await _http.PostAsync($"/v2/models/{model}/infer", Json(body));
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains(message, await ErrorOf(response));
    }

    private static async Task<string> ErrorOf(HttpResponseMessage response) =>
        (string)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;

    private async Task<JsonNode> Infer(string model, JsonObject body)
    {
        var response = await _http.PostAsync($"/v2/models/{model}/infer", Json(body));
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{model}: HTTP {(int)response.StatusCode}: {text}");
        return JsonNode.Parse(text)!;
    }

    private async Task<JsonNode> Get(string path)
    {
        var response = await _http.GetAsync(path);
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{path}: HTTP {(int)response.StatusCode}: {text}");
        return JsonNode.Parse(text)!;
    }

    private static StringContent Json(JsonObject body) => new(body.ToJsonString(), Encoding.UTF8, "application/json");

    /// <summary>The reference inputs as FP32 tensors, their data flat or nested along the shape.</summary>
    private static JsonObject Body(Reference reference, bool nested = false) => new()
    {
        ["inputs"] = new JsonArray([.. reference.Inputs.Select(p => (JsonNode)new JsonObject
        {
            ["name"] = p.Key,
            ["shape"] = new JsonArray([.. p.Value.Shape.Select(d => (JsonNode)d)]),
            ["datatype"] = "FP32",
            ["data"] = nested ? Nest(p.Value.Floats, p.Value.Shape) : new JsonArray([.. p.Value.Floats.Select(f => (JsonNode)f)]),
        })]),
    };

    private static JsonArray Nest(ReadOnlySpan<float> values, ReadOnlySpan<long> shape)
    {
        if (shape.Length <= 1) return new JsonArray([.. values.ToArray().Select(f => (JsonNode)f)]);
        var rows = new JsonArray();
        int per = values.Length / (int)shape[0];
        for (int i = 0; i < shape[0]; i++) rows.Add(Nest(values.Slice(i * per, per), shape[1..]));
        return rows;
    }

    private static IEnumerable<JsonNode> Outputs(JsonNode response) => response["outputs"]!.AsArray().Select(o => o!);

    private static void CompareOutput(JsonNode response, string name, RefTensor expected, string what, long? firstRows = null)
    {
        var output = Outputs(response).FirstOrDefault(o => (string)o["name"]! == name);
        Assert.True(output is not null, $"{what}: no output '{name}' among {string.Join(", ", Outputs(response).Select(o => (string)o["name"]!))}");
        Assert.Equal("FP32", (string)output["datatype"]!);
        long[] shape = [.. output["shape"]!.AsArray().Select(d => (long)d!)];
        IReadOnlyList<float> data = [.. output["data"]!.AsArray().Select(v => (float)v!)];
        if (firstRows is { } rows)
        {
            data = data.Take((int)(rows * (data.Count / shape[0]))).ToList();
            shape[0] = rows;
        }
        Compare.Close(expected, shape, data, Tolerance, what);
    }

    private static string Signature(ModelMetadataResponse.Types.TensorMetadata t) => $"{t.Name} {t.Datatype} [{string.Join(",", t.Shape)}]";

    private static string Signature(JsonNode? t) => $"{(string)t!["name"]!} {(string)t["datatype"]!} [{string.Join(",", t["shape"]!.AsArray().Select(d => (long)d!))}]";
}
