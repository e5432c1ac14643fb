using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Grpc.Core;
using JacService.Jac.Load;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Bench;

/// <summary>
/// A new version taking over under steady load (issue 14): 16 closed-loop callers (jac's load generator) send
/// single-sample Jacobians of mlp_tanh with an empty version to a server polling its repository; after the warm-up and
/// a quiet stretch, version 2 is written with its COMPLETE marker. Every call's send time, latency and answering
/// version are kept, so the windows are exact: before (the stretch before the folder is in), during (calls sent from
/// the folder in to the last call answered by version 1, when version 1 is freed) and after. Then, on a quiet server,
/// the first calls after READY against warm ones, with and without Models:Warmup.
/// </summary>
internal static class TakeoverBench
{
    private const string Model = "mlp_tanh";

    /// <summary>One call: when it was sent and answered (Stopwatch ticks), which version answered (0: it failed).</summary>
    private readonly record struct Call(long Sent, long Answered, int Version);

    /// <summary>One window of a round: its length and what the calls sent in it saw.</summary>
    public sealed record Window(string Name, double Seconds, long Calls, long Failed, double PerSecond, double P50, double P99);

    public sealed record Round(int Number, string LoadBefore, string LoadAfter, Window Before, Window During, Window After,
        double ReadySeconds, long FailedInRun, double FirstNewMs, string Slowest);

    public static async Task<string> RunAsync(string root, int rounds, int concurrency, double warmup, double before, double after,
        double pollSeconds, double maxLoad, string[] serverArgs)
    {
        var text = new StringBuilder();
        void Line(string line = "")
        {
            text.AppendLine(line);
            Console.Error.WriteLine(line);
        }
        Line($"Take-over under load: {Model} single-sample Jacobians, {concurrency} closed-loop callers (jac's load generator) with an empty version,");
        Line($"Models:PollSeconds={pollSeconds.ToString(CultureInfo.InvariantCulture)}, version policy latest 1, warm-up {warmup} s, " +
             $"version 2 written with {RepositoryMarker} {before} s later; windows by send time" +
             (serverArgs.Length > 0 ? $"; server args: {string.Join(' ', serverArgs)}" : ""));
        Line();
        Line("| round | load avg before / after | window | seconds | calls | failed | calls/s | p50 ms | p99 ms |");
        Line("|---:|---|---|---:|---:|---:|---:|---:|---:|");
        var results = new List<Round>();
        for (int n = 1; n <= rounds; n++)
        {
            string load = await WaitForQuiet(maxLoad);
            var round = await RunRound(root, n, load, concurrency, warmup, before, after, pollSeconds, serverArgs);
            results.Add(round);
            foreach (var w in new[] { round.Before, round.During, round.After })
                Line(string.Create(CultureInfo.InvariantCulture,
                    $"| {n} | {(w.Name == "before" ? $"{round.LoadBefore} / {round.LoadAfter}" : "")} | {w.Name} | {w.Seconds:F2} | {w.Calls} | {w.Failed} | {w.PerSecond:F0} | {w.P50:F2} | {w.P99:F2} |"));
        }
        Line();
        Line("| round | folder in → first answer by v2 (s) | during (s) | failed calls in the whole run | p99 during / before | calls/s during / before | first v2 answer ms (p50 before) |");
        Line("|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in results)
            Line(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Number} | {r.ReadySeconds:F2} | {r.During.Seconds:F2} | {r.FailedInRun} | {r.During.P99 / r.Before.P99:F2} | {r.During.PerSecond / r.Before.PerSecond:F2} | {r.FirstNewMs:F2} ({r.Before.P50:F2}) |"));
        Line();
        foreach (var r in results) Line($"Round {r.Number}, slowest calls sent during the swap: {r.Slowest}");
        double Median(Func<Round, double> f) => results.Select(f).Order().ElementAt(results.Count / 2);
        Line();
        Line(string.Create(CultureInfo.InvariantCulture,
            $"Medians of {rounds}: calls/s before {Median(r => r.Before.PerSecond):F0}, during {Median(r => r.During.PerSecond):F0}, after {Median(r => r.After.PerSecond):F0}; " +
            $"p50 ms {Median(r => r.Before.P50):F2} / {Median(r => r.During.P50):F2} / {Median(r => r.After.P50):F2}; " +
            $"p99 ms {Median(r => r.Before.P99):F2} / {Median(r => r.During.P99):F2} / {Median(r => r.After.P99):F2}; " +
            $"p99 during / before {Median(r => r.During.P99 / r.Before.P99):F2}; swap window {Median(r => r.During.Seconds):F2} s; " +
            $"failed calls {results.Sum(r => r.FailedInRun)} in all"));
        Line();

        Line("First calls after READY on a quiet server (one caller, explicit version): first call / median of 20 warm ones, over 10 take-overs");
        Line();
        Line("| Models:Warmup | method | first call ms (median, max) | warm median ms | factor (median, max) |");
        Line("|---|---|---:|---:|---:|");
        foreach (bool warm in new[] { true, false })
        {
            await WaitForQuiet(maxLoad);
            foreach (var row in await FirstCalls(root, warm, pollSeconds, serverArgs)) Line(row);
        }
        return text.ToString();
    }

    private const string RepositoryMarker = "COMPLETE";

    /// <summary>Waits (up to 10 minutes) until the 1-minute load average is at most <paramref name="maxLoad"/>; the load seen.</summary>
    private static async Task<string> WaitForQuiet(double maxLoad)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var fields = File.ReadAllText("/proc/loadavg").Split(' ');
            double now = double.Parse(fields[0], CultureInfo.InvariantCulture);
            if (now <= maxLoad || clock.Elapsed.TotalMinutes > 10)
            {
                if (now > maxLoad) Console.Error.WriteLine($"load average still {now} after 10 minutes; running anyway");
                return $"{fields[0]} {fields[1]} {fields[2]}";
            }
            Console.Error.WriteLine($"load average {fields[0]} > {maxLoad}: waiting");
            await Task.Delay(TimeSpan.FromSeconds(15));
        }
    }

    private static string LoadAverage() => string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));

    private static string NewRepository(string root, int version)
    {
        var repository = Path.Combine(Path.GetTempPath(), "jacservice-takeover-" + Guid.NewGuid().ToString("N")[..8]);
        ScaledVersions.Write(Fixture(root), Path.Combine(repository, Model), version);
        File.WriteAllText(Path.Combine(repository, Model, "config.json"), """{ "versionPolicy": { "latest": 1 } }""");
        return repository;
    }

    private static string Fixture(string root) => Path.Combine(root, "tests", "fixtures", "models", ScaledVersions.Fixture, "1", "model.onnx");

    private static async Task<Round> RunRound(string root, int number, string load, int concurrency, double warmup, double before,
        double after, double pollSeconds, string[] serverArgs)
    {
        var repository = NewRepository(root, 1);
        try
        {
            using var server = ServerUnderTest.Start(root, repository, [$"--Models:PollSeconds={pollSeconds.ToString(CultureInfo.InvariantCulture)}", .. serverArgs]);
            using var channel = JacService.Client.JacServiceChannel.Create($"http://127.0.0.1:{server.Port}");
            var client = new JacobianService.JacobianServiceClient(channel);
            await server.WaitUntilReady(client);

            // One request per caller (different inputs); each caller's sender records its own calls, so no lock is needed.
            var calls = Enumerable.Range(0, concurrency).Select(_ => new List<Call>(1 << 16)).ToArray();
            var senders = Enumerable.Range(0, concurrency).Select(i =>
            {
                var rng = new Random(i);
                var x = new Tensor { Shape = { 32 } };
                x.Data.AddRange(Enumerable.Range(0, 32).Select(_ => (float)(rng.NextDouble() * 2 - 1)));
                var request = new JacobianRequest { Model = Model, Inputs = { ["x"] = x } };
                return (Func<CallOptions, Task>)(async o =>
                {
                    long sent = Stopwatch.GetTimestamp();
                    try
                    {
                        var answer = await client.JacobianAsync(request, o);
                        calls[i].Add(new Call(sent, Stopwatch.GetTimestamp(), int.Parse(answer.Version, CultureInfo.InvariantCulture)));
                    }
                    catch (RpcException)
                    {
                        calls[i].Add(new Call(sent, Stopwatch.GetTimestamp(), 0));
                        throw;
                    }
                });
            }).ToArray();
            // Long enough for the warm-up, the quiet stretch, a swap of a few seconds and the whole after window.
            double total = warmup + before + 5 + after;
            var plan = new LoadPlan("jacobian", Model, "bench", OpenLoop: false, Ramp.Constant(concurrency), concurrency, Connections: 1,
                Requests: null, TimeSpan.FromSeconds(total), Rows: 1, Timeout: TimeSpan.FromSeconds(20), senders);
            var run = new LoadRunner(plan).RunAsync(null, CancellationToken.None);

            await Task.Delay(TimeSpan.FromSeconds(warmup + before));
            ScaledVersions.Write(Fixture(root), Path.Combine(repository, Model), 2);
            long folderIn = Stopwatch.GetTimestamp();
            var report = await run;
            string loadAfter = LoadAverage();

            var all = calls.SelectMany(c => c).ToList();
            // Version 1 is freed when its last call has answered (its lease is released just before).
            long freed = all.Where(c => c.Version == 1).Max(c => c.Answered);
            var firstNew = all.Where(c => c.Version == 2).MinBy(c => c.Answered);
            if (firstNew.Version != 2) throw new InvalidOperationException("version 2 never answered: it did not take over within the run");
            long f = Stopwatch.Frequency;
            var beforeWindow = Measure("before", all, folderIn - (long)(before * f), folderIn);
            var duringWindow = Measure("during", all, folderIn, freed + 1);
            var afterWindow = Measure("after", all, freed + 1, Math.Min(freed + 1 + (long)(after * f), all.Max(c => c.Sent) + 1));
            // Where the slow calls of the swap sit: sent how long after the folder was in, answered by which version.
            string slowest = string.Join(", ", all.Where(c => c.Sent >= folderIn && c.Sent <= freed).OrderByDescending(c => c.Answered - c.Sent).Take(8)
                .Select(c => string.Create(CultureInfo.InvariantCulture, $"{(c.Answered - c.Sent) * 1000.0 / f:F1} ms (sent +{(c.Sent - folderIn) * 1000.0 / f:F0} ms, v{c.Version})")));
            return new Round(number, load, loadAfter, beforeWindow, duringWindow, afterWindow, (firstNew.Answered - folderIn) / (double)f,
                report.Errors, (firstNew.Answered - firstNew.Sent) * 1000.0 / f, slowest);
        }
        finally
        {
            Directory.Delete(repository, recursive: true);
        }
    }

    private static Window Measure(string name, List<Call> all, long from, long to)
    {
        var sent = all.Where(c => c.Sent >= from && c.Sent < to).ToList();
        var latencies = sent.Where(c => c.Version > 0).Select(c => (c.Answered - c.Sent) * 1000.0 / Stopwatch.Frequency).Order().ToArray();
        double seconds = (to - from) / (double)Stopwatch.Frequency;
        double Percentile(double p) => latencies.Length == 0 ? double.NaN : latencies[Math.Min(latencies.Length - 1, (int)Math.Ceiling(p * latencies.Length) - 1)];
        return new Window(name, seconds, sent.Count, sent.Count(c => c.Version == 0), latencies.Length / seconds, Percentile(0.50), Percentile(0.99));
    }

    /// <summary>
    /// Ten take-overs on an otherwise idle server: as soon as GetModel says version k is READY, one Jacobian, one
    /// Predict and one BatchJacobian of version k, then 20 more of each; the first against the median of the rest.
    /// </summary>
    private static async Task<List<string>> FirstCalls(string root, bool warmup, double pollSeconds, string[] serverArgs)
    {
        var repository = NewRepository(root, 1);
        try
        {
            using var server = ServerUnderTest.Start(root, repository,
                [$"--Models:PollSeconds={pollSeconds.ToString(CultureInfo.InvariantCulture)}", $"--Models:Warmup={warmup}", .. serverArgs]);
            using var channel = JacService.Client.JacServiceChannel.Create($"http://127.0.0.1:{server.Port}");
            var client = new JacobianService.JacobianServiceClient(channel);
            await server.WaitUntilReady(client);
            var rng = new Random(7);
            Tensor RandomTensor(params long[] shape)
            {
                var t = new Tensor { Shape = { shape } };
                t.Data.AddRange(Enumerable.Range(0, (int)shape.Aggregate(1L, (p, d) => p * d)).Select(_ => (float)(rng.NextDouble() * 2 - 1)));
                return t;
            }
            var (one, three) = (RandomTensor(32), RandomTensor(3, 32));
            var methods = new (string Name, Func<string, Task> Call)[]
            {
                ("Jacobian", v => client.JacobianAsync(new JacobianRequest { Model = Model, Version = v, Inputs = { ["x"] = one } }).ResponseAsync),
                ("Predict", v => client.PredictAsync(new PredictRequest { Model = Model, Version = v, Inputs = { ["x"] = three } }).ResponseAsync),
                ("BatchJacobian", v => client.BatchJacobianAsync(new BatchJacobianRequest { Model = Model, Version = v, Inputs = { ["x"] = three } }).ResponseAsync),
            };
            // The client's own first calls (its JIT, the connection) are paid here, on version 1, before any take-over.
            for (int i = 0; i < 50; i++)
                foreach (var m in methods) await m.Call("1");

            var first = methods.ToDictionary(m => m.Name, _ => new List<double>());
            var warm = methods.ToDictionary(m => m.Name, _ => new List<double>());
            for (int k = 2; k <= 11; k++)
            {
                ScaledVersions.Write(Fixture(root), Path.Combine(repository, Model), k);
                string version = k.ToString(CultureInfo.InvariantCulture);
                while (!await IsReady(client, version)) await Task.Delay(1);
                foreach (var m in methods) first[m.Name].Add(await Time(() => m.Call(version)));
                var times = methods.ToDictionary(m => m.Name, _ => new List<double>());
                for (int i = 0; i < 20; i++)
                    foreach (var m in methods) times[m.Name].Add(await Time(() => m.Call(version)));
                foreach (var m in methods) warm[m.Name].Add(MedianOf(times[m.Name]));
                Directory.Delete(Path.Combine(repository, Model, (k - 1).ToString(CultureInfo.InvariantCulture)), recursive: true);
            }
            return methods.Select(m =>
            {
                var factors = first[m.Name].Zip(warm[m.Name], (a, b) => a / b).ToList();
                return string.Create(CultureInfo.InvariantCulture,
                    $"| {warmup.ToString().ToLowerInvariant()} | {m.Name} | {MedianOf(first[m.Name]):F2}, {first[m.Name].Max():F2} | {MedianOf(warm[m.Name]):F3} | {MedianOf(factors):F1}x, {factors.Max():F1}x |");
            }).ToList();
        }
        finally
        {
            Directory.Delete(repository, recursive: true);
        }
    }

    private static async Task<bool> IsReady(JacobianService.JacobianServiceClient client, string version)
    {
        try
        {
            return (await client.GetModelAsync(new GetModelRequest { Model = Model, Version = version })).State == "READY";
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return false;
        }
    }

    private static async Task<double> Time(Func<Task> call)
    {
        long start = Stopwatch.GetTimestamp();
        await call();
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    private static double MedianOf(List<double> values) => values.Order().ElementAt(values.Count / 2);
}
