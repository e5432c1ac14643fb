using Grpc.Core;
using Microsoft.AspNetCore.Http;

namespace JacService.Server.Grpc;

/// <summary>The HTTP request behind a call, where Kestrel serves it; a call made in-process (the fuzz harness) has none.</summary>
internal static class CallHttpContext
{
    // GetHttpContext has no non-throwing form.
    public static HttpContext? Of(ServerCallContext context)
    {
        try
        {
            return context.GetHttpContext();
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }
}
