using System.Net.Sockets;
using Grpc.Core;

namespace JacService.Jac.Tests;

/// <summary>
/// How jac explains a connection that failed before any answer. The mutual-TLS refusal reaches the client in more than
/// one shape depending on timing (TlsVerbTests sees the usual one; CI once saw INTERNAL), so each shape is built here.
/// </summary>
public sealed class ErrorsTests
{
    private static RpcException Failed(StatusCode code, Exception debug) => new(new Status(code, "Error starting gRPC call. " + debug.Message, debug));

    public static TheoryData<StatusCode, Exception> ClosedDuringTheHandshake => new()
    {
        { StatusCode.Unavailable, new HttpRequestException("An error occurred while sending the request.", new IOException("The response ended prematurely.")) },
        { StatusCode.Internal, new HttpRequestException("An error occurred while sending the request.", new IOException("Received an unexpected EOF or 0 bytes from the transport stream.")) },
    };

    [Theory]
    [MemberData(nameof(ClosedDuringTheHandshake))]
    public async Task AConnectionClosedBeforeAnyAnswerOverTlsAsksForAClientCertificate(StatusCode code, Exception debug)
    {
        using var connection = new Connection("https://127.0.0.1:1");
        var explained = await Errors.ExplainAsync(Failed(code, debug), connection, model: null);
        Assert.StartsWith("https://127.0.0.1:1 closed the connection during the handshake.", explained.Message);
        Assert.Contains("give --cert and --key", explained.Message);
    }

    [Fact]
    public async Task ARefusedConnectionIsNoServerThere()
    {
        using var connection = new Connection("https://127.0.0.1:1");
        var refused = new HttpRequestException("Connection refused (127.0.0.1:1)", new SocketException((int)SocketError.ConnectionRefused));
        var explained = await Errors.ExplainAsync(Failed(StatusCode.Unavailable, refused), connection, model: null);
        Assert.StartsWith("cannot reach a JacService server at https://127.0.0.1:1", explained.Message);
    }

    [Fact]
    public async Task AnInternalErrorOfTheServerIsReportedAsItIs()
    {
        using var connection = new Connection("https://127.0.0.1:1");
        var explained = await Errors.ExplainAsync(new RpcException(new Status(StatusCode.Internal, "boom")), connection, model: null);
        Assert.Equal("Internal: boom", explained.Message);
    }
}
