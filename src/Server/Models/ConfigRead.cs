namespace JacService.Server.Models;

/// <summary>A model's config.json as read once for all its versions: the settings, or why the file was refused.</summary>
public sealed record ConfigRead(ModelConfig? Config, InvalidDataException? Error);
