using System.ComponentModel.DataAnnotations;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using JacService.Core.Derivatives;
using JacService.Server.Batching;

namespace JacService.Server.Models;

/// <summary>
/// A model's ROOT/&lt;model&gt;/config.json. Each top-level key is one section of per-model settings that starts
/// from the server's own values for that section, so a new per-model setting is one property here (plus its
/// server-wide value in <see cref="ServerDefaults"/>).
/// </summary>
public sealed class ModelConfig
{
    /// <summary>Overrides of the server's "Batching" settings for this model.</summary>
    public BatchingOptions Batching { get; set; } = new();

    /// <summary>The mode an AUTO request for this model gets: "auto" (the engine times both), "forward" or "reverse".</summary>
    public DerivativeMode DerivativeMode { get; set; } = DerivativeMode.Auto;

    /// <summary>Which versions of the model are served (replaces the server's Models:VersionPolicy whole).</summary>
    public VersionPolicy VersionPolicy { get; set; } = VersionPolicy.Default;

    /// <summary>The per-model settings before any config.json: the server's bound values.</summary>
    public static ModelConfig ServerDefaults(BatchingOptions batching, VersionPolicy? versions = null) =>
        new() { Batching = batching, VersionPolicy = versions ?? VersionPolicy.Default };

    /// <summary>
    /// <paramref name="defaults"/> overridden by the file at <paramref name="path"/>, if there is one. The file is read by
    /// the configuration binder (keys are case-insensitive, values convert as in appsettings.json) and refused,
    /// with the path and the reason, when it is not JSON, holds an unknown key or a value out of range.
    /// </summary>
    public static ModelConfig Load(string path, ModelConfig defaults, int maxBytes = DefaultMaxBytes)
    {
        if (!File.Exists(path)) return defaults;
        try
        {
            var file = JsonNode.Parse(ReadText(path, maxBytes), NodeOptions) as JsonObject
                ?? throw new InvalidDataException("expected a JSON object");
            if (file["batching"] is JsonObject batching && batching.ContainsKey(nameof(BatchingOptions.DrainSeconds)))
                throw new InvalidDataException("batching.drainSeconds is server-wide (Batching:DrainSeconds); a model cannot set it");
            RefuseUnknownKeys(file);
            CheckDerivativeMode(file);

            // Merged as JSON, not as configuration layers: layered configuration merges arrays index by index, so a
            // model's "buckets": [8] over the server's [1, 2, 4] would come out [8, 2, 4].
            var merged = (JsonObject)JsonNode.Parse(JsonSerializer.Serialize(defaults, SerializerOptions), NodeOptions)!;
            // A policy's forms exclude each other: the model's replaces the server's instead of merging key by key.
            if (file.Any(p => string.Equals(p.Key, nameof(VersionPolicy), StringComparison.OrdinalIgnoreCase))) merged.Remove(nameof(VersionPolicy));
            Overlay(merged, file);
            using var json = new MemoryStream(Encoding.UTF8.GetBytes(merged.ToJsonString()));
            var config = new ConfigurationBuilder().AddJsonStream(json).Build()
                .Get<ModelConfig>(o => o.ErrorOnUnknownConfiguration = true) ?? defaults;
            Validate(config.Batching);
            Validate(config.VersionPolicy);
            return config;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or InvalidDataException)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Limits:MaxConfigBytes's default: a config.json holds a few settings, well under a kilobyte.</summary>
    public const int DefaultMaxBytes = 1 << 20;

    /// <summary>
    /// The file's text, refused before it is opened when it is not a regular file (a named pipe would hold the scan until
    /// something wrote to it) and before it is read when the open file is over <paramref name="maxBytes"/>.
    /// </summary>
    private static string ReadText(string path, int maxBytes)
    {
        if (JacService.Core.Models.RegularFile.WhatElse(path) is { } other)
            throw new InvalidDataException($"{other}, not a regular file; refused without opening it");
        using var stream = File.OpenRead(path);
        if (stream.Length > maxBytes)
            throw new InvalidDataException($"the file has {stream.Length:N0} bytes, over Limits:MaxConfigBytes ({maxBytes:N0})");
        // The length checked, not whatever the file holds by the time it is read: one still growing ends up cut short (and
        // fails to parse) rather than over the limit.
        var bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        using var reader = new StreamReader(new MemoryStream(bytes), Encoding.UTF8);
        return reader.ReadToEnd();
    }

    /// <summary>
    /// The binder refuses unknown keys too, but names its option and the CLR type; this names the key and what the
    /// file may hold instead, in the file's own terms.
    /// </summary>
    private static void RefuseUnknownKeys(JsonObject file)
    {
        foreach (var (key, value) in file)
        {
            var section = Setting(typeof(ModelConfig), key)
                ?? throw new InvalidDataException($"unknown section '{key}'; known: {Settings(typeof(ModelConfig))}");
            if (value is not JsonObject settings) continue;
            foreach (var (name, _) in settings)
                if (Setting(section.PropertyType, name) is null)
                    throw new InvalidDataException($"unknown {key} setting '{name}'; known: {Settings(section.PropertyType)}");
        }
    }

    // The binder would accept any casing and numbers and name the CLR enum when it fails; a typo must fail the load
    // with the values the file may hold.
    private static void CheckDerivativeMode(JsonObject file)
    {
        if (Setting(typeof(ModelConfig), nameof(DerivativeMode)) is not { } property
            || file.FirstOrDefault(p => string.Equals(p.Key, property.Name, StringComparison.OrdinalIgnoreCase)) is not { Key: not null } entry)
            return;
        if (entry.Value is JsonValue v && v.TryGetValue<string>(out var text) && text is "auto" or "forward" or "reverse") return;
        throw new InvalidDataException($"\"{entry.Key}\" must be one of \"auto\", \"forward\", \"reverse\", got {entry.Value?.ToJsonString() ?? "null"}");
    }

    private static PropertyInfo? Setting(Type type, string name) =>
        type.GetProperty(name, BindingFlags.Public | BindingFlags.Instance | BindingFlags.IgnoreCase) is { CanWrite: true } p ? p : null;

    private static string Settings(Type type) => string.Join(", ", type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Where(p => p.CanWrite).Select(p => JsonNamingPolicy.CamelCase.ConvertName(p.Name)));

    private static void Validate(object section)
    {
        var errors = new List<ValidationResult>();
        if (!Validator.TryValidateObject(section, new ValidationContext(section), errors, validateAllProperties: true))
            throw new InvalidDataException(string.Join("; ", errors.Select(e => e.ErrorMessage)));
    }

    /// <summary>Values of <paramref name="top"/> replace those of <paramref name="bottom"/>; objects merge key by key, arrays are replaced whole.</summary>
    private static void Overlay(JsonObject bottom, JsonObject top)
    {
        foreach (var (key, value) in top)
        {
            if (value is JsonObject inner && bottom[key] is JsonObject under) Overlay(under, inner);
            else bottom[key] = value?.DeepClone();
        }
    }

    // Configuration keys are case-insensitive; the server's values are serialized PascalCase, files usually camelCase.
    private static readonly JsonNodeOptions NodeOptions = new() { PropertyNameCaseInsensitive = true };
    // Computed properties (DrainTimeout, ...) are not settings: left out, they cannot reach the binder as unknown keys.
    private static readonly JsonSerializerOptions SerializerOptions = new()
    {
        IgnoreReadOnlyProperties = true,
        Converters = { new JsonStringEnumConverter() },
    };
}
