using System.ComponentModel.DataAnnotations;

namespace JacService.Server.Grpc;

/// <summary>How calls that failed through the caller's doing are logged (configuration section "CallerErrors"; see <see cref="CallerErrorLog"/>).</summary>
public sealed class CallerErrorsOptions
{
    public const string Section = "CallerErrors";

    /// <summary>Level of their lines; None turns them off.</summary>
    [EnumDataType(typeof(LogLevel))]
    public LogLevel LogLevel { get; set; } = LogLevel.Information;

    /// <summary>At most one line per kind (a status code, or a message that does not parse) in this many seconds.</summary>
    [Range(1, 86_400)]
    public int LogIntervalSeconds { get; set; } = 10;
}
