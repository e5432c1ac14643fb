using JacService.Client;
using System.CommandLine;
using Grpc.Core;
using JacService.Protos.V1;
using Spectre.Console;

namespace JacService.Jac;

/// <summary>models, predict, jacobian, batch-jacobian: one call each, inputs from files, results to JSON or .npy.</summary>
public static class ClientVerbs
{
    private static Option<string?> ModelOption(bool required) =>
        new("--model", "-m") { Description = "Model name", Required = required };

    private static readonly Option<string> ModelVersion = new("--model-version")
    {
        Description = "Model version; empty means the highest READY one",
        DefaultValueFactory = _ => "",
    };

    private static readonly Option<string> Timeout = new("--timeout") { Description = "Deadline of the call", DefaultValueFactory = _ => "60s" };

    private static Option<string> OutputFormat(string[] formats) => new Option<string>("--output", "-o")
    {
        Description = "Output format",
        DefaultValueFactory = _ => formats[0],
    }.AcceptOnlyFromAmong(formats);

    public static Command Models(Io io)
    {
        var model = ModelOption(required: false);
        var output = OutputFormat(["table", "json"]);
        var watch = new Option<bool>("--watch", "-w")
        {
            Description = "Keep listing and print each change as it is seen (a version appeared, changed state, reloaded or gone), with its time; until Ctrl-C or --for. --output json prints one JSON object per change",
        };
        var interval = new Option<string>("--interval") { Description = "With --watch: time between listings", DefaultValueFactory = _ => "1s" };
        var watchFor = new Option<string?>("--for") { Description = "With --watch: stop after this long (e.g. 30s), for scripts" };
        var command = new Command("models", "List the models and versions the server has, with their signatures and batching stats")
            { model, ModelVersion, output, Timeout, watch, interval, watchFor };
        command.SetAction(async (r, ct) =>
        {
            using var connection = Connection.Open(r, Credentials.Headers(r));
            if (r.GetValue(watch))
            {
                var every = JacApp.ParseDuration(r.GetValue(interval)!, "--interval");
                if (every <= TimeSpan.Zero) throw new JacException("--interval must be longer than 0");
                TimeSpan? until = r.GetValue(watchFor) is { } text ? JacApp.ParseDuration(text, "--for") : null;
                return await ModelWatch.RunAsync(connection, r.GetValue(model), every, until, r.GetValue(output) == "json", io, ct);
            }
            var options = CallOptions(r, ct);
            List<ModelInfo> models;
            try
            {
                models = r.GetValue(model) is { } name
                    ? [await connection.Client.GetModelAsync(new GetModelRequest { Model = name, Version = r.GetValue(ModelVersion) }, options)]
                    : [.. (await connection.Client.ListModelsAsync(new ListModelsRequest(), options)).Models];
            }
            catch (RpcException e)
            {
                throw await Errors.ExplainAsync(e, connection, r.GetValue(model));
            }
            if (r.GetValue(output) == "json")
            {
                var formatter = new Google.Protobuf.JsonFormatter(Google.Protobuf.JsonFormatter.Settings.Default.WithFormatDefaultValues(true));
                io.Out.WriteLine("[" + string.Join(",\n", models.Select(m => formatter.Format(m))) + "]");
                return 0;
            }
            var table = new Table().AddColumns("model", "version", "state", "inputs", "outputs", "batches / rows", "device");
            foreach (var m in models.OrderBy(m => m.Name, StringComparer.Ordinal).ThenBy(m => m.Version, StringComparer.Ordinal))
                table.AddRow(Markup.Escape(m.Name), m.Version, m.State == "READY" ? m.State : Markup.Escape($"{m.State}: {m.Error}"),
                    Markup.Escape(Signature(m.Inputs)), Markup.Escape(Signature(m.Outputs)),
                    m.Batching is { } b ? $"{b.Batches} / {b.Rows}" : "", Markup.Escape(DeviceColumn(m)));
            io.OutConsole.Write(table);
            return 0;
        });
        return command;
    }

    /// <summary>
    /// `jac models`' device column: where the version runs (every GPU it has a replica on), and on a GPU with CUDA
    /// graphs how many passes are recorded and how many run eagerly.
    /// </summary>
    public static string DeviceColumn(ModelInfo m)
    {
        // A replica per GPU: every device it is on.
        string devices = m.Batching is { Devices.Count: > 1 } b ? string.Join(" + ", b.Devices.Select(d => d.Device)) : m.Device;
        return m.CudaGraphs is { Enabled: true } g ? $"{devices}, {g.Recorded} graphs, {g.Fallbacks.Count} eager" : devices;
    }

    private static string Signature(IEnumerable<TensorInfo> tensors) =>
        string.Join(", ", tensors.Select(t => $"{t.Name} {t.Dtype}[{string.Join(", ", t.Shape.Select(d => d < 0 ? "?" : d.ToString()))}]"));

    private static readonly Option<string[]> Input = new("--input", "-i")
    {
        Description = "Input file, [NAME=]FILE.json or [NAME=]FILE.npy; repeat for several inputs",
        Required = true,
        AllowMultipleArgumentsPerToken = false,
    };

    private static readonly Option<string?> Out = new("--out")
    {
        Description = "Write the result here: FILE.json, FILE.npy (a single tensor) or a folder (one .npy per tensor); default: JSON on standard output",
    };

    public static Command Predict(Io io)
    {
        var model = ModelOption(required: true);
        var command = new Command("predict", "Outputs for a batch of samples (inputs carry the batch axis first)") { model, ModelVersion, Input, Out, Timeout };
        command.SetAction((r, ct) => CallAsync(r, model, batched: true, command.Name, ct, async (c, name, inputs, timeout) =>
        {
            var result = await c.Library.PredictAsync(name, inputs, r.GetValue(ModelVersion)!, timeout, ct);
            TensorFiles.WriteResult(r.GetValue(Out), io.Out, result.Model, result.Version, result.Outputs, null);
        }));
        return command;
    }

    public static Command Jacobian(Io io, bool batched)
    {
        var model = ModelOption(required: true);
        var wrt = new Option<string>("--wrt") { Description = "Input to differentiate; default: the model's only float input", DefaultValueFactory = _ => "" };
        var of = new Option<string[]>("--of") { Description = "Output to differentiate (repeatable); default: all float outputs" };
        var command = batched
            ? new Command("batch-jacobian", "Outputs and per-sample Jacobians for a batch (inputs carry the batch axis first)")
            : new Command("jacobian", "Outputs and the Jacobian for ONE sample (inputs without the batch axis)");
        foreach (var o in new Option[] { model, ModelVersion, Input, wrt, of, ModeOption.Option, Out, Timeout }) command.Options.Add(o);
        command.SetAction((r, ct) => CallAsync(r, model, batched, command.Name, ct, async (c, name, inputs, timeout) =>
        {
            var result = batched
                ? await c.Library.BatchJacobianAsync(name, inputs, r.GetValue(wrt)!, r.GetValue(of), ModeOption.Get(r), r.GetValue(ModelVersion)!, timeout, ct)
                : await c.Library.JacobianAsync(name, inputs, r.GetValue(wrt)!, r.GetValue(of), ModeOption.Get(r), r.GetValue(ModelVersion)!, timeout, ct);
            TensorFiles.WriteResult(r.GetValue(Out), io.Out, result.Model, result.Version, result.Outputs, result.Jacobians, mode: result.Mode);
        }));
        return command;
    }

    /// <summary>
    /// What the three data verbs share: read the inputs, check them against the model's signature (so a wrong file
    /// is named before anything is sent), make the call, and turn a failed call into a sentence.
    /// </summary>
    private static async Task<int> CallAsync(ParseResult r, Option<string?> model, bool batched, string verb, CancellationToken ct,
        Func<Connection, string, Dictionary<string, FloatTensor>, TimeSpan, Task> call)
    {
        string name = r.GetValue(model)!;
        using var connection = Connection.Open(r, Credentials.Headers(r));
        try
        {
            var info = await connection.Client.GetModelAsync(new GetModelRequest { Model = name, Version = r.GetValue(ModelVersion) }, CallOptions(r, ct));
            var inputs = TensorFiles.ReadInputs(r.GetValue(Input)!, info);
            TensorFiles.CheckShapes(inputs, info, batched, verb);
            await call(connection, name, inputs, TimeoutOf(r));
        }
        catch (RpcException e)
        {
            throw await Errors.ExplainAsync(e, connection, name);
        }
        return 0;
    }

    private static TimeSpan TimeoutOf(ParseResult r) => JacApp.ParseDuration(r.GetValue(Timeout)!, "--timeout");

    private static CallOptions CallOptions(ParseResult r, CancellationToken ct) => new(deadline: DateTime.UtcNow + TimeoutOf(r), cancellationToken: ct);
}
