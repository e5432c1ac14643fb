namespace JacService.Server.Models;

/// <summary>
/// A version folder as the scan saw it. <see cref="Stamp"/> changes whenever its model.onnx or its model's config.json
/// changes; <see cref="Marked"/> says the folder holds the marker file that declares the copy complete.
/// </summary>
public sealed record FoundVersion(int Version, string ModelPath, VersionStamp Stamp, bool Marked);
