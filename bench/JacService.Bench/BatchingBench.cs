using System.Globalization;
using Grpc.Core;
using Grpc.Health.V1;
using JacService.Jac.Load;
using JacService.Protos.V1;

namespace JacService.Bench;

/// <summary>
/// Many concurrent callers each sending single-sample Jacobian requests for one model, with the micro-batcher on
/// (server defaults) and off (Batching:MaxBatchSize=1), over a range of concurrency levels, in one run; with it on,
/// also as messages of one JacobianStream per caller ("on, stream").
/// </summary>
internal static class BatchingBench
{
    public sealed record Point(string Mode, int Concurrency, double PerSecond, double P50, double P95, double P99, double MeanBatch,
        double ServerCpuUs);

    public static async Task<List<Point>> RunAsync(string root, string model, int[] levels, double warmupSeconds, double seconds,
        string[] serverArgs)
    {
        var points = new List<Point>();
        foreach (var (mode, args) in new[] { ("on", serverArgs), ("off", serverArgs.Append("--Batching:MaxBatchSize=1").ToArray()) })
        {
            using var server = ServerUnderTest.Start(root, Path.Combine(root, "tests", "fixtures", "models"), args);
            using var channel = JacService.Client.JacServiceChannel.Create($"http://127.0.0.1:{server.Port}");
            var client = new JacobianService.JacobianServiceClient(channel);
            await server.WaitUntilReady(client);
            foreach (var concurrency in levels)
            {
                // A fresh server needs the long warm-up (tiered JIT); later levels only refill the pipeline.
                var warmup = concurrency == levels[0] ? warmupSeconds : Math.Min(1, seconds);
                var point = await Measure(client, server, model, mode, concurrency, warmup, seconds);
                points.Add(point);
                Console.Error.WriteLine(Row(point));
                if (mode != "on") continue;
                var streamed = await Measure(client, server, model, "on, stream", concurrency, Math.Min(1, seconds), seconds, stream: true);
                points.Add(streamed);
                Console.Error.WriteLine(Row(streamed));
            }
            if (mode != "on") continue;
            // What batching can reach at best: the same rows sent ready-made as batches of the max batch size.
            foreach (var callers in new[] { 1, 2 })
                points.Add(await Measure(client, server, model, $"pre-batched {PreBatchRows}", callers, Math.Min(1, seconds), seconds, PreBatchRows));
            points.Add(await RpcCeiling(channel, model, levels.Max(), seconds));
        }
        return points;
    }

    /// <summary>The server's default max batch size, the batch a pre-batched caller sends.</summary>
    private const int PreBatchRows = 64;

    /// <param name="rows">0: single-sample Jacobian calls; otherwise BatchJacobian calls of that many rows.</param>
    /// <param name="stream">Single samples as messages of a JacobianStream per caller, one in flight on each.</param>
    public static async Task<Point> Measure(JacobianService.JacobianServiceClient client, ServerUnderTest server, string model, string mode, int concurrency,
        double warmupSeconds, double seconds, int rows = 0, bool stream = false)
    {
        // One request per caller (different inputs), sent by jac's closed-loop load generator: worker i sends request i.
        var streams = new List<StreamSender>();
        var senders = Enumerable.Range(0, concurrency).Select(i =>
        {
            var rng = new Random(i);
            var x = new Tensor { Shape = { rows == 0 ? [32] : [rows, 32] } };
            x.Data.AddRange(Enumerable.Range(0, 32 * Math.Max(rows, 1)).Select(_ => (float)(rng.NextDouble() * 2 - 1)));
            if (rows > 0)
            {
                var batch = new BatchJacobianRequest { Model = model, Inputs = { ["x"] = x } };
                return (Func<CallOptions, Task>)(o => client.BatchJacobianAsync(batch, o).ResponseAsync);
            }
            var request = new JacobianRequest { Model = model, Inputs = { ["x"] = x } };
            if (stream)
            {
                var sender = new StreamSender(client, request);
                streams.Add(sender);
                return sender.Send;
            }
            return (Func<CallOptions, Task>)(o => client.JacobianAsync(request, o).ResponseAsync);
        }).ToArray();

        await Run(senders, "jacobian", model, concurrency, warmupSeconds);
        var before = (await client.GetModelAsync(new GetModelRequest { Model = model })).Batching;
        var cpuBefore = server.CpuTime;
        var report = await Run(senders, "jacobian", model, concurrency, seconds);
        var cpu = server.CpuTime - cpuBefore;
        var after = (await client.GetModelAsync(new GetModelRequest { Model = model })).Batching;
        foreach (var sender in streams) await sender.DisposeAsync();

        double batches = after.Batches - before.Batches;
        long jacobians = report.Ok * Math.Max(rows, 1);
        return new Point(mode, concurrency, jacobians / report.ElapsedS, report.LatencyMs["p50"], report.LatencyMs["p95"], report.LatencyMs["p99"],
            batches > 0 ? (after.Rows - before.Rows) / batches : 0, cpu.TotalMicroseconds / jacobians);
    }

    /// <summary>A closed-loop run of jac's load generator; any failed call fails the benchmark.</summary>
    private static async Task<LoadReport> Run(Func<CallOptions, Task>[] senders, string method, string model, int concurrency, double seconds)
    {
        var plan = new LoadPlan(method, model, "bench", OpenLoop: false, Ramp.Constant(concurrency), concurrency, Connections: 1,
            Requests: null, TimeSpan.FromSeconds(seconds), Rows: 1, Timeout: TimeSpan.FromSeconds(20), senders);
        var report = await new LoadRunner(plan).RunAsync(null, CancellationToken.None);
        return report.Errors == 0 ? report
            : throw new InvalidOperationException($"{report.Errors} calls failed: {string.Join("; ", report.ErrorMessages.Keys)}");
    }

    /// <summary>
    /// Health checks (no work at all): what the RPC path alone allows on this machine. Not GetModel, which now builds
    /// a ~2 KB description per call (derivative choices, history, devices) and costs the server twice a health check.
    /// </summary>
    private static async Task<Point> RpcCeiling(Grpc.Net.Client.GrpcChannel channel, string model, int concurrency, double seconds)
    {
        var health = new Health.HealthClient(channel);
        var request = new HealthCheckRequest();
        var report = await Run([o => health.CheckAsync(request, o).ResponseAsync], "health", model, concurrency, seconds);
        var point = new Point("health check (no compute)", concurrency, report.Ok / report.ElapsedS, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN);
        Console.Error.WriteLine(Row(point));
        return point;
    }

    public static string Header =>
        "| batching | concurrency | Jacobians/s | p50 ms | p95 ms | p99 ms | mean batch | server CPU µs/Jacobian |\n|---|---:|---:|---:|---:|---:|---:|---:|";

    public static string Row(Point p) => string.Create(CultureInfo.InvariantCulture,
        $"| {p.Mode} | {p.Concurrency} | {p.PerSecond:F0} | {p.P50:F3} | {p.P95:F3} | {p.P99:F3} | {p.MeanBatch:F1} | {p.ServerCpuUs:F0} |");
}
