using System.Text.Json;
using JacService.Core.Derivatives;

namespace JacService.Server.Models;

/// <summary>
/// The model-level settings of a model's config.json besides "batching" (which <see cref="Batching.BatchingOptions"/>
/// reads): today the mode an AUTO request gets. Invalid values fail the model's load, naming the file and key, so a
/// typo never silently serves in a mode nobody asked for.
/// </summary>
public static class ModelConfig
{
    public const string DerivativeModeKey = "derivativeMode";

    private static readonly Dictionary<string, DerivativeMode> Modes = new(StringComparer.Ordinal)
    {
        ["auto"] = DerivativeMode.Auto,
        ["forward"] = DerivativeMode.Forward,
        ["reverse"] = DerivativeMode.Reverse,
    };

    /// <summary>The top-level "derivativeMode" of <paramref name="configPath"/>; AUTO when the file or the key is absent.</summary>
    public static DerivativeMode DefaultMode(string? configPath)
    {
        if (configPath is null || !File.Exists(configPath)) return DerivativeMode.Auto;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(configPath));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{configPath}: {e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty(DerivativeModeKey, out var value))
                return DerivativeMode.Auto;
            if (value.ValueKind == JsonValueKind.String && Modes.TryGetValue(value.GetString()!, out var mode)) return mode;
            throw new InvalidDataException(
                $"{configPath}: \"{DerivativeModeKey}\" must be one of \"auto\", \"forward\", \"reverse\", got {value.GetRawText()}");
        }
    }
}
