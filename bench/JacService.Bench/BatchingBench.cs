using System.Diagnostics;
using System.Globalization;
using HdrHistogram;
using JacService.Protos.V1;

namespace JacService.Bench;

/// <summary>
/// Many concurrent callers each sending single-sample Jacobian requests for one model, with the micro-batcher on
/// (server defaults) and off (Batching:MaxBatchSize=1), over a range of concurrency levels, in one run.
/// </summary>
internal static class BatchingBench
{
    public sealed record Point(string Mode, int Concurrency, double PerSecond, double P50, double P95, double P99, double MeanBatch);

    public static async Task<List<Point>> RunAsync(string root, string model, int[] levels, double seconds, string[] serverArgs)
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
                var point = await Measure(client, model, mode, concurrency, seconds);
                points.Add(point);
                Console.Error.WriteLine(Row(point));
            }
            if (mode == "on") points.Add(await RpcCeiling(client, model, levels.Max(), seconds));
        }
        return points;
    }

    public static async Task<Point> Measure(JacobianService.JacobianServiceClient client, string model, string mode, int concurrency, double seconds)
    {
        var requests = Enumerable.Range(0, concurrency).Select(i =>
        {
            var rng = new Random(i);
            var x = new Tensor { Shape = { 32 } };
            x.Data.AddRange(Enumerable.Range(0, 32).Select(_ => (float)(rng.NextDouble() * 2 - 1)));
            return new JacobianRequest { Model = model, Inputs = { ["x"] = x } };
        }).ToArray();

        async Task<(long Count, LongHistogram Latency)> Loop(JacobianRequest request, TimeSpan duration)
        {
            var histogram = new LongHistogram(TimeStamp.Seconds(10), 3);
            long count = 0;
            var end = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
            while (Stopwatch.GetTimestamp() < end)
            {
                long start = Stopwatch.GetTimestamp();
                await client.JacobianAsync(request);
                histogram.RecordValue(Stopwatch.GetTimestamp() - start);
                count++;
            }
            return (count, histogram);
        }

        await Task.WhenAll(requests.Select(r => Loop(r, TimeSpan.FromSeconds(Math.Min(1, seconds))))); // warm-up
        var before = (await client.GetModelAsync(new GetModelRequest { Model = model })).Batching;
        var clock = Stopwatch.StartNew();
        var results = await Task.WhenAll(requests.Select(r => Task.Run(() => Loop(r, TimeSpan.FromSeconds(seconds)))));
        double elapsed = clock.Elapsed.TotalSeconds;
        var after = (await client.GetModelAsync(new GetModelRequest { Model = model })).Batching;

        var all = new LongHistogram(TimeStamp.Seconds(10), 3);
        foreach (var r in results) all.Add(r.Latency);
        double Ms(double percentile) => all.GetValueAtPercentile(percentile) * 1000.0 / Stopwatch.Frequency;
        double batches = after.Batches - before.Batches;
        return new Point(mode, concurrency, results.Sum(r => r.Count) / elapsed, Ms(50), Ms(95), Ms(99),
            batches > 0 ? (after.Rows - before.Rows) / batches : 0);
    }

    /// <summary>GetModel calls (no tensor work at all): what the RPC path alone allows on this machine.</summary>
    private static async Task<Point> RpcCeiling(JacobianService.JacobianServiceClient client, string model, int concurrency, double seconds)
    {
        long count = 0;
        var end = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(_ => Task.Run(async () =>
        {
            while (Stopwatch.GetTimestamp() < end)
            {
                await client.GetModelAsync(new GetModelRequest { Model = model });
                Interlocked.Increment(ref count);
            }
        })));
        var point = new Point("GetModel (no compute)", concurrency, count / clock.Elapsed.TotalSeconds, double.NaN, double.NaN, double.NaN, double.NaN);
        Console.Error.WriteLine(Row(point));
        return point;
    }

    public static string Header =>
        "| batching | concurrency | Jacobians/s | p50 ms | p95 ms | p99 ms | mean batch |\n|---|---:|---:|---:|---:|---:|---:|";

    public static string Row(Point p) => string.Create(CultureInfo.InvariantCulture,
        $"| {p.Mode} | {p.Concurrency} | {p.PerSecond:F0} | {p.P50:F3} | {p.P95:F3} | {p.P99:F3} | {p.MeanBatch:F1} |");
}
