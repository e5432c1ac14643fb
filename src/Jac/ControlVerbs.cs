using System.CommandLine;
using Google.Protobuf;
using Grpc.Core;
using JacService.Protos.V1;
using Spectre.Console;

namespace JacService.Jac;

/// <summary>
/// jac control load | unload | repository: the server's ModelControl service, with its bearer token from --token-file,
/// --token or JAC_CONTROL_TOKEN (in that order of preference for safety: a token on the command line is visible in the
/// process list and the shell's history).
/// </summary>
public static class ControlVerbs
{
    public const string TokenVariable = "JAC_CONTROL_TOKEN";

    private static readonly Option<string> Timeout = new("--timeout")
    {
        Description = "Deadline of the call (a load waits for every version to load)",
        DefaultValueFactory = _ => "5m",
        Recursive = true,
    };

    private static Option<string> OutputFormat() => new Option<string>("--output", "-o")
    {
        Description = "Output format",
        DefaultValueFactory = _ => "table",
    }.AcceptOnlyFromAmong("table", "json");

    public static Command Control(Io io)
    {
        var command = new Command("control",
            "Load, unload and list the server's models (its ModelControl service: on only where the server runs with ModelControl:Enabled)")
            { Timeout };
        command.Subcommands.Add(Load(io));
        command.Subcommands.Add(Unload(io));
        command.Subcommands.Add(Repository(io));
        return command;
    }

    private static Command Load(Io io)
    {
        var model = new Argument<string>("model") { Description = "The model's folder name in the server's repository" };
        var output = OutputFormat();
        var command = new Command("load",
            "Load (or reload what changed of) a model's version folders now; exit code 1 when a version FAILED or none is READY")
            { model, output };
        command.SetAction((r, ct) => CallAsync(r, r.GetValue(model), ct, async (client, options) =>
        {
            var response = await client.LoadModelAsync(new LoadModelRequest { Model = r.GetValue(model) }, options);
            if (r.GetValue(output) == "json") io.Out.WriteLine(Json.Format(response));
            else WriteTable(io, [response.Model]);
            var failed = response.Model.Versions.Where(v => v.State == "FAILED").Select(v => v.Version).ToList();
            if (failed.Count > 0) throw new JacException($"{response.Model.Name}: version {string.Join(", ", failed)} FAILED to load");
            if (response.Model.Versions.All(v => v.State != "READY")) throw new JacException($"{response.Model.Name}: no version is READY");
        }));
        return command;
    }

    private static Command Unload(Io io)
    {
        var model = new Argument<string>("model") { Description = "The model's name" };
        var output = OutputFormat();
        var command = new Command("unload",
            "Retire every version of a model (calls already holding one finish on it); polls leave it alone until `jac control load`")
            { model, output };
        command.SetAction((r, ct) => CallAsync(r, r.GetValue(model), ct, async (client, options) =>
        {
            var response = await client.UnloadModelAsync(new UnloadModelRequest { Model = r.GetValue(model) }, options);
            if (r.GetValue(output) == "json") io.Out.WriteLine(Json.Format(response));
            else if (response.Versions.Count == 0) io.Out.WriteLine($"{response.Model}: no version was listed; nothing to retire");
            else io.Out.WriteLine($"{response.Model}: retired version {string.Join(", ", response.Versions)}; calls already holding one finish on it");
        }));
        return command;
    }

    private static Command Repository(Io io)
    {
        var model = new Option<string?>("--model", "-m") { Description = "Only this model" };
        var output = OutputFormat();
        var command = new Command("repository", "Every model folder in the server's repository, each version folder and its state, or why it is not loaded")
            { model, output };
        command.SetAction((r, ct) => CallAsync(r, r.GetValue(model), ct, async (client, options) =>
        {
            var response = await client.ListRepositoryAsync(new ListRepositoryRequest { Model = r.GetValue(model) ?? "" }, options);
            if (r.GetValue(output) == "json") io.Out.WriteLine(Json.Format(response));
            else WriteTable(io, response.Models);
        }));
        return command;
    }

    private static readonly JsonFormatter Json = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true));

    private static void WriteTable(Io io, IEnumerable<RepositoryModel> models)
    {
        var table = new Table().AddColumns("model", "version", "state", "calls", "reason");
        foreach (var m in models)
        {
            string name = m.Name + (m.Unloaded ? " (unloaded)" : "");
            if (m.Versions.Count == 0) table.AddRow(Markup.Escape(name), "", "", "", Markup.Escape(m.ConfigError.Length > 0 ? m.ConfigError : "no version folders"));
            foreach (var v in m.Versions)
                table.AddRow(Markup.Escape(name), v.Version, v.State, v.CallsInFlight.ToString(),
                    Markup.Escape(v.FolderPresent ? v.Reason : $"its folder is gone; {v.Reason}".TrimEnd(' ', ';')));
        }
        io.OutConsole.Write(table);
    }

    /// <summary>Resolves the token, makes the call with it, and turns a refusal into a sentence that says what to do.</summary>
    private static async Task<int> CallAsync(ParseResult r, string? model, CancellationToken ct,
        Func<ModelControl.ModelControlClient, CallOptions, Task> call)
    {
        var token = ResolveToken(r);
        // The API key (if any) names the caller for the server's control policy; the token travels as before.
        using var connection = Connection.Open(r, Credentials.ApiKeyHeaders(r));
        var timeout = JacApp.ParseDuration(r.GetValue(Timeout)!, "--timeout");
        // The token goes as plain metadata, not as call credentials, which Grpc.Net.Client sends only over TLS: the
        // server is usually reached over h2c inside a private network (see docs/model-control.md on that risk).
        var options = new CallOptions(new Metadata { { "authorization", "Bearer " + token } }, DateTime.UtcNow + timeout, ct);
        try
        {
            await call(new ModelControl.ModelControlClient(connection.Invoker), options);
        }
        catch (RpcException e)
        {
            throw await ExplainAsync(e, connection, model);
        }
        return 0;
    }

    private static string ResolveToken(ParseResult r) =>
        Credentials.Resolve(r, Credentials.Token, Credentials.TokenFile, TokenVariable)
        ?? throw new JacException($"jac control needs the server's ModelControl token: --token-file FILE, the variable {TokenVariable}, or --token TOKEN");

    private static async Task<JacException> ExplainAsync(RpcException e, Connection connection, string? model) => e.StatusCode switch
    {
        _ when Errors.IsUnreachable(e) => await Errors.ExplainAsync(e, connection, null),
        StatusCode.Unimplemented => new JacException(
            $"the server at {connection.Address} has no ModelControl service: it is off unless the server runs with ModelControl:Enabled=true and a token (ModelControl:TokenFile)"),
        StatusCode.PermissionDenied => new JacException(
            $"the server refused the token: it is not the server's ModelControl token (from --token-file, {TokenVariable} or --token)"),
        StatusCode.Unauthenticated => new JacException($"the server wants its ModelControl token: {e.Status.Detail}"),
        StatusCode.NotFound => new JacException($"model '{model}' not found at {connection.Address}: {e.Status.Detail}"),
        _ => await Errors.ExplainAsync(e, connection, null),
    };
}
