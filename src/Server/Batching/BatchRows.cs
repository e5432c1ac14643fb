using JacService.Core.Models;

namespace JacService.Server.Batching;

/// <summary>Stacking requests' rows into one batch and cutting the batch's results back into rows.</summary>
public static class BatchRows
{
    /// <summary>
    /// The batch's inputs: each part's rows in order, then copies of the last row up to <paramref name="padded"/>;
    /// written into <paramref name="into"/> (one array per input, exactly padded rows long) when given.
    /// </summary>
    public static HostTensor[] Stack(IReadOnlyList<RequestPart> parts, int padded, float[][]? into = null)
    {
        var first = parts[0].Request.Inputs;
        var stacked = new HostTensor[first.Length];
        for (int i = 0; i < first.Length; i++)
        {
            long per = first[i].Count / first[i].Shape[0];
            var data = into?[i] ?? new float[padded * per];
            int row = 0;
            foreach (var part in parts)
            {
                Array.Copy(part.Request.Inputs[i].Data, part.RowStart * per, data, row * per, part.Rows * per);
                row += part.Rows;
            }
            // Padding repeats a real row, so padded rows stay valid inputs (finite, in range for integer inputs).
            for (; row < padded; row++) Array.Copy(data, (row - 1) * per, data, row * per, per);
            stacked[i] = new HostTensor([padded, .. first[i].Shape[1..]], data);
        }
        return stacked;
    }

    /// <summary>Rows [start, start + rows) of every output, Jacobian and second derivative, with the mode that computed them.</summary>
    public static EngineResult Slice(EngineResult result, int start, int rows) => new(
        result.Outputs.ToDictionary(p => p.Key, p => SliceRows(p.Value, start, rows)),
        result.Jacobians.ToDictionary(p => p.Key, p => SliceRows(p.Value, start, rows)))
    {
        Mode = result.Mode,
        SecondOrder = result.SecondOrder.ToDictionary(p => p.Key, p => SliceRows(p.Value, start, rows)),
    };

    /// <summary>
    /// Parts of one request, in row order, as one result. Parts run in different batches, and under AUTO batches of
    /// different sizes may run in different modes; the result reports the first part's (the values agree either way).
    /// </summary>
    public static EngineResult Concat(IReadOnlyList<EngineResult> parts) => new(
        parts[0].Outputs.Keys.ToDictionary(k => k, k => ConcatRows(parts.Select(p => p.Outputs[k]).ToList())),
        parts[0].Jacobians.Keys.ToDictionary(k => k, k => ConcatRows(parts.Select(p => p.Jacobians[k]).ToList())))
    {
        Mode = parts[0].Mode,
        SecondOrder = parts[0].SecondOrder.Keys.ToDictionary(k => k, k => ConcatRows(parts.Select(p => p.SecondOrder[k]).ToList())),
    };

    /// <summary>Rows [start, start + rows) of a tensor with the batch axis first, as a new tensor.</summary>
    public static HostTensor SliceRows(HostTensor t, int start, int rows)
    {
        long per = t.Shape[0] == 0 ? 0 : t.Count / t.Shape[0];
        var data = FloatArrayPool.Shared.Rent(checked((int)(rows * per)));
        Array.Copy(t.Data, start * per, data, 0, rows * per);
        return new HostTensor([rows, .. t.Shape[1..]], data);
    }

    private static HostTensor ConcatRows(IReadOnlyList<HostTensor> parts)
    {
        long rows = parts.Sum(p => p.Shape[0]);
        var data = FloatArrayPool.Shared.Rent(parts.Sum(p => p.Data.Length));
        int offset = 0;
        foreach (var p in parts)
        {
            p.Data.CopyTo(data, offset);
            offset += p.Data.Length;
        }
        return new HostTensor([rows, .. parts[0].Shape[1..]], data);
    }
}
