using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Grpc.Core;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// The alerting and recording rules the Helm chart and the compose file ship (deploy/helm/jacservice/files): promtool's
/// checks and the rules' unit tests, and a real Prometheus evaluating them, and the Grafana dashboard's queries, on the
/// metrics of a real server whose repository holds a broken model and then a reload that fails.
/// </summary>
public sealed partial class PrometheusRulesTests
{
    private static readonly string RulesFile = Path.Combine(Fixtures.Root, "deploy", "helm", "jacservice", "files", "jacservice-rules.yaml");
    private static readonly string DashboardFile = Path.Combine(Fixtures.Root, "deploy", "helm", "jacservice", "files", "jacservice-dashboard.json");
    private static readonly string UnitTestsFile = Path.Combine(Fixtures.Root, "tests", "prometheus", "jacservice-rules.test.yaml");

    [Fact]
    public void PromtoolAcceptsTheRulesAndTheirUnitTestsPass()
    {
        var (check, checkOutput) = Promtool("check", "rules", RulesFile);
        Assert.True(check == 0, $"promtool check rules failed:\n{checkOutput}");
        var (test, testOutput) = Promtool("test", "rules", UnitTestsFile);
        Assert.True(test == 0, $"promtool test rules failed:\n{testOutput}");
    }

    [Fact]
    public void EveryAlertHasAUnitTestInWhichItFires()
    {
        var alerts = AlertName().Matches(File.ReadAllText(RulesFile)).Select(m => m.Groups[1].Value).ToList();
        var firing = FiringCase().Matches(File.ReadAllText(UnitTestsFile)).Select(m => m.Groups[1].Value).ToHashSet();
        Assert.NotEmpty(alerts);
        Assert.DoesNotContain(alerts, a => !firing.Contains(a));
    }

    [Fact]
    public async Task TheRulesEvaluateOnTheServersOwnMetrics()
    {
        await using var server = new ServerProcess
        {
            CopyFixtures = false,
            ExtraArgs = ["--Models:PollSeconds=0.2"],
            PrepareRepository = root =>
            {
                File.Copy(Fixtures.ModelPath(Traffic.Model), Path.Combine(Directory.CreateDirectory(Path.Combine(root, Traffic.Model, "1")).FullName, "model.onnx"));
                File.WriteAllBytes(Path.Combine(Directory.CreateDirectory(Path.Combine(root, "broken", "1")).FullName, "model.onnx"), [1, 2, 3, 4]);
            },
        };
        await server.InitializeAsync();
        await using var prometheus = await PrometheusProcess.Start($"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
              evaluation_interval: 1s
            rule_files: ['{RulesFile}']
            scrape_configs:
              - job_name: jacservice
                static_configs:
                  - targets: ['127.0.0.1:{server.MetricsPort}']
            """);

        // The failed loads of a model that has loaded are counted from 0, so the failure below is an increase once
        // Prometheus has seen the 0.
        await Waiting.Until(async () => await prometheus.Query($"jacservice_model_loads_total{{model=\"{Traffic.Model}\",outcome=\"failed\"}}") == 0,
            "Prometheus did not see mlp_tanh's failed loads at 0", server);
        // A config.json the server refuses: the reload fails and the version it had keeps serving.
        File.WriteAllText(Path.Combine(server.RepositoryRoot, Traffic.Model, "config.json"), """{ "derivativeMode": "sideways" }""");

        var model = $"model=\"{Traffic.Model}\"";
        var queries = new Dictionary<string, Func<double, bool>>
        {
            [$"model_method_status:jacservice_requests:rate5m{{{model},method=\"Jacobian\",status=\"OK\"}}"] = v => v > 0,
            [$"model_method_status:jacservice_requests:rate5m{{{model},method=\"Jacobian\",status=\"INVALID_ARGUMENT\"}}"] = v => v > 0,
            [$"model_method:jacservice_request_duration_seconds:p99_5m{{{model},method=\"Jacobian\"}}"] = v => v > 0,
            [$"model_kind:jacservice_batch_size:mean5m{{{model},kind=\"jacobian\"}}"] = v => v >= 1,
            [$"model_kind:jacservice_queue_wait_seconds:p99_5m{{{model},kind=\"jacobian\"}}"] = v => v >= 0,
        };
        // Scrapes come every second and rate() needs two of them with the traffic between, so the traffic goes on.
        var last = new Dictionary<string, double?>();
        string[] expected = ["JacServiceModelVersionsFailed pending", $"JacServiceModelLoadFailed firing {Traffic.Model}"];
        var alerts = new List<string>();
        for (var clock = Stopwatch.StartNew(); ; await Task.Delay(250))
        {
            await Traffic.SendJacobians(server.Client, 4);
            var mistake = await Assert.ThrowsAsync<RpcException>(() => server.Client.JacobianAsync(
                new JacobianRequest { Model = Traffic.Model, Inputs = { ["nope"] = new Tensor { Shape = { 32 }, Data = { new float[32] } } } }).ResponseAsync);
            Assert.Equal(StatusCode.InvalidArgument, mistake.StatusCode);

            foreach (var query in queries.Keys) last[query] = await prometheus.Query(query);
            alerts = [.. (await prometheus.Api("alerts")).GetProperty("alerts").EnumerateArray().Select(Describe)];
            if (queries.All(q => last[q.Key] is { } v && q.Value(v)) && expected.All(e => alerts.Any(a => a.StartsWith(e, StringComparison.Ordinal))))
                break;
            if (clock.Elapsed > TimeSpan.FromSeconds(60))
                Assert.Fail("Prometheus did not evaluate the rules as expected within 60 s:\n"
                    + string.Join('\n', queries.Keys.Select(q => $"  {q} = {last.GetValueOrDefault(q)?.ToString() ?? "(no data)"}"))
                    + $"\nalerts:\n  {string.Join("\n  ", alerts)}\nexpected among them:\n  {string.Join("\n  ", expected)}"
                    + $"\nserver log tail:\n{string.Join('\n', server.Log.Split('\n').TakeLast(20))}\nprometheus log:\n{prometheus.Log}");
        }

        // A caller's mistake is not the server's error, and every rule evaluates without an error (a label match that
        // finds two series on one side, a misspelt function).
        Assert.DoesNotContain(alerts, a => a.StartsWith("JacServiceServerErrors", StringComparison.Ordinal));
        var rules = (await prometheus.Api("rules")).GetProperty("groups").EnumerateArray().SelectMany(g => g.GetProperty("rules").EnumerateArray()).ToList();
        Assert.Equal(AlertName().Matches(File.ReadAllText(RulesFile)).Count + 4, rules.Count);
        Assert.All(rules, r => Assert.True(r.GetProperty("health").GetString() == "ok", $"{r.GetProperty("name")}: {r}"));
        // The failed version is named by its replica, and the summary says how many.
        Assert.Contains(alerts, a => a.StartsWith("JacServiceModelVersionsFailed pending", StringComparison.Ordinal)
            && a.Contains($"1 model version(s) on 127.0.0.1:{server.MetricsPort} failed to load.", StringComparison.Ordinal));

        // Every query of the dashboard evaluates on the same metrics, the variables replaced as Grafana replaces them for
        // "All"; the panels of what this test did return series (the others count refusals and stalls it did not cause;
        // the error shares are 0 where a model had calls and none failed).
        // Asked again for a while: a scrape that timed out on a busy machine leaves the gauges stale for a moment.
        int[] answered = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14];
        using var dashboard = JsonDocument.Parse(File.ReadAllText(DashboardFile));
        var panels = dashboard.RootElement.GetProperty("panels").EnumerateArray().ToList();
        Assert.Equal(14, panels.Count);
        var panelQueries = panels.SelectMany(panel => panel.GetProperty("targets").EnumerateArray().Select(target => (
            Title: panel.GetProperty("title").GetString(),
            Answered: answered.Contains(panel.GetProperty("id").GetInt32()),
            Expr: target.GetProperty("expr").GetString()!.Replace("$__rate_interval", "1m").Replace("$namespace", ".*").Replace("$model", ".*")))).ToList();
        List<string> empty = [];
        for (var clock = Stopwatch.StartNew(); clock.Elapsed < TimeSpan.FromSeconds(30); await Task.Delay(500))
        {
            empty.Clear();
            foreach (var (title, answers, expr) in panelQueries)
                if ((await prometheus.Api($"query?query={Uri.EscapeDataString(expr)}")).GetProperty("result").GetArrayLength() == 0 && answers)
                    empty.Add($"panel \"{title}\": {expr}");
            if (empty.Count == 0) break;
        }
        Assert.True(empty.Count == 0, $"no series for:\n{string.Join('\n', empty)}");
    }

    /// <summary>"NAME STATE MODEL: SUMMARY" of one alert of the API's answer.</summary>
    private static string Describe(JsonElement alert)
    {
        var labels = alert.GetProperty("labels");
        string model = labels.TryGetProperty("model", out var m) ? m.GetString()! : "";
        return $"{labels.GetProperty("alertname").GetString()} {alert.GetProperty("state").GetString()} {model}: "
            + alert.GetProperty("annotations").GetProperty("summary").GetString();
    }

    private static (int ExitCode, string Output) Promtool(params string[] args)
    {
        var start = new ProcessStartInfo(PrometheusProcess.Promtool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output + error.Result);
    }

    [GeneratedRegex(@"^\s*- alert: (\w+)", RegexOptions.Multiline)]
    private static partial Regex AlertName();

    // A case of the unit tests that expects the alert to fire: its exp_alerts list is not empty.
    [GeneratedRegex(@"alertname: (\w+)\s*\n\s*exp_alerts:\s*\n\s*- exp_labels")]
    private static partial Regex FiringCase();
}
