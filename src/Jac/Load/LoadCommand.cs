using JacService.Client;
using System.CommandLine;
using Grpc.Core;
using Grpc.Health.V1;
using JacService.Protos.V1;
using Spectre.Console;

namespace JacService.Jac.Load;

/// <summary>`jac load`: options, request data, the run with a progress bar, and the report in the asked formats.</summary>
public static class LoadCommand
{
    public static readonly string[] Methods = ["jacobian", "jacobian-stream", "batch-jacobian", "jvp", "vjp", "hessian", "laplacian", "predict", "get-model",
        "list-models", "health", "rest-predict", "rest-batch-jacobian"];

    private static readonly Option<string> Method = new Option<string>("--method", "-M")
    {
        Description = "RPC to load: jacobian (one sample), jacobian-stream (one sample per message, a stream per worker), batch-jacobian, jvp and vjp (one random tangent or cotangent per row), hessian and laplacian (per-sample second derivatives; --axes for the laplacian's), predict, the trivial get-model, list-models, health, or rest-predict and rest-batch-jacobian (the Open Inference Protocol's REST infer at --rest-url, tensors as binary data)",
        DefaultValueFactory = _ => "jacobian",
    }.AcceptOnlyFromAmong(Methods);
    private static readonly Option<string?> Model = new("--model", "-m") { Description = "Model name" };
    private static readonly Option<string?> RestUrl = new("--rest-url")
    {
        Description = "The server's OpenInference:RestUrl, for the rest-* methods, which carry --token or --api-key as the gRPC calls do (https: a certificate the system trusts; the signature still comes from GetModel at --target)",
    };
    private static readonly Option<string> ModelVersion = new("--model-version") { Description = "Model version; empty: the highest", DefaultValueFactory = _ => "" };
    private static readonly Option<int?> Concurrency = new("--concurrency", "-c")
    {
        Description = "Closed loop: workers (default 16). Open loop (--rps): most calls in flight (default 1024)",
    };
    private static readonly Option<int> Connections = new("--connections") { Description = "gRPC channels, used round robin; each opens a further HTTP/2 connection whenever its calls in flight reach the server's stream limit (100 on Kestrel)", DefaultValueFactory = _ => 1 };
    private static readonly Option<double?> Rps = new("--rps", "-r") { Description = "Open loop at this constant rate (requests/s), latency from the intended send time; without it: closed loop" };
    private static readonly Option<string?> Duration = new("--duration", "-z") { Description = "How long to send (10s, 2m); default 10s unless --requests is given" };
    private static readonly Option<long?> Requests = new("--requests", "-n") { Description = "How many calls to send" };
    private static readonly Option<string> RampKind = new Option<string>("--ramp")
    {
        Description = "Schedule of the rate (open loop) or of the busy workers (closed loop) over --duration",
        DefaultValueFactory = _ => "none",
    }.AcceptOnlyFromAmong("none", "linear", "step");
    private static readonly Option<double?> RampFrom = new("--ramp-from") { Description = "Starting level of the ramp (default: step: target/steps; linear: 1 worker or 0 rps)" };
    private static readonly Option<int> RampSteps = new("--ramp-steps") { Description = "Number of equal levels of a step ramp", DefaultValueFactory = _ => 5 };
    private static readonly Option<int?> Batch = new("--batch", "-b") { Description = "Rows per request for predict, batch-jacobian, jvp, vjp, hessian and laplacian with random data (default 1)" };
    private static readonly Option<string[]> Data = new("--data", "-d") { Description = "Request inputs from [NAME=]FILE (.json or .npy), as for jac predict; default: random values of the model's shape" };
    private static readonly Option<string> Wrt = new("--wrt") { Description = "Input to differentiate", DefaultValueFactory = _ => "" };
    private static readonly Option<string[]> Of = new("--of") { Description = "Outputs to differentiate (repeatable)" };
    private static readonly Option<string> Timeout = new("--timeout") { Description = "Deadline of each call; 0: none", DefaultValueFactory = _ => "20s" };
    private static readonly Option<string> Warmup = new("--warmup") { Description = "Send this long first, at the full level and without a ramp, and discard it", DefaultValueFactory = _ => "0s" };
    private static readonly Option<string> Output = new Option<string>("--output", "-o")
    {
        Description = "Report format: a human summary, JSON or CSV",
        DefaultValueFactory = _ => "summary",
    }.AcceptOnlyFromAmong("summary", "json", "csv");
    private static readonly Option<string?> Out = new("--out") { Description = "Write the JSON or CSV report to this file (format from --output or the extension); the summary still goes to standard output" };
    private static readonly Option<string?> Html = new("--html") { Description = "Also write a self-contained HTML report (latency distribution, throughput over time)" };
    private static readonly Option<bool> NoProgress = new("--no-progress") { Description = "No progress bar" };
    private static readonly Option<int> Seed = new("--seed") { Description = "Seed of the random request data", DefaultValueFactory = _ => 42 };

    public static Command Create(Io io)
    {
        var command = new Command("load", "Load-test the server: closed loop or constant-rate open loop, latency percentiles, status codes, server batch sizes");
        foreach (var o in new Option[] { Method, Model, RestUrl, ModelVersion, Concurrency, Connections, Rps, Duration, Requests, RampKind, RampFrom, RampSteps,
                     Batch, Data, Wrt, Of, ModeOption.Option, SecondOrderVerbs.Axes, Timeout, Warmup, Output, Out, Html, NoProgress, Seed })
            command.Options.Add(o);
        command.SetAction((r, ct) => RunAsync(r, io, ct));
        return command;
    }

    private static async Task<int> RunAsync(ParseResult r, Io io, CancellationToken cancellation)
    {
        string method = r.GetValue(Method)!;
        string? model = r.GetValue(Model);
        int connectionCount = r.GetValue(Connections);
        if (connectionCount < 1) throw new JacException("--connections must be at least 1");
        var credentials = Credentials.Headers(r);
        var connections = Enumerable.Range(0, connectionCount).Select(_ => Connection.Open(r, credentials)).ToArray();
        try
        {
            var first = connections[0];
            var (senders, rows, info) = await PrepareAsync(r, io, method, model, connections);
            var plan = MakePlan(r, method, model, method.StartsWith("rest-", StringComparison.Ordinal) ? r.GetValue(RestUrl)! : first.Address, rows, senders);

            var warmup = JacApp.ParseDuration(r.GetValue(Warmup)!, "--warmup");
            if (warmup > TimeSpan.Zero)
                await new LoadRunner(plan with { Ramp = new Ramp("none", plan.Ramp.To, plan.Ramp.To, warmup.TotalSeconds, 1), Duration = warmup, Requests = null })
                    .RunAsync(null, cancellation);

            var before = info is null ? null : await TryBatching(first, model!, r.GetValue(ModelVersion)!);
            var runner = new LoadRunner(plan);
            LoadReport report;
            if (io.ErrIsTerminal && !r.GetValue(NoProgress))
            {
                report = null!;
                await io.ErrConsole.Progress()
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                    .StartAsync(async ctx =>
                    {
                        var bar = ctx.AddTask("starting", maxValue: 1);
                        report = await runner.RunAsync(s =>
                        {
                            bar.Value = s.Fraction;
                            bar.Description = $"{s.Sent} sent, {s.Ok} ok, {s.Errors} errors, {s.Rps:0} rps";
                        }, cancellation);
                    });
            }
            else
            {
                report = await runner.RunAsync(null, cancellation);
            }
            var after = info is null ? null : await TryBatching(first, model!, r.GetValue(ModelVersion)!);
            if (before is not null && after is not null)
            {
                long batches = after.Batches - before.Batches, batchRows = after.Rows - before.Rows;
                report.ServerBatching = new ServerBatching(batches, batchRows, after.PaddedRows - before.PaddedRows,
                    batches > 0 ? Math.Round(batchRows / (double)batches, 2) : 0, after.MaxBatchSize);
            }

            // jacobian-stream's senders hold open streams: end them before the channels go.
            foreach (var sender in senders)
                if (sender.Target is IAsyncDisposable streams) await streams.DisposeAsync();
            await WriteReportsAsync(r, io, report);
            return 0;
        }
        finally
        {
            foreach (var c in connections) c.Dispose();
        }
    }

    private static LoadPlan MakePlan(ParseResult r, string method, string? model, string target, int rows, Func<CallOptions, Task>[] senders)
    {
        double? rps = r.GetValue(Rps);
        bool open = rps is not null;
        if (open && rps <= 0) throw new JacException("--rps must be positive");
        int concurrency = r.GetValue(Concurrency) ?? (open ? 1024 : 16);
        if (concurrency < 1) throw new JacException("--concurrency must be at least 1");
        long? requests = r.GetValue(Requests);
        if (requests is <= 0) throw new JacException("--requests must be positive");
        TimeSpan? duration = r.GetValue(Duration) is { } d ? JacApp.ParseDuration(d, "--duration") : requests is null ? TimeSpan.FromSeconds(10) : null;
        if (duration is { } dd && dd <= TimeSpan.Zero) throw new JacException("--duration must be positive");

        string kind = r.GetValue(RampKind)!;
        int steps = r.GetValue(RampSteps);
        if (kind != "none" && duration is null) throw new JacException("a ramp needs --duration (it spreads the levels over it)");
        if (steps < 1) throw new JacException("--ramp-steps must be at least 1");
        double to = open ? rps!.Value : concurrency;
        double from = r.GetValue(RampFrom) ?? (kind == "step" ? to / steps : open ? 0 : 1);
        double seconds = duration?.TotalSeconds ?? double.PositiveInfinity;
        var ramp = new Ramp(kind, kind == "none" ? to : from, to, seconds, kind == "step" ? steps : 1);
        return new LoadPlan(method, model, target, open, ramp, concurrency, senders.Length, requests, duration, rows,
            JacApp.ParseDuration(r.GetValue(Timeout)!, "--timeout"), senders);
    }

    /// <summary>Builds the request once (every call sends the same message) and a sender per connection.</summary>
    private static async Task<(Func<CallOptions, Task>[] Senders, int Rows, ModelInfo? Info)> PrepareAsync(
        ParseResult r, Io io, string method, string? model, Connection[] connections)
    {
        string version = r.GetValue(ModelVersion)!;
        switch (method)
        {
            case "health":
                return (connections.Select(c => Send(o => c.Health.CheckAsync(new HealthCheckRequest(), o).ResponseAsync)).ToArray(), 1, null);
            case "list-models":
                return (connections.Select(c => Send(o => c.Client.ListModelsAsync(new ListModelsRequest(), o).ResponseAsync)).ToArray(), 1, null);
            case "get-model":
            {
                var request = new GetModelRequest { Model = model ?? throw new JacException("--method get-model needs --model"), Version = version };
                return (connections.Select(c => Send(o => c.Client.GetModelAsync(request, o).ResponseAsync)).ToArray(), 1, null);
            }
        }
        if (model is null) throw new JacException($"--method {method} needs --model (jac models lists them)");
        var data = r.GetValue(Data) ?? [];
        ModelInfo? info;
        try
        {
            info = await connections[0].Client.GetModelAsync(new GetModelRequest { Model = model, Version = version }, deadline: DateTime.UtcNow.AddSeconds(10));
        }
        catch (RpcException e) when (data.Length > 0 && !Errors.IsUnreachable(e))
        {
            // With data from a file nothing depends on the signature: send anyway, the report will show the errors.
            var explained = await Errors.ExplainAsync(e, connections[0], model);
            await io.Err.WriteLineAsync($"jac: warning: {explained.Message}; sending anyway");
            info = null;
        }
        catch (RpcException e)
        {
            throw await Errors.ExplainAsync(e, connections[0], model);
        }

        if (info is not null && info.State != "READY")
            await io.Err.WriteLineAsync($"jac: warning: {model} version {info.Version} is {info.State}" +
                (info.Error.Length > 0 ? $" ({info.Error})" : "") + "; sending anyway, expect errors");

        bool batched = method is not ("jacobian" or "jacobian-stream");
        Dictionary<string, FloatTensor> inputs;
        int rows;
        if (data.Length > 0)
        {
            if (r.GetValue(Batch) is not null) throw new JacException("--batch is for random data; with --data the file's rows are sent");
            inputs = TensorFiles.ReadInputs(data, info);
            rows = info is null ? (batched ? (int)inputs.Values.First().Shape.FirstOrDefault(1) : 1)
                : (int)TensorFiles.CheckShapes(inputs, info, batched, method);
        }
        else
        {
            rows = r.GetValue(Batch) ?? 1;
            if (rows < 1) throw new JacException("--batch must be at least 1");
            if (!batched && rows != 1) throw new JacException($"--method {method} sends one sample; use --method batch-jacobian with --batch");
            // A version still loading, or one that failed, has no signature: random inputs made from it would be empty
            // requests, every one refused, and the run would measure nothing.
            if (info!.Inputs.Count == 0)
                throw new JacException($"{model} version {info.Version} is {info.State} and has no inputs to make random data for" +
                    (info.State == "LOADING" ? "; wait until jac models shows it READY" : "") + ", or pass --data");
            inputs = RandomTensors.Inputs(info, batched ? rows : null, new Random(r.GetValue(Seed)), "--data");
        }

        string wrt = r.GetValue(Wrt)!;
        var of = r.GetValue(Of) ?? [];
        var mode = ModeOption.Get(r);
        if (mode != DerivativeMode.Auto && method is not ("jacobian" or "jacobian-stream" or "batch-jacobian" or "rest-batch-jacobian"))
            throw new JacException($"--mode is for the Jacobian methods; --method {method} has none" + method switch
            {
                "jvp" => " (it runs forward)",
                "vjp" => " (it runs reverse)",
                _ => "",
            });
        var axes = SecondOrderVerbs.ParseAxes(r.GetValue(SecondOrderVerbs.Axes));
        if (axes.Length > 0 && method != "laplacian") throw new JacException($"--axes is for --method laplacian; --method {method} has none");
        void AddInputs(Google.Protobuf.Collections.MapField<string, Tensor> map)
        {
            foreach (var (k, a) in inputs) map[k] = a.ToProto();
        }
        switch (method)
        {
            case "predict":
            {
                var request = new PredictRequest { Model = model, Version = version };
                AddInputs(request.Inputs);
                return (connections.Select(c => Send(o => c.Client.PredictAsync(request, o).ResponseAsync)).ToArray(), rows, info);
            }
            case "batch-jacobian":
            {
                var request = new BatchJacobianRequest { Model = model, Version = version, Wrt = wrt, Of = { of }, Mode = mode };
                AddInputs(request.Inputs);
                return (connections.Select(c => Send(o => c.Client.BatchJacobianAsync(request, o).ResponseAsync)).ToArray(), rows, info);
            }
            case "jvp":
            {
                var request = new JvpRequest { Model = model, Version = version, Wrt = wrt, Of = { of } };
                AddInputs(request.Inputs);
                var sig = FloatSignature(info, info?.Inputs, wrt, "input", method);
                request.Tangents = RandomTensors.Uniform(sig, rows, new Random(r.GetValue(Seed) + 1), "--data").ToProto();
                return (connections.Select(c => Send(o => c.Client.JvpAsync(request, o).ResponseAsync)).ToArray(), rows, info);
            }
            case "vjp":
            {
                var request = new VjpRequest { Model = model, Version = version, Wrt = wrt, Of = { of } };
                AddInputs(request.Inputs);
                var rng = new Random(r.GetValue(Seed) + 1);
                var outputs = of.Length > 0 ? of : info?.Outputs.Where(o => o.Dtype == "float").Select(o => o.Name).ToArray() ?? [];
                foreach (var name in outputs)
                    request.Cotangents[name] = RandomTensors.Uniform(FloatSignature(info, info?.Outputs, name, "output", method), rows, rng, "--data").ToProto();
                return (connections.Select(c => Send(o => c.Client.VjpAsync(request, o).ResponseAsync)).ToArray(), rows, info);
            }
            case "hessian":
            {
                var request = new BatchHessianRequest { Model = model, Version = version, Wrt = wrt, Of = { of } };
                AddInputs(request.Inputs);
                return (connections.Select(c => Send(o => c.Client.BatchHessianAsync(request, o).ResponseAsync)).ToArray(), rows, info);
            }
            case "laplacian":
            {
                var request = new BatchLaplacianRequest { Model = model, Version = version, Wrt = wrt, Of = { of }, Axes = { axes } };
                AddInputs(request.Inputs);
                return (connections.Select(c => Send(o => c.Client.BatchLaplacianAsync(request, o).ResponseAsync)).ToArray(), rows, info);
            }
            case "rest-predict" or "rest-batch-jacobian":
            {
                string text = r.GetValue(RestUrl) ?? throw new JacException($"--method {method} needs --rest-url (the server's OpenInference:RestUrl)");
                if (!Uri.TryCreate(text, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
                    throw new JacException($"--rest-url is '{text}'; expected an http:// or https:// address such as http://127.0.0.1:8000");
                var jacobian = method == "rest-batch-jacobian" ? new RestSender.Jacobian(wrt, of, mode.ToString().ToLowerInvariant()) : null;
                return ([Send(new RestSender(url, Credentials.Headers(r), model, version, inputs, jacobian).Send)], rows, info);
            }
            case "jacobian-stream":
            {
                var request = new JacobianRequest { Model = model, Version = version, Wrt = wrt, Of = { of }, Mode = mode };
                AddInputs(request.Inputs);
                return (connections.Select(c => Send(new StreamSender(c.Client, request).Send)).ToArray(), rows, info);
            }
            default:
            {
                var request = new JacobianRequest { Model = model, Version = version, Wrt = wrt, Of = { of }, Mode = mode };
                AddInputs(request.Inputs);
                return (connections.Select(c => Send(o => c.Client.JacobianAsync(request, o).ResponseAsync)).ToArray(), rows, info);
            }
        }
    }

    /// <summary>Gives a lambda its delegate type, so Select can infer it.</summary>
    private static Func<CallOptions, Task> Send(Func<CallOptions, Task> call) => call;

    /// <summary>
    /// The signature a random tangent (of an input) or cotangent (of an output) takes its shape from: the one named, or
    /// with no name the only float one, as the server defaults wrt.
    /// </summary>
    private static TensorInfo FloatSignature(ModelInfo? info, IEnumerable<TensorInfo>? all, string name, string kind, string method)
    {
        if (info is null || all is null)
            throw new JacException($"--method {method} makes random {(kind == "input" ? "tangents" : "cotangents")} from the model's signature, which GetModel did not return");
        var floats = all.Where(s => s.Dtype == "float").ToArray();
        if (name.Length > 0)
            return floats.FirstOrDefault(s => s.Name == name)
                ?? throw new JacException($"the model has no float {kind} '{name}'; it has {string.Join(", ", floats.Select(s => $"'{s.Name}'"))}");
        return floats.Length == 1 ? floats[0]
            : throw new JacException($"the model has {floats.Length} float {kind}s ({string.Join(", ", floats.Select(s => $"'{s.Name}'"))}); name one with --wrt");
    }

    private static async Task<BatchingStats?> TryBatching(Connection c, string model, string version)
    {
        try
        {
            return (await c.Client.GetModelAsync(new GetModelRequest { Model = model, Version = version }, deadline: DateTime.UtcNow.AddSeconds(10))).Batching;
        }
        catch (RpcException)
        {
            return null;
        }
    }

    private static async Task WriteReportsAsync(ParseResult r, Io io, LoadReport report)
    {
        string format = r.GetValue(Output)!;
        string? path = r.GetValue(Out);
        // --out report.json alone is enough to ask for JSON.
        if (format == "summary" && path is not null)
            format = path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase) ? "csv" : "json";
        string? text = format switch { "json" => report.ToJson() + "\n", "csv" => report.ToCsv(), _ => null };
        if (text is not null && path is not null) await File.WriteAllTextAsync(path, text);
        if (text is not null && path is null) await io.Out.WriteAsync(text);
        else SummaryView.Write(io.OutConsole, report);
        if (r.GetValue(Html) is { } html)
        {
            await File.WriteAllTextAsync(html, HtmlReport.Render(report));
            await io.Err.WriteLineAsync($"jac: HTML report written to {html}");
        }
    }
}
