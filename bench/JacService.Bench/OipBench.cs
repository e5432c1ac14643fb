using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Grpc.Net.Client;
using JacService.Core.Models;
using JacService.Protos.Inference;
using JacService.Protos.V1;

namespace JacService.Bench;

/// <summary>
/// The Open Inference Protocol's ModelInfer beside JacobianService's own RPCs on the same server in the same run: Predict
/// against ModelInfer with fp32_contents and with raw_input_contents and against the HTTP/REST binding's infer (JSON over
/// HTTP/1.1, one keep-alive connection), BatchJacobian against ModelInfer asking for the Jacobian (raw) and against the REST
/// infer asking for it, each REST call in JSON and in Triton's binary tensor data extension (inputs and outputs as bytes
/// after the JSON). The REST calls' bodies are written once, before timing, and their answers read as bytes, not parsed:
/// the client's JSON costs are its own. One caller, calls one after another, so the numbers are the cost of one call through each protocol;
/// the methods alternate over rounds and each keeps its median round. Besides wall time per call, the server's CPU time
/// per call (all its threads): on a machine shared with other work, wall time measures the neighbours as much as the
/// server, CPU time much less so.
/// </summary>
internal static class OipBench
{
    public static void Run(string[] models, int[] batches, double seconds, int rounds, double warmup, GrpcChannel channel, ServerUnderTest server)
    {
        var jac = new JacobianService.JacobianServiceClient(channel);
        var oip = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        using var rest = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{server.RestPort}") };
        var rows = new List<string>();
        var metadata = models.ToDictionary(m => m, m => jac.GetModel(new GetModelRequest { Model = m }));
        WarmUp(models, metadata, jac, oip, rest, warmup);
        foreach (var name in models)
            foreach (var batch in batches)
            {
                var info = metadata[name];
                var inputs = info.Inputs.Select(i => Inputs.Random([.. i.Shape], batch)).ToArray();
                var calls = Calls(name, info, inputs, jac, oip, rest);
                var wall = calls.ToDictionary(c => c.Name, _ => new List<double>());
                var cpu = calls.ToDictionary(c => c.Name, _ => new List<double>());
                foreach (var (_, call) in calls) call(); // plans for this batch size, AUTO's measurement
                for (int round = 0; round < rounds; round++)
                    foreach (var (method, call) in calls)
                    {
                        var (wallUs, cpuUs) = PerCall(call, seconds, server);
                        wall[method].Add(wallUs);
                        cpu[method].Add(cpuUs);
                    }
                static double Median(List<double> v) => v.Order().ElementAt(v.Count / 2);
                string Cell(string method) => $"{Median(wall[method]):F0} / {Median(cpu[method]):F0}";
                string Ratio(string a, string b) => $"{Median(cpu[a]) / Median(cpu[b]):F2}x";
                rows.Add($"| {name} | {batch} | {Cell("Predict")} | {Cell("ModelInfer")} | {Cell("ModelInfer raw")} | {Ratio("ModelInfer raw", "Predict")} | " +
                    $"{Cell("REST infer")} | {Ratio("REST infer", "Predict")} | {Cell("REST infer binary")} | {Ratio("REST infer binary", "Predict")} | " +
                    $"{Cell("BatchJacobian")} | {Cell("ModelInfer jacobian raw")} | {Ratio("ModelInfer jacobian raw", "BatchJacobian")} | " +
                    $"{Cell("REST jacobian")} | {Ratio("REST jacobian", "BatchJacobian")} | {Cell("REST jacobian binary")} | {Ratio("REST jacobian binary", "BatchJacobian")} |");
                Console.Error.WriteLine(rows[^1]);
            }
        Console.WriteLine($"ModelInfer (Open Inference Protocol) beside JacobianService's RPCs, same server, one caller; per call: wall µs / server CPU µs " +
            $"(median of {rounds} alternating rounds of {seconds.ToString(CultureInfo.InvariantCulture)} s); ratios of server CPU; machine: {Environment.ProcessorCount} vCPUs");
        Console.WriteLine();
        Console.WriteLine("| model | batch | Predict | ModelInfer (fp32_contents) | ModelInfer (raw) | raw / Predict (CPU) | REST infer (JSON) | REST / Predict (CPU) | " +
            "REST infer (binary) | binary / Predict (CPU) | BatchJacobian | ModelInfer jacobian (raw) | jacobian / BatchJacobian (CPU) | REST jacobian (JSON) | " +
            "REST / BatchJacobian (CPU) | REST jacobian (binary) | binary / BatchJacobian (CPU) |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        rows.ForEach(Console.WriteLine);
    }

    private static List<(string Name, Action Call)> Calls(string name, ModelInfo info, HostTensor[] inputs,
        JacobianService.JacobianServiceClient jac, GRPCInferenceService.GRPCInferenceServiceClient oip, HttpClient rest)
    {
        var predict = new PredictRequest { Model = name };
        var batchJacobian = new BatchJacobianRequest { Model = name, Wrt = info.Inputs[0].Name };
        var typed = new ModelInferRequest { ModelName = name };
        var raw = new ModelInferRequest { ModelName = name };
        for (int i = 0; i < inputs.Length; i++)
        {
            string input = info.Inputs[i].Name;
            predict.Inputs[input] = Inputs.ToProto(inputs[i]);
            batchJacobian.Inputs[input] = Inputs.ToProto(inputs[i]);
            typed.Inputs.Add(new ModelInferRequest.Types.InferInputTensor
            {
                Name = input, Datatype = "FP32", Shape = { inputs[i].Shape }, Contents = new InferTensorContents { Fp32Contents = { inputs[i].Data } },
            });
            raw.Inputs.Add(new ModelInferRequest.Types.InferInputTensor { Name = input, Datatype = "FP32", Shape = { inputs[i].Shape } });
            raw.RawInputContents.Add(ByteString.CopyFrom(MemoryMarshal.AsBytes(inputs[i].Data.AsSpan())));
        }
        var jacobian = raw.Clone();
        jacobian.Parameters["jacservice.derivative"] = new InferParameter { StringParam = "jacobian" };
        jacobian.Parameters["jacservice.wrt"] = new InferParameter { StringParam = info.Inputs[0].Name };
        var restPredict = RestBody(info, inputs, "", binary: false);
        var restJacobian = RestBody(info, inputs, info.Inputs[0].Name, binary: false);
        var binaryPredict = RestBody(info, inputs, "", binary: true);
        var binaryJacobian = RestBody(info, inputs, info.Inputs[0].Name, binary: true);
        void Rest((byte[] Body, int? JsonLength) body)
        {
            var request = new HttpRequestMessage(HttpMethod.Post, $"/v2/models/{name}/infer") { Content = new ByteArrayContent(body.Body) };
            if (body.JsonLength is { } length) request.Content.Headers.Add("Inference-Header-Content-Length", length.ToString(CultureInfo.InvariantCulture));
            using var response = rest.Send(request);
            response.EnsureSuccessStatusCode();
            response.Content.ReadAsByteArrayAsync().GetAwaiter().GetResult();
        }
        return
        [
            ("Predict", () => jac.Predict(predict)),
            ("ModelInfer", () => oip.ModelInfer(typed)),
            ("ModelInfer raw", () => oip.ModelInfer(raw)),
            ("REST infer", () => Rest(restPredict)),
            ("REST infer binary", () => Rest(binaryPredict)),
            ("BatchJacobian", () => jac.BatchJacobian(batchJacobian)),
            ("ModelInfer jacobian raw", () => oip.ModelInfer(jacobian)),
            ("REST jacobian", () => Rest(restJacobian)),
            ("REST jacobian binary", () => Rest(binaryJacobian)),
        ];
    }

    /// <summary>
    /// The REST binding's request for the inputs: JSON with flat data, or (<paramref name="binary"/>) JSON followed by the
    /// inputs' bytes, every output asked for as bytes, with the JSON's length for Inference-Header-Content-Length. With
    /// <paramref name="wrt"/>, asking for the Jacobian.
    /// </summary>
    private static (byte[] Body, int? JsonLength) RestBody(ModelInfo info, HostTensor[] inputs, string wrt, bool binary)
    {
        var body = new JsonObject
        {
            ["inputs"] = new JsonArray([.. inputs.Select((t, i) =>
            {
                var input = new JsonObject
                {
                    ["name"] = info.Inputs[i].Name,
                    ["shape"] = new JsonArray([.. t.Shape.Select(d => (JsonNode)d)]),
                    ["datatype"] = "FP32",
                };
                if (binary) input["parameters"] = new JsonObject { ["binary_data_size"] = 4 * t.Data.Length };
                else input["data"] = new JsonArray([.. t.Data.Select(v => (JsonNode)v)]);
                return (JsonNode)input;
            })]),
        };
        var parameters = new JsonObject();
        if (wrt.Length > 0)
        {
            parameters["jacservice.derivative"] = "jacobian";
            parameters["jacservice.wrt"] = wrt;
        }
        if (binary) parameters["binary_data_output"] = true;
        if (parameters.Count > 0) body["parameters"] = parameters;
        byte[] json = Encoding.UTF8.GetBytes(body.ToJsonString());
        if (!binary) return (json, null);
        return ([.. json, .. inputs.SelectMany(t => MemoryMarshal.AsBytes(t.Data.AsSpan()).ToArray())], json.Length);
    }

    /// <summary>Both protocols' paths through tiered JIT before anything is timed (docs/benchmarks.md, "The first 10 s after a start").</summary>
    private static void WarmUp(string[] models, Dictionary<string, ModelInfo> metadata, JacobianService.JacobianServiceClient jac,
        GRPCInferenceService.GRPCInferenceServiceClient oip, HttpClient rest, double seconds)
    {
        var calls = models.SelectMany(m => new[] { 1, 16 }.SelectMany(b =>
            Calls(m, metadata[m], metadata[m].Inputs.Select(i => Inputs.Random([.. i.Shape], b)).ToArray(), jac, oip, rest))).ToList();
        var end = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        for (int i = 0; Stopwatch.GetTimestamp() < end; i++) calls[i % calls.Count].Call();
    }

    /// <summary>Calls one after another for about <paramref name="seconds"/>: wall and server CPU microseconds per call.</summary>
    private static (double Wall, double ServerCpu) PerCall(Action call, double seconds, ServerUnderTest server)
    {
        var cpuBefore = server.CpuTime;
        long start = Stopwatch.GetTimestamp(), end = start + (long)(seconds * Stopwatch.Frequency);
        int calls = 0;
        do
        {
            call();
            calls++;
        }
        while (Stopwatch.GetTimestamp() < end);
        double wall = Stopwatch.GetElapsedTime(start).TotalMicroseconds / calls;
        return (wall, (server.CpuTime - cpuBefore).TotalMicroseconds / calls);
    }

}
