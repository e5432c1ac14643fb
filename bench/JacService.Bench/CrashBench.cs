using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Grpc.Core;
using Grpc.Health.V1;
using JacService.Client;
using JacService.Protos.V1;

namespace JacService.Bench;

/// <summary>
/// The server killed under load (issue 15): a container run with a restart policy (bench/crash_recovery.sh starts it)
/// gets <see cref="MixedTraffic"/> open loop from two clients of the client library, one with its default retries and
/// one with retries off; then the container's server process gets SIGKILL from the host, as from the kernel's OOM
/// killer or a crash. (`docker kill` would not do: Docker counts it as a manual stop and does not apply the restart
/// policy.) A third channel asks grpc.health.v1 every 25 ms; the time from the kill to the first SERVING is the gap.
/// Per client and window (calls sent before the kill, from the kill to SERVING, after), the calls, failures and
/// latencies.
/// </summary>
internal static class CrashBench
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>One call: sent and answered (seconds from the round's start) and its status.</summary>
    private readonly record struct Call(double Sent, double Ms, StatusCode Status);

    public static async Task<string> RunAsync(string container, int port, int rounds, double rps, double before, double after, double timeoutSeconds)
    {
        var text = new StringBuilder();
        void Line(string line = "")
        {
            text.AppendLine(line);
            Console.Error.WriteLine(line);
        }
        var address = new Uri($"http://127.0.0.1:{port}");
        var retrying = new JacServiceClientOptions { Address = address, Timeout = TimeSpan.FromSeconds(timeoutSeconds) };
        var settings = new (string Name, JacServiceClientOptions Options)[]
        {
            ("no retries", new JacServiceClientOptions { Address = address, Timeout = retrying.Timeout, MaxAttempts = 1 }),
            ("retries", retrying),
            ("retries until deadline", new JacServiceClientOptions { Address = address, Timeout = retrying.Timeout, RetryUntilDeadline = true }),
        };
        Line(string.Create(Inv, $"Crash recovery: container {container} (restart policy {Docker("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", container)}), " +
            $"mixed calls at {rps:F0}/s from each of three clients of the client library (no retries: MaxAttempts 1; retries: the defaults, MaxAttempts " +
            $"{retrying.MaxAttempts}, backoff {retrying.InitialBackoff.TotalMilliseconds:F0} ms x{retrying.BackoffMultiplier} up to {retrying.MaxBackoff.TotalSeconds:F0} s; " +
            $"and those with RetryUntilDeadline), call timeout {timeoutSeconds:F0} s; " +
            $"SIGKILL {before:F0} s in, {after:F0} s measured after SERVING"));
        Line();
        Line("| round | load avg | kill → SERVING (s) | client | window | calls | failed | p50 ms | p99 ms | max ms |");
        Line("|---:|---|---:|---|---|---:|---:|---:|---:|---:|");
        var gaps = new List<double>();
        var failedTotals = settings.ToDictionary(c => c.Name, _ => 0L);
        for (int round = 1; round <= rounds; round++)
        {
            var channels = settings.Select(c => JacServiceChannel.Create(c.Options)).ToList();
            using var healthChannel = JacServiceChannel.Create(address.ToString());
            var clients = settings.Select((c, i) =>
                (c.Name, Traffic: new MixedTraffic(new JacServiceClient(new JacobianService.JacobianServiceClient(channels[i]), c.Options), c.Options.Timeout))).ToArray();
            var health = new Health.HealthClient(healthChannel);
            await WaitServing(health, TimeSpan.FromSeconds(120));
            string load = SoakBench.LoadAverage();

            var clock = Stopwatch.StartNew();
            using var stop = new CancellationTokenSource();
            var records = clients.Select(_ => new ConcurrentBag<Call>()).ToArray();
            var senders = clients.Select((c, i) => Send(c.Traffic, rps, clock, records[i], stop.Token)).ToArray();

            await Task.Delay(TimeSpan.FromSeconds(before));
            int pid = int.Parse(Docker("inspect", "-f", "{{.State.Pid}}", container), Inv);
            double killedAt = clock.Elapsed.TotalSeconds;
            Process.GetProcessById(pid).Kill();
            // The old process's last answer must not count: first see it down, then up.
            await WaitDown(health);
            double servingAt = await WaitServing(health, TimeSpan.FromSeconds(120), clock);
            gaps.Add(servingAt - killedAt);
            await Task.Delay(TimeSpan.FromSeconds(after));
            stop.Cancel();
            await Task.WhenAll(senders);
            channels.ForEach(c => c.Dispose());

            for (int i = 0; i < clients.Length; i++)
            {
                var calls = records[i].ToList();
                failedTotals[clients[i].Name] += calls.Count(c => c.Status != StatusCode.OK);
                foreach (var (window, from, to) in new[] { ("before", 0.0, killedAt), ("kill → SERVING", killedAt, servingAt), ("after", servingAt, double.MaxValue) })
                {
                    var inWindow = calls.Where(c => c.Sent >= from && c.Sent < to).ToList();
                    var ms = inWindow.Select(c => c.Ms).Order().ToList();
                    double P(double p) => ms.Count == 0 ? 0 : ms[Math.Min(ms.Count - 1, (int)(p * ms.Count))];
                    var failures = inWindow.Where(c => c.Status != StatusCode.OK).GroupBy(c => c.Status).Select(g => $"{g.Key} {g.Count()}");
                    bool firstRow = i == 0 && window == "before";
                    Line(string.Create(Inv, $"| {(firstRow ? round : "")} | {(firstRow ? load : "")} | {(firstRow ? $"{servingAt - killedAt:F2}" : "")} | " +
                        $"{clients[i].Name} | {window} | {inWindow.Count} | {(failures.Any() ? string.Join(", ", failures) : "0")} | {P(0.5):F1} | {P(0.99):F1} | {(ms.Count == 0 ? 0 : ms[^1]):F0} |"));
                }
            }
        }
        Line();
        Line(string.Create(Inv, $"kill → SERVING: {string.Join(", ", gaps.Select(g => g.ToString("F2", Inv)))} s (median {gaps.Order().ElementAt(gaps.Count / 2):F2} s); " +
            $"failed calls over all rounds: {string.Join(", ", failedTotals.Select(f => $"{f.Key} {f.Value}"))}"));
        return text.ToString();
    }

    /// <summary>Open loop at <paramref name="rps"/> until stopped; each call's send time, latency and status go to <paramref name="calls"/>.</summary>
    private static async Task Send(MixedTraffic traffic, double rps, Stopwatch clock, ConcurrentBag<Call> calls, CancellationToken stop)
    {
        var pending = new List<Task>();
        double start = clock.Elapsed.TotalSeconds;
        long sent = 0;
        while (!stop.IsCancellationRequested)
        {
            long due = (long)((clock.Elapsed.TotalSeconds - start) * rps) + 1;
            for (; sent < due; sent++)
            {
                double at = clock.Elapsed.TotalSeconds;
                pending.Add(Task.Run(async () =>
                {
                    var (_, status, ms) = await traffic.CallAsync();
                    calls.Add(new Call(at, ms, status));
                }));
            }
            await Task.Delay(2);
        }
        await Task.WhenAll(pending);
    }

    /// <summary>Asks the health service every 25 ms until it says SERVING; returns when that was on <paramref name="clock"/>.</summary>
    private static async Task<double> WaitServing(Health.HealthClient health, TimeSpan limit, Stopwatch? clock = null)
    {
        var deadline = DateTime.UtcNow + limit;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                var reply = await health.CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddMilliseconds(500));
                if (reply.Status == HealthCheckResponse.Types.ServingStatus.Serving) return clock?.Elapsed.TotalSeconds ?? 0;
            }
            catch (RpcException)
            {
                // Down, or not listening yet.
            }
            await Task.Delay(25);
        }
        throw new TimeoutException($"not SERVING within {limit}");
    }

    private static async Task WaitDown(Health.HealthClient health)
    {
        for (var deadline = DateTime.UtcNow.AddSeconds(10); DateTime.UtcNow < deadline; await Task.Delay(5))
        {
            try
            {
                await health.CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddMilliseconds(500));
            }
            catch (RpcException)
            {
                return;
            }
        }
        throw new TimeoutException("the killed server still answered after 10 s");
    }

    private static string Docker(params string[] args)
    {
        var start = new ProcessStartInfo("docker") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var docker = Process.Start(start)!;
        string output = docker.StandardOutput.ReadToEnd();
        string error = docker.StandardError.ReadToEnd();
        docker.WaitForExit();
        if (docker.ExitCode != 0) throw new InvalidOperationException($"docker {string.Join(' ', args)}: {error}");
        return output.Trim();
    }
}
