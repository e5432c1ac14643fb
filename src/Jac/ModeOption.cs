using System.CommandLine;
using JacService.Protos.V1;

namespace JacService.Jac;

/// <summary>--mode auto|forward|reverse of the Jacobian verbs, and its wire value.</summary>
public static class ModeOption
{
    public static readonly Option<string> Option = new Option<string>("--mode")
    {
        Description = "How to compute the Jacobian: auto (the model's default, else the server measures which is faster), forward or reverse",
        DefaultValueFactory = _ => "auto",
    }.AcceptOnlyFromAmong("auto", "forward", "reverse");

    public static DerivativeMode Get(ParseResult r) => r.GetValue(Option) switch
    {
        "forward" => DerivativeMode.Forward,
        "reverse" => DerivativeMode.Reverse,
        _ => DerivativeMode.Auto,
    };

    /// <summary>The name jac prints for a mode that ran.</summary>
    public static string Name(DerivativeMode mode) => mode switch
    {
        DerivativeMode.Forward => "forward",
        DerivativeMode.Reverse => "reverse",
        _ => "auto",
    };
}
