namespace JacService.Core.Graphs;

/// <summary>A recorded pass (see <see cref="IGraphRecorder"/>); disposing it frees the graph and its memory.</summary>
internal interface IReplayableGraph : IDisposable
{
    /// <summary>Runs the recorded pass again, writing its static outputs.</summary>
    void Replay();
}
