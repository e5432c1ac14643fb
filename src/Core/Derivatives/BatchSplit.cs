using static TorchSharp.torch;

namespace JacService.Core.Derivatives;

/// <summary>Runs a pass on slices of the batch when even one direction for the whole batch is over the working memory.</summary>
internal static class BatchSplit
{
    public static (Tensor[], Tensor[]) Run(Tensor[] inputs, long rows, Func<Tensor[], (Tensor[] Outputs, Tensor[] Derivatives)> pass)
    {
        long batch = inputs[0].size(0);
        var parts = new List<(Tensor[] Outputs, Tensor[] Derivatives)>();
        for (long start = 0; start < batch; start += rows)
        {
            long count = Math.Min(rows, batch - start);
            parts.Add(pass(inputs.Select(t => t.narrow(0, start, count)).ToArray()));
        }
        return (Enumerable.Range(0, parts[0].Outputs.Length).Select(i => cat(parts.Select(p => p.Outputs[i]).ToArray(), 0)).ToArray(),
                Enumerable.Range(0, parts[0].Derivatives.Length).Select(j => cat(parts.Select(p => p.Derivatives[j]).ToArray(), 0)).ToArray());
    }
}
