using System.Net;
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

        var binary = Body(reference);
        binary["outputs"] = new JsonArray(new JsonObject { ["name"] = "y", ["parameters"] = new JsonObject { ["binary_data"] = true } });
        await Refused(HttpStatusCode.BadRequest, "the binary tensor data extension is not served", "mlp_tanh", binary);

        var notJson = await _http.PostAsync("/v2/models/mlp_tanh/infer", new StringContent("{\"inputs\": [", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, notJson.StatusCode);
        Assert.StartsWith("the request body is not valid JSON", await ErrorOf(notJson));

        // JSON whose structure parses but whose strings are not UTF-8 (found by fuzzing: it was INTERNAL).
        var latin1 = await _http.PostAsync("/v2/models/mlp_tanh/infer", new ByteArrayContent(Encoding.Latin1.GetBytes("{\"inputs\": [], \"id\": \"caf\xe9\"}")));
        Assert.Equal(HttpStatusCode.BadRequest, latin1.StatusCode);
        Assert.StartsWith("the request body is not valid UTF-8", await ErrorOf(latin1));

        // Another server's parameters are not ours to refuse.
        var foreign = Body(reference);
        foreign["parameters"] = new JsonObject { ["priority"] = 1 };
        Assert.Single(Outputs(await Infer("mlp_tanh", foreign)));
    }

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
