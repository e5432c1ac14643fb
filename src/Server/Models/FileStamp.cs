namespace JacService.Server.Models;

/// <summary>A file's length and last write time: what changes while it is being written, and between two copies of it.</summary>
public readonly record struct FileStamp(long Length, DateTime LastWriteUtc)
{
    /// <summary>The file's stamp, or null when it is not there (or vanished while being looked at).</summary>
    public static FileStamp? Of(string path)
    {
        var info = new FileInfo(path);
        try
        {
            return info.Exists ? new FileStamp(info.Length, info.LastWriteTimeUtc) : null;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
