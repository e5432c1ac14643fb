using JacService.Core;
using EngineMode = JacService.Core.Derivatives.DerivativeMode;
using ProtoMode = JacService.Protos.V1.DerivativeMode;
using WireMode = JacService.Protos.V1.Wire.DerivativeMode;

namespace JacService.Server.Grpc;

/// <summary>Between the wire's DerivativeMode and the engine's; the enums share their numbers but not their type.</summary>
internal static class ModeMapping
{
    /// <summary>
    /// The mode to run: an explicit FORWARD or REVERSE as asked; AUTO as the model's default (config.json), which is
    /// itself AUTO (the engine measures) unless the model sets one.
    /// </summary>
    public static EngineMode FromProto(ProtoMode mode, EngineMode modelDefault) => mode switch
    {
        ProtoMode.Auto => modelDefault,
        ProtoMode.Forward => EngineMode.Forward,
        ProtoMode.Reverse => EngineMode.Reverse,
        _ => throw new InvalidRequestException(
            $"mode must be DERIVATIVE_MODE_AUTO (0), DERIVATIVE_MODE_FORWARD (1) or DERIVATIVE_MODE_REVERSE (2), got {(int)mode}"),
    };

    public static ProtoMode ToProto(EngineMode? mode) => mode switch
    {
        EngineMode.Forward => ProtoMode.Forward,
        EngineMode.Reverse => ProtoMode.Reverse,
        _ => ProtoMode.Auto,
    };

    /// <summary>The mode a response says ran, in the wire variant's enum (the same numbers).</summary>
    public static WireMode ToWire(EngineMode? mode) => (WireMode)(int)ToProto(mode);
}
