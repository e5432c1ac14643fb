using System.Runtime.InteropServices;

namespace JacService.Core.Models;

/// <summary>
/// What kind of file a path names, asked before it is opened. Opening a named pipe for reading waits until something
/// writes to it, so a model.onnx or config.json that is a FIFO would hang the loader forever; a character device such
/// as /dev/zero or /dev/urandom would read without end. .NET reports neither (FileInfo says "a file, length 0"), so the
/// type comes from statx(2), whose buffer has the same layout on every Linux architecture.
/// </summary>
public static class RegularFile
{
    private const int AtFdCwd = -100;          // AT_FDCWD: a relative path is relative to the working directory
    private const uint StatxType = 0x1;        // STATX_TYPE
    private const int ModeOffset = 28;         // struct statx: __u16 stx_mode
    private const int StatxSize = 256;         // sizeof(struct statx)

    /// <summary>
    /// Null when <paramref name="path"/> is a regular file (symbolic links followed, as Kubernetes volumes need) or does not
    /// exist (the open that follows says so); otherwise what it is instead, e.g. "a named pipe (FIFO)". Also null where the
    /// type cannot be asked (not Linux, or a C library without statx): the open then proceeds as before.
    /// </summary>
    public static string? WhatElse(string path)
    {
        if (!OperatingSystem.IsLinux()) return null;
        var buffer = new byte[StatxSize];
        try
        {
            if (statx(AtFdCwd, path, 0, StatxType, buffer) != 0) return null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
        int type = BitConverter.ToUInt16(buffer, ModeOffset) & 0xF000;
        return type switch
        {
            0x8000 => null,
            0x4000 => "a directory",
            0x1000 => "a named pipe (FIFO)",
            0x2000 => "a character device",
            0x6000 => "a block device",
            0xC000 => "a socket",
            _ => $"a file of type 0x{type:X4}",
        };
    }

    [DllImport("libc", EntryPoint = "statx", SetLastError = true)]
    private static extern int statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte[] buffer);
}
