using JacService.Integration.Tests;
using JacService.Jac.Load;
using JacService.Testing;

namespace JacService.Jac.Tests;

/// <summary>`jac load` end to end: short bounded runs against the real server, checked through the JSON report.</summary>
[Collection(ServerCollection.Name)]
public sealed class LoadTests(ServerProcess server)
{
    private async Task<LoadReport> Load(params string[] args)
    {
        var r = await JacRunner.RunAsync(["load", "--target", server.Target, "--output", "json", .. args]);
        Assert.True(r.ExitCode == 0, r.Err);
        return LoadReport.FromJson(r.Out);
    }

    private static void AssertConsistent(LoadReport report)
    {
        Assert.Equal(report.Count, report.Ok + report.Errors);
        Assert.Equal(report.Count, report.StatusCodes.Values.Sum());
        var l = report.LatencyMs;
        double[] ordered = [l["min"], l["p50"], l["p90"], l["p95"], l["p99"], l["p999"], l["max"]];
        Assert.True(ordered.Zip(ordered.Skip(1)).All(p => p.First <= p.Second), "percentiles out of order: " + string.Join(", ", ordered));
        Assert.Equal(report.Count, report.Histogram.Sum(b => b.Count));
        Assert.Equal(report.Count, report.Timeline.Sum(p => p.Ok + p.Errors));
        Assert.True(report.Rps > 0);
    }

    [Fact]
    public async Task Closed_loop_bounded_by_requests_reports_every_call_and_the_servers_batches()
    {
        var report = await Load("--method", "jacobian", "--model", "pinn", "--requests", "300", "--concurrency", "4");
        AssertConsistent(report);
        Assert.Equal(300, report.Count);
        Assert.Equal(300, report.Ok);
        Assert.Equal(300, report.StatusCodes["OK"]);
        Assert.Equal("closed", report.Mode);
        // Tests in this collection run one at a time, so the server's row counter moved by exactly our calls.
        Assert.NotNull(report.ServerBatching);
        Assert.Equal(300, report.ServerBatching!.Rows);
        Assert.InRange(report.ServerBatching.MeanBatch, 1, 4);
    }

    [Theory]
    [InlineData("jvp", "mlp_tanh")]
    [InlineData("vjp", "mlp_tanh")]
    [InlineData("vjp", "two_outputs")] // a random cotangent for each of its outputs
    public async Task Jvp_and_vjp_send_random_directions_of_the_models_shapes(string method, string model)
    {
        var report = await Load("-M", method, "-m", model, "-b", "8", "-n", "20", "-c", "2");

        AssertConsistent(report);
        Assert.Equal(20, report.Ok);
        Assert.Equal(160, report.ServerBatching!.Rows);
    }

    /// <summary>PINN solvers' calls: per-sample Hessians and Laplacians of random rows, the Laplacian over chosen axes.</summary>
    [Theory]
    [InlineData("hessian")]
    [InlineData("laplacian")]
    [InlineData("laplacian", "--axes", "0")]
    public async Task Hessian_and_laplacian_send_batches_of_random_rows(string method, params string[] extra)
    {
        var report = await Load(["-M", method, "-m", "pinn", "-b", "8", "-n", "20", "-c", "2", .. extra]);

        AssertConsistent(report);
        Assert.Equal(20, report.Ok);
        Assert.Equal(160, report.ServerBatching!.Rows);
    }

    /// <summary>The Open Inference Protocol's REST infer, tensors as binary data, Predict and the Jacobian, counted as gRPC calls are.</summary>
    [Theory]
    [InlineData("rest-predict")]
    [InlineData("rest-batch-jacobian", "--mode", "reverse")]
    public async Task Rest_methods_load_the_rest_binding_with_binary_tensor_data(string method, params string[] extra)
    {
        var report = await Load(["-M", method, "-m", "pinn", "-b", "8", "-n", "20", "-c", "2", "--rest-url", $"http://127.0.0.1:{server.RestPort}", .. extra]);

        AssertConsistent(report);
        Assert.Equal(20, report.Ok);
        Assert.Equal(160, report.ServerBatching!.Rows);
        Assert.Equal($"http://127.0.0.1:{server.RestPort}", report.Target);
    }

    [Fact]
    public async Task Rest_errors_are_counted_by_the_grpc_status_they_stand_for()
    {
        var input = Path.Combine(Fixtures.Root, "tests", "fixtures", "reference", "pinn.json");
        var r = await JacRunner.RunAsync("load", "-t", server.Target, "-m", "no_such_model", "--data", input, "-M", "rest-predict",
            "--rest-url", $"http://127.0.0.1:{server.RestPort}", "-n", "10", "-c", "2", "-o", "json");
        Assert.True(r.ExitCode == 0, r.Err);
        var report = LoadReport.FromJson(r.Out);
        AssertConsistent(report);
        Assert.Equal(10, report.StatusCodes["NotFound"]);
        Assert.Contains(report.ErrorMessages.Keys, k => k.StartsWith("NotFound: model 'no_such_model' not found", StringComparison.Ordinal));

        var missing = await JacRunner.RunAsync("load", "-t", server.Target, "-m", "pinn", "-M", "rest-predict", "-n", "1");
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("--method rest-predict needs --rest-url (the server's OpenInference:RestUrl)", missing.Err);
    }

    [Fact]
    public async Task Axes_belong_to_the_laplacian()
    {
        var r = await JacRunner.RunAsync("load", "-t", server.Target, "-M", "hessian", "-m", "pinn", "--axes", "0", "-n", "1");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("--axes is for --method laplacian", r.Err);

        // An axis outside the sample: every call refused, and the report says why.
        var report = await Load("-M", "laplacian", "-m", "pinn", "--axes", "5", "-n", "3", "-c", "1");
        Assert.Equal(3, report.StatusCodes["InvalidArgument"]);
    }

    [Fact]
    public async Task Mode_reaches_the_server_so_an_explicit_mode_leaves_AUTO_untimed()
    {
        // A batch size no other test sends: AUTO records a choice for it only when it ran.
        bool Chosen(Protos.V1.ModelInfo info) => info.DerivativeChoices.Any(c => c.Batch == 13);
        var request = new Protos.V1.GetModelRequest { Model = "relu_classifier" };

        Assert.Equal(3, (await Load("-M", "batch-jacobian", "-m", "relu_classifier", "-b", "13", "-n", "3", "-c", "1", "--mode", "forward")).Ok);
        Assert.False(Chosen(await server.Client.GetModelAsync(request)));
        Assert.Equal(3, (await Load("-M", "batch-jacobian", "-m", "relu_classifier", "-b", "13", "-n", "3", "-c", "1")).Ok);
        Assert.True(Chosen(await server.Client.GetModelAsync(request)));

        var r = await JacRunner.RunAsync("load", "-t", server.Target, "-M", "vjp", "-m", "mlp_tanh", "--mode", "forward", "-n", "1");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("--mode is for the Jacobian methods", r.Err);
    }

    [Fact]
    public async Task A_tangent_for_a_model_with_two_float_inputs_needs_wrt()
    {
        var r = await JacRunner.RunAsync("load", "-t", server.Target, "-M", "jvp", "-m", "two_inputs", "-b", "2", "-n", "3");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("2 float inputs", r.Err);
        Assert.Contains("--wrt", r.Err);

        var report = await Load("-M", "jvp", "-m", "two_inputs", "--wrt", "z", "-b", "2", "-n", "3");
        Assert.Equal(3, report.Ok);
    }

    [Fact]
    public async Task Open_loop_sends_rate_times_duration_and_writes_json_csv_and_html_files()
    {
        var dir = JacRunner.TempDir();
        var r = await JacRunner.RunAsync("load", "-t", server.Target, "-M", "batch-jacobian", "-m", "mlp_tanh", "--batch", "4",
            "--rps", "100", "--duration", "1s", "--out", Path.Combine(dir, "report.json"), "--html", Path.Combine(dir, "report.html"));
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("Latency (ms), from the intended send time", r.Out); // the summary still goes to standard output
        var report = LoadReport.FromJson(File.ReadAllText(Path.Combine(dir, "report.json")));
        AssertConsistent(report);
        Assert.Equal("open", report.Mode);
        Assert.Equal(100, report.Count);
        Assert.Equal(0, report.Errors);
        Assert.Equal(4, report.Batch);
        Assert.Equal(400, report.ServerBatching!.Rows);
        Assert.NotNull(report.SendLagMs);
        Assert.Contains("<svg", File.ReadAllText(Path.Combine(dir, "report.html")));

        r = await JacRunner.RunAsync("load", "-t", server.Target, "-M", "health", "-n", "20", "-o", "csv");
        var lines = r.Out.Trim().Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.Equal("20", lines[1].Split(',')[Array.IndexOf(LoadReport.CsvColumns, "count")]);
    }

    [Fact]
    public async Task An_open_loop_at_a_constant_rate_stops_at_the_plans_duration()
    {
        // Ramp.Constant has no end of its own (the benchmarks use it): the plan's duration must end the run.
        var plan = new LoadPlan("health", null, "none", OpenLoop: true, Ramp.Constant(200), Concurrency: 16, Connections: 1,
            Requests: null, TimeSpan.FromSeconds(0.5), Rows: 1, Timeout: TimeSpan.FromSeconds(5), [_ => Task.CompletedTask]);
        var run = new LoadRunner(plan).RunAsync(null, CancellationToken.None);
        Assert.Same(run, await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(30))));
        Assert.Equal(100, (await run).Count);
    }

    [Fact]
    public async Task Random_data_for_a_version_without_a_signature_is_refused_before_sending()
    {
        // 'garbage' is FAILED (so is a version still LOADING): no signature to draw random inputs from. Sent anyway, every
        // call was an empty request refused as INVALID_ARGUMENT (46,513 of them in one 30 s run that started too early).
        var r = await JacRunner.RunAsync("load", "-t", server.Target, "-m", "garbage", "-M", "batch-jacobian", "-b", "4", "-n", "5");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("garbage version 1 is FAILED and has no inputs to make random data for, or pass --data", r.Err);
    }

    [Fact]
    public async Task A_missing_model_gives_a_report_of_not_found_errors()
    {
        var input = Path.Combine(Fixtures.Root, "tests", "fixtures", "reference", "pinn.json");
        var r = await JacRunner.RunAsync("load", "-t", server.Target, "-m", "no_such_model", "--data", input, "-M", "predict",
            "-n", "50", "-c", "5", "-o", "json");
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("warning: model 'no_such_model' not found", r.Err);
        var report = LoadReport.FromJson(r.Out);
        AssertConsistent(report);
        Assert.Equal(50, report.Count);
        Assert.Equal(50, report.Errors);
        Assert.Equal(50, report.StatusCodes["NotFound"]);
        Assert.Contains(report.ErrorMessages.Keys, k => k.StartsWith("NotFound: model 'no_such_model' not found", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Deadlines_that_cannot_be_met_show_up_as_deadline_exceeded()
    {
        // 256 rows of small_cnn's Jacobian take tens of milliseconds even on a fast machine (a single sample takes ~1-2 ms
        // here, close enough to 1 ms that a faster CI machine could meet it), so a 1 ms deadline cannot be met.
        var report = await Load("-M", "batch-jacobian", "-b", "256", "-m", "small_cnn", "-n", "40", "-c", "8", "--timeout", "1ms");
        AssertConsistent(report);
        Assert.True(report.StatusCodes.GetValueOrDefault("DeadlineExceeded") > 0, string.Join(", ", report.StatusCodes));
    }

    [Fact]
    public async Task A_step_ramp_in_closed_loop_and_a_server_that_is_down_are_handled()
    {
        var report = await Load("-M", "get-model", "-m", "pinn", "-c", "4", "--ramp", "step", "--ramp-steps", "2", "-z", "1s");
        AssertConsistent(report);
        Assert.Equal("step", report.Ramp);

        var r = await JacRunner.RunAsync("load", "-t", "127.0.0.1:1", "-m", "pinn");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("cannot reach a JacService server", r.Err);
    }
}
