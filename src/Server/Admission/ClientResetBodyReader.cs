using System.IO.Pipelines;
using Grpc.Core;
using JacService.Server.Grpc;
using Microsoft.AspNetCore.Http.Features;

namespace JacService.Server.Admission;

/// <summary>
/// The request body of a unary or server-streaming call, as grpc-dotnet reads its one message. Kestrel fails that read
/// with an IOException once the client has reset the call or closed its connection, even where the message had already
/// come, and before the call's RequestAborted is cancelled (Kestrel cancels it on the thread pool); grpc-dotnet logs any
/// such exception as an error with its stack trace: 29 of them for a client that started 46,000 Jacobians and cancelled
/// each after 2 ms. Here such a read fails as CANCELLED, which grpc-dotnet logs as a status (below the default level)
/// and the caller-error log counts. A request Kestrel refuses (BadHttpRequestException, an IOException too) is left as
/// it is.
/// </summary>
public sealed class ClientResetBodyReader(PipeReader inner, HttpContext context, CallerErrorLog callerErrors) : PipeReader, IRequestBodyPipeFeature
{
    public PipeReader Reader => this;

    public override bool TryRead(out ReadResult result)
    {
        try
        {
            return inner.TryRead(out result);
        }
        catch (IOException e) when (e is not BadHttpRequestException)
        {
            throw Cancelled();
        }
    }

    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        ValueTask<ReadResult> read;
        try
        {
            read = inner.ReadAsync(cancellationToken);
        }
        catch (IOException e) when (e is not BadHttpRequestException)
        {
            throw Cancelled();
        }
        return read.IsCompletedSuccessfully ? read : Awaited(read);
    }

    private async ValueTask<ReadResult> Awaited(ValueTask<ReadResult> read)
    {
        try
        {
            return await read;
        }
        catch (IOException e) when (e is not BadHttpRequestException)
        {
            throw Cancelled();
        }
    }

    public override void AdvanceTo(SequencePosition consumed)
    {
        try
        {
            inner.AdvanceTo(consumed);
        }
        catch (IOException e) when (e is not BadHttpRequestException)
        {
            throw Cancelled();
        }
    }

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        try
        {
            inner.AdvanceTo(consumed, examined);
        }
        catch (IOException e) when (e is not BadHttpRequestException)
        {
            throw Cancelled();
        }
    }

    public override void CancelPendingRead() => inner.CancelPendingRead();

    public override void Complete(Exception? exception = null) => inner.Complete(exception);

    public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);

    private RpcException Cancelled()
    {
        var status = new Status(StatusCode.Cancelled, "the client reset the call or closed its connection");
        callerErrors.Report(nameof(StatusCode.Cancelled), context.Request.Path.Value ?? "", status.Detail);
        return new RpcException(status);
    }
}
