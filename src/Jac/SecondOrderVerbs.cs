using System.CommandLine;
using JacService.Client;

namespace JacService.Jac;

/// <summary>
/// hessian and laplacian: second derivatives of a batch (a PDE residual's u_xx, Δu), with the first derivatives from the
/// same call on request. Inputs come from files as for the other verbs, with the batch axis first; the results go to
/// JSON or .npy the same way.
/// </summary>
public static class SecondOrderVerbs
{
    private static readonly Option<string> Wrt = new("--wrt") { Description = "Input to differentiate (twice); default: the model's only float input", DefaultValueFactory = _ => "" };
    private static readonly Option<string[]> Of = new("--of") { Description = "Output to differentiate (repeatable); default: all float outputs" };
    private static readonly Option<bool> IncludeJacobian = new("--include-jacobian")
    {
        Description = "Also return the first derivatives (the Jacobians, as batch-jacobian gives them)",
    };
    /// <summary>Shared with <c>jac load --method laplacian</c>.</summary>
    internal static readonly Option<string[]> Axes = new("--axes")
    {
        Description = "Flat indices into one sample of wrt whose second derivatives are summed, comma-separated " +
                      "(0,1 for x and y of an input (x, y, t)); default: every element",
    };

    public static Command Hessian(Io io)
    {
        var command = new Command("hessian", "Outputs and per-sample Hessians d²o/dwrt² for a batch: [B, ..output shape, ..input shape, ..input shape]")
        {
            DirectionalVerbs.Model, DirectionalVerbs.ModelVersion, DirectionalVerbs.Input, Wrt, Of, IncludeJacobian, DirectionalVerbs.Out,
            DirectionalVerbs.Timeout,
        };
        command.SetAction((r, ct) => DirectionalVerbs.CallAsync(r, command.Name, ct, async (c, info, inputs, timeout) =>
        {
            bool withJacobians = r.GetValue(IncludeJacobian);
            var result = await c.Library.HessianAsync(info.Name, inputs, r.GetValue(Wrt)!, r.GetValue(Of), withJacobians,
                r.GetValue(DirectionalVerbs.ModelVersion)!, timeout, ct);
            TensorFiles.WriteResult(r.GetValue(DirectionalVerbs.Out), io.Out, result.Model, result.Version, result.Outputs, result.Hessians, "hessians",
                alsoJacobians: withJacobians ? result.Jacobians : null);
        }));
        return command;
    }

    public static Command Laplacian(Io io)
    {
        var command = new Command("laplacian", "Outputs and per-sample Laplacians (the Hessian's trace over --axes) for a batch: [B, ..output shape]")
        {
            DirectionalVerbs.Model, DirectionalVerbs.ModelVersion, DirectionalVerbs.Input, Wrt, Of, Axes, IncludeJacobian, DirectionalVerbs.Out,
            DirectionalVerbs.Timeout,
        };
        command.SetAction((r, ct) => DirectionalVerbs.CallAsync(r, command.Name, ct, async (c, info, inputs, timeout) =>
        {
            bool withJacobians = r.GetValue(IncludeJacobian);
            var result = await c.Library.LaplacianAsync(info.Name, inputs, r.GetValue(Wrt)!, r.GetValue(Of), ParseAxes(r.GetValue(Axes)),
                withJacobians, r.GetValue(DirectionalVerbs.ModelVersion)!, timeout, ct);
            TensorFiles.WriteResult(r.GetValue(DirectionalVerbs.Out), io.Out, result.Model, result.Version, result.Outputs, result.Laplacians, "laplacians",
                alsoJacobians: withJacobians ? result.Jacobians : null);
        }));
        return command;
    }

    /// <summary>"0,1" (or --axes 0 --axes 1) as indices; the server checks their range against wrt's shape.</summary>
    public static long[] ParseAxes(string[]? values) =>
        (values ?? []).SelectMany(v => v.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            .Select(a => long.TryParse(a, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var i)
                ? i
                : throw new JacException($"--axes: '{a}' is not an index; give flat indices into one sample of wrt, e.g. --axes 0,1"))
            .ToArray();
}
