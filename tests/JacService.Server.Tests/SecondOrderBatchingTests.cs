using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Server.Batching;
using JacService.Server.Telemetry;
using Microsoft.Extensions.Time.Testing;

namespace JacService.Server.Tests;

/// <summary>
/// Hessian and Laplacian requests in the batcher's data structures: which requests may share a pass, and a request's
/// second derivatives cut into rows and put back together when it is split across batches.
/// </summary>
public class SecondOrderBatchingTests
{
    private static readonly HostTensor[] Sample = [new HostTensor([2, 3], new float[6])];

    private static WorkKey Hessian(bool includeJacobian = false) =>
        WorkKey.For(WorkKind.Hessian, Sample, 0, [0], DerivativeMode.Forward, includeJacobian);

    private static WorkKey Laplacian(int[] axes, bool includeJacobian = false) =>
        WorkKey.For(WorkKind.Laplacian, Sample, 0, [0], DerivativeMode.Forward, includeJacobian, axes);

    [Fact]
    public void EqualRequestsGetEqualKeysAndHashes()
    {
        Assert.Equal(Hessian(includeJacobian: true), Hessian(includeJacobian: true));
        Assert.Equal(Hessian(includeJacobian: true).GetHashCode(), Hessian(includeJacobian: true).GetHashCode());
        // Separate arrays with the same axes: compared by value, not by reference.
        Assert.Equal(Laplacian([0, 2]), Laplacian([0, 2]));
        Assert.Equal(Laplacian([0, 2]).GetHashCode(), Laplacian([0, 2]).GetHashCode());
    }

    [Fact]
    public void IncludeJacobianKeepsRequestsApart()
    {
        Assert.NotEqual(Hessian(includeJacobian: false), Hessian(includeJacobian: true));
        Assert.NotEqual(Hessian(includeJacobian: false).GetHashCode(), Hessian(includeJacobian: true).GetHashCode());
        Assert.NotEqual(Laplacian([0, 1, 2], includeJacobian: false), Laplacian([0, 1, 2], includeJacobian: true));
    }

    [Fact]
    public void DifferentAxesKeepLaplaciansApart()
    {
        Assert.NotEqual(Laplacian([0, 1]), Laplacian([0, 2]));
        Assert.NotEqual(Laplacian([0, 1]), Laplacian([0, 1, 2]));
        Assert.NotEqual(Laplacian([0, 1]).GetHashCode(), Laplacian([0, 2]).GetHashCode());
        Assert.NotEqual(Laplacian([0, 1]).GetHashCode(), Laplacian([0, 1, 2]).GetHashCode());
    }

    [Fact]
    public void SecondOrderWorkNeverSharesAPassWithOtherKinds()
    {
        var jacobian = WorkKey.For(WorkKind.Jacobian, Sample, 0, [0], DerivativeMode.Forward);
        Assert.NotEqual(jacobian, Hessian());
        Assert.NotEqual(Hessian(), Laplacian([]));
        Assert.NotEqual(Laplacian([0, 1, 2]), WorkKey.For(WorkKind.Hessian, Sample, 0, [0], DerivativeMode.Forward, axes: [0, 1, 2]));
        // An index moved from of to axes is other work.
        Assert.NotEqual(
            WorkKey.For(WorkKind.Laplacian, Sample, 0, [0, 1], DerivativeMode.Forward, axes: [2]),
            WorkKey.For(WorkKind.Laplacian, Sample, 0, [0], DerivativeMode.Forward, axes: [1, 2]));
    }

    [Fact]
    public void TheQueueBatchesOnlyRequestsWithTheSameAxes()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.Parse("2026-01-01T00:00:00Z"));
        var queue = new BatchQueue(new BatchingOptions { MaxBatchSize = 8, MaxQueueDelayMicroseconds = 0 }, clock);
        PendingRequest Request() => new([new HostTensor([1, 3], new float[3])], clock.GetUtcNow(), null, CancellationToken.None);
        queue.TryEnqueue(Laplacian([0, 1]), Request());
        queue.TryEnqueue(Laplacian([0, 2]), Request());
        queue.TryEnqueue(Laplacian([0, 1]), Request());
        var first = queue.TryTakeBatch()!;
        var second = queue.TryTakeBatch()!;
        Assert.Equal((Laplacian([0, 1]), 2), (first.Key, first.Parts.Count));
        Assert.Equal((Laplacian([0, 2]), 1), (second.Key, second.Parts.Count));
    }

    [Fact]
    public void KindsHaveTheirMetricNames()
    {
        Assert.Equal("hessian", JacServiceMetrics.KindName(WorkKind.Hessian));
        Assert.Equal("laplacian", JacServiceMetrics.KindName(WorkKind.Laplacian));
    }

    /// <summary>
    /// A batch result of <paramref name="rows"/> rows: output [rows, 1], Jacobian [rows, 1, 2], Hessian [rows, 1, 2, 2],
    /// every value its row id times 100 plus its position in the row, so a misplaced row shows.
    /// </summary>
    private static EngineResult BatchResult(int rows, int firstRow = 0)
    {
        HostTensor Rows(long[] sample)
        {
            long per = sample.Aggregate(1L, (p, d) => p * d);
            var data = new float[rows * per];
            for (int r = 0; r < rows; r++)
                for (int i = 0; i < per; i++) data[r * per + i] = (firstRow + r) * 100 + i;
            return new HostTensor([rows, .. sample], data);
        }
        return new EngineResult(new Dictionary<string, HostTensor> { ["u"] = Rows([1]) }, new Dictionary<string, HostTensor> { ["u"] = Rows([1, 2]) })
        {
            Mode = DerivativeMode.Forward,
            SecondOrder = new Dictionary<string, HostTensor> { ["u"] = Rows([1, 2, 2]) },
        };
    }

    [Fact]
    public void SlicingCutsTheSecondDerivativesIntoTheCallersRows()
    {
        var sliced = BatchRows.Slice(BatchResult(5), 2, 2);

        var hessian = sliced.SecondOrder["u"];
        Assert.Equal([2L, 1, 2, 2], hessian.Shape);
        Assert.Equal([200f, 201, 202, 203, 300, 301, 302, 303], hessian.Data);
        Assert.Equal([2L, 1, 2], sliced.Jacobians["u"].Shape);
        Assert.Equal([200f, 201, 300, 301], sliced.Jacobians["u"].Data);
        Assert.Equal(DerivativeMode.Forward, sliced.Mode);
    }

    [Fact]
    public void ARequestSplitAcrossBatchesGetsItsSecondDerivativesBackInOrder()
    {
        var whole = BatchResult(5);
        var joined = BatchRows.Concat([BatchResult(2), BatchResult(2, firstRow: 2), BatchResult(1, firstRow: 4)]);

        Assert.Equal(whole.SecondOrder["u"].Shape, joined.SecondOrder["u"].Shape);
        Assert.Equal(whole.SecondOrder["u"].Data, joined.SecondOrder["u"].Data);
        Assert.Equal(whole.Jacobians["u"].Data, joined.Jacobians["u"].Data);
        Assert.Equal(whole.Outputs["u"].Data, joined.Outputs["u"].Data);
    }

    [Fact]
    public async Task APendingRequestAssemblesSecondOrderPartsCompletedOutOfOrder()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.Parse("2026-01-01T00:00:00Z"));
        var queue = new BatchQueue(new BatchingOptions { MaxBatchSize = 2, MaxQueueDelayMicroseconds = 0 }, clock);
        var request = new PendingRequest([new HostTensor([5, 3], new float[15])], clock.GetUtcNow(), null, CancellationToken.None);
        queue.TryEnqueue(Hessian(), request);
        var parts = new List<RequestPart>();
        while (queue.TryTakeBatch() is { } batch) parts.AddRange(batch.Parts);
        Assert.Equal([2, 2, 1], parts.Select(p => p.Rows));

        foreach (var part in parts.AsEnumerable().Reverse())
            part.Request.CompletePart(part.Index, BatchResult(part.Rows, firstRow: part.RowStart));

        var result = await request.Task;
        Assert.Equal(BatchResult(5).SecondOrder["u"].Data, result.SecondOrder["u"].Data);
    }

    [Fact]
    public void FirstOrderResultsStayWithoutSecondDerivatives()
    {
        var first = new EngineResult(BatchResult(3).Outputs, BatchResult(3).Jacobians);
        Assert.Empty(BatchRows.Slice(first, 1, 1).SecondOrder);
        Assert.Empty(BatchRows.Concat([first, first]).SecondOrder);
    }
}
