namespace JacService.Server.Models;

/// <summary>The stamps of the two files a version's snapshot is built from; equal stamps, same snapshot.</summary>
public readonly record struct VersionStamp(FileStamp? Model, FileStamp? Config);
