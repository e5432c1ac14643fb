using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using JacService.Client;
using JacService.Protos.V1;

namespace JacService.Bench;

/// <summary>
/// A long run at a fixed share of capacity (issue 15): first the capacity, as the calls per second of 64 closed-loop
/// callers sending <see cref="MixedTraffic"/>; then the same mix open loop at a fraction of it for the soak's length,
/// while the server's resident memory, threads and open file descriptors (from /proc) and GC heap (its own System.Runtime
/// metrics on /metrics) are sampled at a fixed interval into a CSV. The report gives each sampled quantity at the start
/// (after the warm-up), at the end and the drift, and every failed call by status.
/// </summary>
internal static class SoakBench
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public sealed record Sample(double T, double RssMiB, int Threads, int Fds, double GcHeapMiB, double GcCommittedMiB,
        long Calls, long Failed, double P50, double P99, string LoadAverage);

    public static async Task<string> RunAsync(string root, double rps, double fraction, int capacityCallers, double capacitySeconds,
        double seconds, double sampleSeconds, double warmup, string? csv, string[] serverArgs)
    {
        var text = new StringBuilder();
        void Line(string line = "")
        {
            text.AppendLine(line);
            Console.Error.WriteLine(line);
        }
        using var server = ServerUnderTest.Start(root, Path.Combine(root, "tests", "fixtures", "models"), serverArgs);
        var options = new JacServiceClientOptions { Address = new Uri($"http://127.0.0.1:{server.Port}") };
        using var channel = JacServiceChannel.Create(options);
        var stub = new JacobianService.JacobianServiceClient(channel);
        await server.WaitUntilReady(stub);
        var traffic = new MixedTraffic(new JacServiceClient(stub, options), TimeSpan.FromSeconds(20));
        Line($"Soak: server pid {server.ProcessId}, mixed calls ({string.Join(", ", MixedTraffic.Kinds)}; batches of {MixedTraffic.Rows} rows) " +
             $"through the client library; load average at start {LoadAverage()}" + (serverArgs.Length > 0 ? $"; server args: {string.Join(' ', serverArgs)}" : ""));

        // Tiered JIT settles in the first seconds under load (docs/benchmarks.md): the warm-up is not measured.
        await ClosedLoop(traffic, capacityCallers, warmup);
        if (rps <= 0)
        {
            var before = traffic.Totals.Ok;
            var cpu = server.CpuTime;
            var elapsed = await ClosedLoop(traffic, capacityCallers, capacitySeconds);
            double capacity = (traffic.Totals.Ok - before) / elapsed;
            Line(string.Create(Inv, $"Capacity: {capacity:F0} calls/s with {capacityCallers} closed-loop callers over {elapsed:F0} s " +
                $"({(server.CpuTime - cpu).TotalSeconds / elapsed:F2} cores of server CPU; load average {LoadAverage()})"));
            rps = Math.Round(capacity * fraction);
        }
        Line(string.Create(Inv, $"Open loop at {rps:F0} calls/s for {seconds:F0} s, sampled every {sampleSeconds:F0} s"));

        var samples = new List<Sample>();
        var latencies = new ConcurrentBag<double>();
        var failedBefore = traffic.Totals.Failed;
        var okBefore = traffic.Totals.Ok;
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(8) };
        var clock = Stopwatch.StartNew();
        var load = OpenLoop(traffic, rps, seconds, latencies);
        using (var writer = csv is null ? null : new StreamWriter(csv))
        {
            writer?.WriteLine("t_s,rss_mib,threads,fds,gc_heap_mib,gc_committed_mib,calls,failed,p50_ms,p99_ms,load_average");
            for (int n = 0; ; n++)
            {
                var sample = await Take(server.ProcessId, http, server.MetricsPort, clock.Elapsed.TotalSeconds, traffic, okBefore, failedBefore, latencies);
                samples.Add(sample);
                writer?.WriteLine(string.Create(Inv,
                    $"{sample.T:F1},{sample.RssMiB:F1},{sample.Threads},{sample.Fds},{sample.GcHeapMiB:F1},{sample.GcCommittedMiB:F1},{sample.Calls},{sample.Failed},{sample.P50:F2},{sample.P99:F2},{sample.LoadAverage}"));
                writer?.Flush();
                if (load.IsCompleted) break;
                // The last sample is taken as the load ends, wherever that falls in the interval.
                var next = (n + 1) * sampleSeconds;
                await Task.WhenAny(load, Task.Delay(TimeSpan.FromSeconds(Math.Max(0, next - clock.Elapsed.TotalSeconds))));
            }
        }
        var (sent, late) = await load;

        Line();
        Line(string.Create(Inv, $"{sent} calls sent in {clock.Elapsed.TotalSeconds:F0} s ({sent / seconds:F0}/s); {late} sent over 100 ms behind schedule; " +
            $"answered {traffic.Totals.Ok - okBefore}, failed {traffic.Totals.Failed - failedBefore}"));
        Line($"By kind (warm-up and capacity run included): {traffic.Totals.Describe()}");
        Line();
        // The first sample is taken as the load starts; the second, a sampling interval in, is the start of steady state.
        var first = samples[Math.Min(1, samples.Count - 1)];
        var last = samples[^1];
        Line("| quantity | at start | min | max | at end | drift (end - start) |");
        Line("|---|---:|---:|---:|---:|---:|");
        void Row(string name, Func<Sample, double> value, string format) =>
            Line(string.Create(Inv, $"| {name} | {value(first).ToString(format, Inv)} | {samples.Skip(1).Min(value).ToString(format, Inv)} | " +
                $"{samples.Skip(1).Max(value).ToString(format, Inv)} | {value(last).ToString(format, Inv)} | {(value(last) - value(first)).ToString("+0.0;-0.0;0", Inv)} |"));
        Row("resident memory (MiB)", s => s.RssMiB, "F1");
        Row("threads", s => s.Threads, "F0");
        Row("open file descriptors", s => s.Fds, "F0");
        Row("GC heap after last collection (MiB)", s => s.GcHeapMiB, "F1");
        Row("GC committed (MiB)", s => s.GcCommittedMiB, "F1");
        Row("p99 latency of the interval (ms)", s => s.P99, "F1");
        Line(string.Create(Inv, $"Samples at t = {first.T:F0} s and {last.T:F0} s; load average at the end {LoadAverage()}"));
        return text.ToString();
    }

    /// <summary><paramref name="callers"/> callers each sending the next call as soon as the last is answered; returns the seconds it ran.</summary>
    private static async Task<double> ClosedLoop(MixedTraffic traffic, int callers, double seconds)
    {
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, callers).Select(async _ =>
        {
            while (clock.Elapsed.TotalSeconds < seconds) await traffic.CallAsync();
        }));
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// Call n is sent at n / rps seconds, whatever the answers (so a slow server meets the same arrivals). At most 4096
    /// calls wait at once; beyond that sending falls behind, which the count of late sends shows.
    /// </summary>
    private static async Task<(long Sent, long Late)> OpenLoop(MixedTraffic traffic, double rps, double seconds, ConcurrentBag<double> latencies)
    {
        using var inFlight = new SemaphoreSlim(4096);
        var calls = new List<Task>();
        var clock = Stopwatch.StartNew();
        long sent = 0, late = 0;
        long total = (long)(rps * seconds);
        while (sent < total)
        {
            long due = Math.Min(total, (long)(clock.Elapsed.TotalSeconds * rps) + 1);
            for (; sent < due; sent++)
            {
                if (clock.Elapsed.TotalSeconds - sent / rps > 0.1) late++;
                await inFlight.WaitAsync();
                calls.Add(Task.Run(async () =>
                {
                    try
                    {
                        var (_, _, ms) = await traffic.CallAsync();
                        latencies.Add(ms);
                    }
                    finally
                    {
                        inFlight.Release();
                    }
                }));
            }
            if (calls.Count > 100_000) calls.RemoveAll(t => t.IsCompleted);
            await Task.Delay(1);
        }
        await Task.WhenAll(calls);
        return (sent, late);
    }

    private static async Task<Sample> Take(int pid, HttpClient http, int metricsPort, double t, MixedTraffic traffic, long okBefore, long failedBefore,
        ConcurrentBag<double> latencies)
    {
        long calls = traffic.Totals.Ok - okBefore + traffic.Totals.Failed - failedBefore, failed = traffic.Totals.Failed - failedBefore;
        var status = File.ReadAllLines($"/proc/{pid}/status");
        double Kb(string key) => double.Parse(status.First(l => l.StartsWith(key + ":", StringComparison.Ordinal)).Split(':')[1].Trim().Split(' ')[0], Inv);
        int fds = Directory.GetFiles($"/proc/{pid}/fd").Length;
        // A scrape that does not answer in time (the server is busy) is a gap in the GC columns, not the end of the soak.
        string metrics;
        try
        {
            metrics = await http.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics");
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            metrics = "";
        }
        var window = new List<double>();
        while (latencies.TryTake(out var ms)) window.Add(ms);
        window.Sort();
        double Percentile(double p) => window.Count == 0 ? 0 : window[Math.Min(window.Count - 1, (int)(p * window.Count))];
        return new Sample(t, Kb("VmRSS") / 1024, (int)Kb("Threads"), fds,
            Sum(metrics, "dotnet_gc_last_collection_heap_size") / (1 << 20), Sum(metrics, "dotnet_gc_last_collection_memory_committed_size") / (1 << 20),
            calls, failed,
            Percentile(0.5), Percentile(0.99), LoadAverage());
    }

    /// <summary>The sum of every series of a Prometheus metric (all GC generations, say); NaN when the metric is absent.</summary>
    private static double Sum(string metrics, string prefix)
    {
        // A line is name{labels} value [timestamp].
        var values = metrics.Split('\n').Where(l => l.StartsWith(prefix, StringComparison.Ordinal))
            .Select(l => double.Parse(l[(l.IndexOf('}') is >= 0 and var close ? close + 1 : l.IndexOf(' '))..].Trim().Split(' ')[0], Inv)).ToList();
        return values.Count == 0 ? double.NaN : values.Sum();
    }

    public static string LoadAverage() => string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
}
