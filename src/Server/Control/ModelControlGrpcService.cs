using System.Diagnostics;
using Grpc.Core;
using JacService.Core;
using JacService.Protos.V1;
using JacService.Server.Models;

namespace JacService.Server.Control;

/// <summary>
/// Explicit model control: LoadModel and UnloadModel hand the name to the repository loader (which checks it is one
/// folder under the root and serializes the change with its polls), ListRepository shows the repository beside the
/// registry. The caller's token has been checked by <see cref="BearerTokenInterceptor"/> before any of this runs; the
/// error interceptor maps the loader's exceptions (a bad name, a missing model) to their status codes.
/// </summary>
public sealed partial class ModelControlGrpcService(
    ModelRepositoryLoader loader,
    RepositoryListing listing,
    ILogger<ModelControlGrpcService> logger) : ModelControl.ModelControlBase
{
    public override async Task<LoadModelResponse> LoadModel(LoadModelRequest request, ServerCallContext context)
    {
        long started = Stopwatch.GetTimestamp();
        try
        {
            await loader.LoadModelAsync(request.Model, context.CancellationToken);
        }
        catch (Exception e)
        {
            LogRefused("load", CallerText.Quote(request.Model), Milliseconds(started), e.Message);
            throw;
        }
        var model = listing.Get(request.Model);
        LogLoaded(model.Name, Milliseconds(started), Summary(model));
        return new LoadModelResponse { Model = model, Seconds = Stopwatch.GetElapsedTime(started).TotalSeconds };
    }

    public override async Task<UnloadModelResponse> UnloadModel(UnloadModelRequest request, ServerCallContext context)
    {
        long started = Stopwatch.GetTimestamp();
        IReadOnlyList<int> retired;
        try
        {
            retired = await loader.UnloadModelAsync(request.Model, context.CancellationToken);
        }
        catch (Exception e)
        {
            LogRefused("unload", CallerText.Quote(request.Model), Milliseconds(started), e.Message);
            throw;
        }
        var versions = retired.Order().Select(v => v.ToString()).ToList();
        LogUnloaded(request.Model, Milliseconds(started), versions.Count == 0 ? "none (no version was listed)" : string.Join(", ", versions));
        var response = new UnloadModelResponse { Model = request.Model };
        response.Versions.AddRange(versions);
        return response;
    }

    public override Task<ListRepositoryResponse> ListRepository(ListRepositoryRequest request, ServerCallContext context)
    {
        var response = new ListRepositoryResponse();
        if (request.Model.Length == 0) response.Models.AddRange(listing.List());
        else response.Models.Add(listing.Get(request.Model));
        return Task.FromResult(response);
    }

    private static double Milliseconds(long started) => Stopwatch.GetElapsedTime(started).TotalMilliseconds;

    private static string Summary(RepositoryModel model) => model.Versions.Count == 0
        ? "no version folders"
        : string.Join(", ", model.Versions.Select(v => v.Reason.Length > 0 ? $"{v.Version} {v.State} ({v.Reason})" : $"{v.Version} {v.State}"));

    [LoggerMessage(Level = LogLevel.Information, Message = "ModelControl loaded {Model} in {Milliseconds:F0} ms: {Versions}")]
    private partial void LogLoaded(string model, double milliseconds, string versions);

    [LoggerMessage(Level = LogLevel.Information, Message = "ModelControl unloaded {Model} in {Milliseconds:F0} ms; versions retired: {Versions}")]
    private partial void LogUnloaded(string model, double milliseconds, string versions);

    [LoggerMessage(Level = LogLevel.Warning, Message = "ModelControl {Operation} of {Model} failed after {Milliseconds:F0} ms: {Reason}")]
    private partial void LogRefused(string operation, string model, double milliseconds, string reason);
}
