using System.CommandLine;
using Google.Protobuf.Collections;
using Grpc.Core;
using JacService.Client;
using JacService.Protos.V1;

namespace JacService.Jac;

/// <summary>
/// jvp and vjp: the caller's own directions instead of a basis. Inputs, tangents and cotangents come from files as for
/// the other verbs (TensorFiles), all with the batch axis first; the results go to JSON or .npy the same way. The
/// second-order verbs (SecondOrderVerbs) share the options and the call below.
/// </summary>
public static class DirectionalVerbs
{
    internal static readonly Option<string> Model = new("--model", "-m") { Description = "Model name", Required = true };
    internal static readonly Option<string> ModelVersion = new("--model-version")
    {
        Description = "Model version; empty means the highest READY one",
        DefaultValueFactory = _ => "",
    };
    internal static readonly Option<string[]> Input = new("--input", "-i")
    {
        Description = "Input file, [NAME=]FILE.json or [NAME=]FILE.npy; repeat for several inputs",
        Required = true,
    };
    private static readonly Option<string> Wrt = new("--wrt") { Description = "Input the directions belong to; default: the model's only float input", DefaultValueFactory = _ => "" };
    private static readonly Option<string[]> Of = new("--of") { Description = "Output to differentiate (repeatable); default: all float outputs (jvp), the outputs given cotangents (vjp)" };
    internal static readonly Option<string?> Out = new("--out")
    {
        Description = "Write the result here: FILE.json, FILE.npy (a single tensor) or a folder (one .npy per tensor); default: JSON on standard output",
    };
    internal static readonly Option<string> Timeout = new("--timeout") { Description = "Deadline of the call", DefaultValueFactory = _ => "60s" };

    private static readonly Option<string> Tangents = new("--tangents")
    {
        Description = "Tangents for wrt, FILE.json or FILE.npy: [B, ..input shape] (one direction per sample) or [B, T, ..input shape]",
        Required = true,
    };

    private static readonly Option<string[]> Cotangents = new("--cotangents")
    {
        Description = "Cotangents, FILE.json (an object of output name -> tensor) or OUTPUT=FILE per output (repeatable): " +
                      "[B, ..output shape] or [B, T, ..output shape], the same T for all",
        Required = true,
    };

    public static Command Jvp(Io io)
    {
        var command = new Command("jvp", "Outputs and Jacobian-vector products J·v for a batch, along the given tangents (forward mode)")
            { Model, ModelVersion, Input, Wrt, Of, Tangents, Out, Timeout };
        command.SetAction((r, ct) => CallAsync(r, command.Name, ct, async (c, info, inputs, timeout) =>
        {
            string wrt = r.GetValue(Wrt) is { Length: > 0 } w ? w : info.Inputs.Count == 1 ? info.Inputs[0].Name : "tangents";
            var tangents = TensorFiles.ReadInputs([$"{wrt}={r.GetValue(Tangents)}"], null)[wrt];
            var result = await c.Library.JvpAsync(info.Name, inputs, tangents, r.GetValue(Wrt)!, r.GetValue(Of), r.GetValue(ModelVersion)!, timeout, ct);
            TensorFiles.WriteResult(r.GetValue(Out), io.Out, result.Model, result.Version, result.Outputs, result.Jvps, "jvps", result.Mode);
        }));
        return command;
    }

    public static Command Vjp(Io io)
    {
        var command = new Command("vjp", "Outputs and the vector-Jacobian product uᵀ·J for a batch, for the given cotangents (reverse mode): the gradient w.r.t. wrt")
            { Model, ModelVersion, Input, Wrt, Of, Cotangents, Out, Timeout };
        command.SetAction((r, ct) => CallAsync(r, command.Name, ct, async (c, info, inputs, timeout) =>
        {
            var cotangents = ReadCotangents(r.GetValue(Cotangents)!, info);
            var result = await c.Library.VjpAsync(info.Name, inputs, cotangents, r.GetValue(Wrt)!, r.GetValue(Of), r.GetValue(ModelVersion)!, timeout, ct);
            string wrt = r.GetValue(Wrt) is { Length: > 0 } w ? w : info.Inputs.Count == 1 ? info.Inputs[0].Name : "vjp";
            TensorFiles.WriteResult(r.GetValue(Out), io.Out, result.Model, result.Version, result.Outputs,
                new Dictionary<string, FloatTensor> { [wrt] = result.Vjp }, "vjp", result.Mode);
        }));
        return command;
    }

    /// <summary>
    /// [OUTPUT=]FILE specs read like inputs, but named after outputs: an unnamed .npy belongs to the only output, and
    /// a JSON object's names are output names.
    /// </summary>
    private static Dictionary<string, FloatTensor> ReadCotangents(string[] specs, ModelInfo info)
    {
        var named = specs.Select(s => s.Contains('=') || !s.EndsWith(".npy", StringComparison.OrdinalIgnoreCase) ? s
            : info.Outputs.Count == 1 ? $"{info.Outputs[0].Name}={s}"
            : throw new JacException($"which output is {s}? Write OUTPUT={s}; the outputs of {info.Name}: {string.Join(", ", info.Outputs.Select(o => o.Name))}"));
        var cotangents = TensorFiles.ReadInputs(named.ToList(), null);
        foreach (var name in cotangents.Keys.Where(n => info.Outputs.All(o => o.Name != n)))
            throw new JacException($"cotangent for '{name}', but {info.Name} has no such output; its outputs: {string.Join(", ", info.Outputs.Select(o => o.Name))}");
        return cotangents;
    }

    /// <summary>Reads and checks the inputs against the model's signature before sending, makes the call, and explains a failed one.</summary>
    internal static async Task<int> CallAsync(ParseResult r, string verb, CancellationToken ct,
        Func<Connection, ModelInfo, Dictionary<string, FloatTensor>, TimeSpan, Task> call)
    {
        string name = r.GetValue(Model)!;
        using var connection = Connection.Open(r, Credentials.Headers(r));
        var timeout = JacApp.ParseDuration(r.GetValue(Timeout)!, "--timeout");
        try
        {
            var info = await connection.Client.GetModelAsync(new GetModelRequest { Model = name, Version = r.GetValue(ModelVersion) },
                new CallOptions(deadline: DateTime.UtcNow + timeout, cancellationToken: ct));
            var inputs = TensorFiles.ReadInputs(r.GetValue(Input)!, info);
            TensorFiles.CheckShapes(inputs, info, batched: true, verb);
            await call(connection, info, inputs, timeout);
        }
        catch (RpcException e)
        {
            throw await Errors.ExplainAsync(e, connection, name);
        }
        return 0;
    }
}
