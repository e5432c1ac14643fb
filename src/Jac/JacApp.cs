using System.CommandLine;
using Grpc.Core;
using JacService.Jac.Load;

namespace JacService.Jac;

/// <summary>The verbs. Tests call <see cref="RunAsync"/> in-process with their own writers.</summary>
public static class JacApp
{
    public static readonly Option<string> Target = new("--target", "-t")
    {
        Description = "Server address, host:port or a URL",
        DefaultValueFactory = _ => "127.0.0.1:50051",
        Recursive = true,
    };

    public static readonly Option<string?> Ca = new("--ca")
    {
        Description = "PEM file of the CAs the server's certificate must chain to, in place of the system's trust store (TLS: a host:port target becomes https://)",
        Recursive = true,
    };

    public static readonly Option<string?> Cert = new("--cert")
    {
        Description = "PEM file of a client certificate (and its intermediates), for a server that requires one (mutual TLS); with --key",
        Recursive = true,
    };

    public static readonly Option<string?> Key = new("--key")
    {
        Description = "PEM file of the private key of --cert",
        Recursive = true,
    };

    public static async Task<int> RunAsync(string[] args, Io io, CancellationToken cancellation = default)
    {
        var root = new RootCommand("jac: call a JacService server from files, and load-test it") { Target, Ca, Cert, Key };
        Credentials.AddTo(root);
        root.Subcommands.Add(ClientVerbs.Models(io));
        root.Subcommands.Add(ClientVerbs.Predict(io));
        root.Subcommands.Add(ClientVerbs.Jacobian(io, batched: false));
        root.Subcommands.Add(ClientVerbs.Jacobian(io, batched: true));
        root.Subcommands.Add(DirectionalVerbs.Jvp(io));
        root.Subcommands.Add(DirectionalVerbs.Vjp(io));
        root.Subcommands.Add(SecondOrderVerbs.Hessian(io));
        root.Subcommands.Add(SecondOrderVerbs.Laplacian(io));
        root.Subcommands.Add(CheckVerb.Check(io));
        root.Subcommands.Add(LoadCommand.Create(io));
        root.Subcommands.Add(ControlVerbs.Control(io));
        var config = new InvocationConfiguration { Output = io.Out, Error = io.Err, EnableDefaultExceptionHandler = false };
        try
        {
            return await root.Parse(args).InvokeAsync(config, cancellation);
        }
        catch (JacException e)
        {
            await io.Err.WriteLineAsync("jac: " + e.Message);
            return 1;
        }
        catch (RpcException e)
        {
            // Calls that did not go through Errors.ExplainAsync still get a one-line message, not a stack trace.
            await io.Err.WriteLineAsync($"jac: {e.StatusCode}: {e.Status.Detail}");
            return 1;
        }
    }

    /// <summary>"10s", "500ms", "2m", "1h" or a plain number of seconds.</summary>
    public static TimeSpan ParseDuration(string text, string option)
    {
        string t = text.Trim();
        (string number, double scale) = t.EndsWith("ms", StringComparison.Ordinal) ? (t[..^2], 0.001)
            : t.EndsWith('s') ? (t[..^1], 1) : t.EndsWith('m') ? (t[..^1], 60) : t.EndsWith('h') ? (t[..^1], 3600) : (t, 1);
        return double.TryParse(number, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v) && v >= 0
            ? TimeSpan.FromSeconds(v * scale)
            : throw new JacException($"{option}: '{text}' is not a duration (examples: 10s, 500ms, 2m)");
    }
}
