namespace JacService.Core;

/// <summary>
/// libtorch's error messages as the server passes them on. Its exceptions' text is the message, then "Exception raised
/// from ... (most recent call first):" and the C++ stack, frame by frame with library paths and addresses: noise in
/// a caller's status or GetModel's note, and a view of the server's file system to whoever sends a bad request.
/// </summary>
public static class NativeErrors
{
    private const string StackMarker = "Exception raised from ";

    /// <summary>The message without libtorch's C++ stack (where the server logs the exception itself, the log has it whole).</summary>
    public static string Trim(string message)
    {
        int at = message.IndexOf(StackMarker, StringComparison.Ordinal);
        return at < 0 ? message : message[..at].TrimEnd();
    }
}
