using System.Collections.Concurrent;
using JacService.Core.Onnx;
using JacService.Core.Ops;
using JacService.Core.Planning;
using static JacService.Core.Ops.Scalars;
using static TorchSharp.torch;

namespace JacService.Core.Derivatives;

/// <summary>
/// Second derivatives from the op table's curvature rules. The Laplacian, and the Hessian of few inputs, propagate
/// second-order directions forward (the forward Laplacian of Li et al. 2024, and the forward Hessian): one pass
/// carries the first-order directions G of wrt's basis and, after them, second-order directions S, one per Hessian
/// entry or one for the whole trace; each op's JVP rule maps S like G (all an op linear in its input needs), and its
/// curvature rule adds f''·(G ⊗ G). A Laplacian so costs about one forward Jacobian. The Hessian of many inputs
/// contracts each node's curvature terms with reverse-mode cotangents instead (<see cref="ContractedHessian"/>).
/// Entries, directions and, when even the smallest pass does not fit, the batch are split to fit the working memory.
/// </summary>
internal sealed class SecondOrderMode(ModelParts parts)
{
    // Working copies a curvature rule makes per second-order direction (the two gathered gradients, their product)
    // while one op runs, counted against the working memory with the directions carried.
    private const long PairTemporaries = 2;

    // The contraction's curvature terms are made and consumed at once, a handful of passes over each: in chunks of an
    // eighth of the largest temporary they stay in the caches (mlp_tanh's Hessian at batch 256 on the server's
    // executor: 644 → 372 ms per batch, mean of 6).
    private const long TermsPerTemporary = 8;

    /// <summary>
    /// Per-sample Hessians [B, ..out, ..in, ..in] of the outputs <paramref name="of"/> with respect to input
    /// <paramref name="wrt"/>, then (with <paramref name="includeJacobian"/>) their Jacobians [B, ..out, ..in].
    /// </summary>
    public (Tensor[] Outputs, Tensor[] Derivatives) Hessian(Tensor[] inputs, int wrt, int[] of, bool includeJacobian,
        HessianMethod method = HessianMethod.Auto) =>
        method switch
        {
            HessianMethod.Forward => ForwardHessian(inputs, wrt, of, includeJacobian),
            HessianMethod.Contracted => ContractedHessian(inputs, wrt, of, includeJacobian),
            _ => Chosen(inputs, wrt, of) == HessianMethod.Contracted ? ContractedHessian(inputs, wrt, of, includeJacobian) : ForwardHessian(inputs, wrt, of, includeJacobian),
        };

    /// <summary>
    /// Contraction saves carrying the n(n+1)/2 entries through every op, at the price of a reverse pass with one
    /// direction per output element (m) and a forward pass that keeps G; it wins when the entries far outnumber n + 2m
    /// (mlp_tanh: 528 entries against 64, 2-6x faster; see docs/benchmarks.md), and needs sample-major layouts. Near the
    /// balance the count misleads (two_inputs: 36 entries against 16, where forward was 2.1x faster at batch 1), so within
    /// a factor of <see cref="TimedWithin"/> either way both are timed on the first batch of each shape (Engine:CalibrateAuto)
    /// and the faster kept; beyond it the slower would cost the first caller too much to time.
    /// </summary>
    internal HessianMethod Chosen(Tensor[] inputs, int wrt, int[] of)
    {
        long n = Shapes.Product(inputs[wrt].Dims()[1..]);
        long m;
        using (var scope = NewDisposeScope())
        using (var plan = parts.Plans.Lease(inputs))
            m = of.Sum(o => parts.SampleElements(plan.Plan, o, inputs[0].size(0)));
        double entriesPerDirection = n * (n + 1) / 2.0 / (n + 2 * m);
        bool calibrate = parts.Limits.CalibrateAuto;
        if (entriesPerDirection <= (calibrate ? 1 / TimedWithin : 1) || !SampleAligned(inputs, wrt, of)) return HessianMethod.Forward;
        if (!calibrate || entriesPerDirection > TimedWithin) return HessianMethod.Contracted;
        var key = $"{wrt}|{string.Join(",", of)}|{Planning.Planner.Key(inputs.Select(t => t.Dims()).ToArray())}";
        return SharedEntries.GetOrCompute(_methods, key, () =>
        {
            var (forward, contracted) = AlternatingTimer.Least(() => ForwardHessian(inputs, wrt, of, false), () => ContractedHessian(inputs, wrt, of, false),
                gpu: parts.Limits.Device != Models.ComputeDevices.Cpu);
            return contracted < forward ? HessianMethod.Contracted : HessianMethod.Forward;
        });
    }

    /// <summary>How far the entries per direction may be from 1 for both methods to be timed; see <see cref="Chosen"/>.</summary>
    private const double TimedWithin = 4;

    /// <summary>The method timed faster, per (wrt, of, input shapes with the batch).</summary>
    private readonly ConcurrentDictionary<string, Lazy<HessianMethod>> _methods = new();

    /// <summary>
    /// The Hessian by carrying one second-order direction per entry (i ≤ j) through the whole graph: each op's JVP
    /// rule maps them like G, its curvature rule adds its own term. Works on any layout of intermediate values.
    /// </summary>
    private (Tensor[] Outputs, Tensor[] Derivatives) ForwardHessian(Tensor[] inputs, int wrt, int[] of, bool includeJacobian)
    {
        var graph = parts.Graph;
        long batch = inputs[0].size(0);
        var path = parts.Path(wrt, of);
        var sampleShape = inputs[wrt].Dims()[1..];
        long n = Shapes.Product(sampleShape);
        using var plan = parts.Plans.Lease(inputs);
        long fit = DirectionsThatFit(plan.Plan, path);
        if (fit < n + PairTemporaries + 1 && batch > 1)
            return BatchSplit.Run(inputs, Math.Max(1, batch * fit / (n + PairTemporaries + 1)), part => ForwardHessian(part, wrt, of, includeJacobian));

        var (left, right) = UpperTriangle(n);
        long entries = left.Length;
        long chunk = Math.Clamp((fit - n) / (1 + PairTemporaries), 1, entries);

        var sizes = of.Select(o => parts.SampleElements(plan.Plan, o, batch)).ToArray();
        var hessians = sizes.Select(m => zeros([batch, m, entries], graph.ComputeType)).ToArray();
        var jacobians = includeJacobian ? sizes.Select(m => zeros([batch, m, n], graph.ComputeType)).ToArray() : [];
        var outputs = new Tensor[graph.Outputs.Count];
        using var basis = FirstOrderSeed(eye(n, dtype: graph.ComputeType), batch, sampleShape);
        for (long p0 = 0; p0 < entries; p0 += chunk)
        {
            long k = Math.Min(chunk, entries - p0);
            using var scope = NewDisposeScope();
            var pairs = PairBasis.Entries(n, left[(int)p0..(int)(p0 + k)], right[(int)p0..(int)(p0 + k)]);
            var seed = cat([basis, zeros([k, batch, .. sampleShape], graph.ComputeType)], 0);
            var result = Evaluator.Run(graph, plan.Plan, inputs, graph.InputIds[wrt], seed, path.Carries, graph.OutputIds, pairs);
            if (p0 == 0) Keep(result, outputs, of, jacobians, n);
            for (int j = 0; j < of.Length; j++)
                if (result.Tangents[of[j]] is { } t) hessians[j].narrow(2, p0, k).copy_(t.narrow(0, n, k).reshape(k, batch, -1).permute(1, 2, 0));
        }
        return (outputs, [.. Symmetric(hessians, left, right, plan.Plan, of, batch, sampleShape), .. Shaped(jacobians, plan.Plan, of, batch, sampleShape)]);
    }

    /// <summary>
    /// The Hessian without carrying second-order directions through the graph. They flow linearly from where a
    /// curvature rule adds them to the outputs, so an output's entry is the sum over nodes of the node's curvature
    /// term contracted with the output's cotangent at that node: one forward pass carrying G, one reverse pass per
    /// output direction (as reverse mode's Jacobian), and at each non-linear node a batched product of the two.
    /// Cheaper than <see cref="ForwardHessian"/> when the linear ops are many and wide (an MLP's 528 entries then never
    /// meet a weight matrix), but the per-sample contraction needs each non-linear node's output laid out sample-major.
    /// </summary>
    private (Tensor[] Outputs, Tensor[] Derivatives) ContractedHessian(Tensor[] inputs, int wrt, int[] of, bool includeJacobian)
    {
        var graph = parts.Graph;
        long batch = inputs[0].size(0);
        var path = parts.Path(wrt, of);
        var sampleShape = inputs[wrt].Dims()[1..];
        long n = Shapes.Product(sampleShape);
        using var plan = parts.Plans.Lease(inputs);
        long budget = parts.Limits.WorkingMemoryBytes;
        long kept = plan.Plan.ElementsOf(path.ReadByReverse) * (1 + n) * parts.ElementSize;
        long perDirection = Math.Max(1, plan.Plan.TangentElementsPerDirection(path.Carries) * parts.ElementSize);
        // The kept values with their G, plus at least one cotangent direction and one entry's curvature terms; and no
        // value's G over the largest temporary.
        long sliceRows = batch;
        if (kept + 2 * perDirection > budget) sliceRows = batch * budget / (kept + 2 * perDirection);
        long perRow = n * (plan.Plan.LargestValueElements(path.Carries) / batch) * parts.ElementSize;
        if (perRow * sliceRows > parts.Limits.LargestTemporaryBytes) sliceRows = parts.Limits.LargestTemporaryBytes / Math.Max(1, perRow);
        if (sliceRows < batch && batch > 1)
            return BatchSplit.Run(inputs, Math.Max(1, sliceRows), part => ContractedHessian(part, wrt, of, includeJacobian));
        long room = Math.Max(budget - kept, 2 * perDirection);

        var (left, right) = UpperTriangle(n);
        long entries = left.Length;
        var sizes = of.Select(o => parts.SampleElements(plan.Plan, o, batch)).ToArray();
        long m = sizes.Sum();
        long perTemporary = parts.DirectionsPerTemporary(plan.Plan, path.Carries);
        long directionChunk = Math.Clamp(Math.Min(room / 2 / perDirection, perTemporary), 1, Math.Max(m, 1));
        long entryChunk = Math.Clamp(Math.Min(room / 2 / Math.Max(1, plan.Plan.LargestValueElements(path.Carries) * (1 + PairTemporaries) * parts.ElementSize),
            perTemporary / TermsPerTemporary), 1, entries);

        var seed = FirstOrderSeed(eye(n, dtype: graph.ComputeType), batch, sampleShape);
        var (values, tangents) = Evaluator.RunKeeping(graph, plan.Plan, inputs, path.ReadByReverse, graph.InputIds[wrt], seed, path.Carries);
        try
        {
            var outputs = graph.OutputIds.Select(id => values[id]!).ToArray();
            var jacobians = includeJacobian
                ? of.Select((o, j) => tangents[graph.OutputIds[o]] is { } t ? t.reshape(n, batch, -1).permute(1, 2, 0) : zeros([batch, sizes[j], n], graph.ComputeType)).ToArray()
                : [];
            var hessian = zeros([batch, m, entries], graph.ComputeType);
            using var identity = eye(m, dtype: graph.ComputeType);
            for (long k0 = 0; k0 < m; k0 += directionChunk)
            {
                long k = Math.Min(directionChunk, m - k0);
                using var scope = NewDisposeScope();
                var (seeds, _) = ReverseMode.OutputBasis(parts, plan.Plan, of, sizes, identity, k0, k, batch);
                var block = hessian.narrow(1, k0, k);
                Backward.Run(graph, plan.Plan, values, path, seeds, graph.InputIds[wrt],
                    (node, cotangents) => Contract(node, values, tangents, cotangents, left, right, entryChunk, block));
            }
            long start = 0;
            var perOutput = sizes.Select(size => { var h = hessian.narrow(1, start, size); start += size; return h; }).ToArray();
            return (outputs, [.. Symmetric(perOutput, left, right, plan.Plan, of, batch, sampleShape),
                .. Shaped(jacobians.Select(j => j.contiguous()).ToArray(), plan.Plan, of, batch, sampleShape)]);
        }
        finally
        {
            ReverseMode.Release(graph, plan.Plan, values, tangents);
        }
    }

    /// <summary>
    /// Adds to <paramref name="block"/> [B, K, entries] one node's curvature terms (over the entries, in chunks)
    /// contracted per sample with its outputs' cotangents [K, B, ..output].
    /// </summary>
    private void Contract(GraphNode node, Tensor?[] values, Tensor?[] tangents, Tensor?[] cotangents, long[] left, long[] right, long entryChunk, Tensor block)
    {
        var rule = OpTable.Rules[node.OpType];
        if (ReferenceEquals(rule.Curvature, OpRule.Linear)) return;
        var ins = node.Inputs.Select(id => id >= 0 && values[id] is { } v ? new Dual(v, tangents[id]) : (Dual?)null).ToArray();
        if (ins.All(d => d?.Tangent is null)) return;
        var graph = parts.Graph;
        var outs = node.Outputs.Select(id => id >= 0 ? values[id]! : null!).ToArray();
        var primal = new OpContext(node, graph.Opset, graph.ComputeType, ins);
        long batch = block.size(0), k = block.size(1), n = ins.First(d => d?.Tangent is not null)!.Value.Tangent!.size(0);
        if (rule.SecondDerivative is { } d2 && ins[0]?.Tangent is { } g && cotangents[0] is { } c0)
        {
            ContractElementwise(g, d2(primal, ins[0]!.Value.Value, outs[0]), c0, block, left, right, entryChunk);
            return;
        }
        for (long p0 = 0; p0 < left.Length; p0 += entryChunk)
        {
            long count = Math.Min(entryChunk, left.Length - p0);
            using var scope = NewDisposeScope();
            var terms = Evaluator.Curvature(node, rule, new CurvatureContext(primal, outs,
                PairBasis.Entries(n, left[(int)p0..(int)(p0 + count)], right[(int)p0..(int)(p0 + count)])));
            for (int o = 0; o < terms.Length && o < outs.Length; o++)
            {
                if (terms[o] is not { } term || cotangents[o] is not { } ct) continue;
                long per = outs[o].numel() / batch;
                // [B, entries, Y] x [B, Y, K], both views of the [count, B, Y] and [K, B, Y] layouts the rules produce.
                var entriesBySample = Tangents.Fit(term, outs[o].Dims()).reshape(count, batch, per).transpose(0, 1);
                block.narrow(2, p0, count).add_(entriesBySample.bmm(ct.reshape(k, batch, per).permute(1, 2, 0)).transpose(1, 2), S(1));
            }
        }
    }

    /// <summary>
    /// The contraction for y = f(x) elementwise, without forming pairs: per sample b and output direction k the entries
    /// are Σ_y C[k, b, y] f''[b, y] G[i, b, y] G[j, b, y], i.e. G_bᵀ diag(C_kb ⊙ f''_b) G_b, one batched product over
    /// [B, K·n, Y] x [B, Y, n] in slices of rows that keep [rows, K, n, Y] within a chunk of the size the pairs would take.
    /// </summary>
    private static void ContractElementwise(Tensor g, Tensor secondDerivative, Tensor cotangent, Tensor block, long[] left, long[] right, long entryChunk)
    {
        long n = g.size(0), batch = block.size(0), k = block.size(1);
        long per = g[0].numel() / batch;
        var gradients = g.reshape(n, batch, per).permute(1, 2, 0);                               // [B, Y, n]
        var weights = (cotangent * secondDerivative).reshape(k, batch, per).permute(1, 0, 2);   // [B, K, Y]
        using var upper = tensor(left.Zip(right, (i, j) => i * n + j).ToArray());
        long rows = Math.Clamp(entryChunk * batch / Math.Max(1, k * n), 1, batch);
        for (long r0 = 0; r0 < batch; r0 += rows)
        {
            long r = Math.Min(rows, batch - r0);
            using var scope = NewDisposeScope();
            var G = gradients.narrow(0, r0, r);
            var W = weights.narrow(0, r0, r).unsqueeze(2);
            // Symmetric: the first h rows against every column, then only the lower-right block, 3/4 of the products.
            long h = n / 2;
            var top = (W * G.narrow(2, 0, h).transpose(1, 2).unsqueeze(1)).reshape(r, k * h, per).bmm(G).reshape(r, k, h, n);
            var G2 = G.narrow(2, h, n - h);
            var corner = (W * G2.transpose(1, 2).unsqueeze(1)).reshape(r, k * (n - h), per).bmm(G2).reshape(r, k, n - h, n - h);
            var bottom = cat([top.narrow(3, h, n - h).transpose(2, 3), corner], 3);
            var full = cat([top, bottom], 2).reshape(r, k, n * n);
            block.narrow(0, r0, r).add_(full.index_select(2, upper), S(1));
        }
    }

    /// <summary>
    /// Whether every non-linear node on the path has its outputs laid out sample-major, which the contraction needs to
    /// keep samples apart. Where axis 0 is the batch in the plans for one and for two samples, it is. Where a value
    /// doubles its elements another way (torch's attention merges the batch and the heads into one axis, [B·heads, T, d]),
    /// two different samples are run together and each alone: the layout is sample-major when the pair's value is the
    /// first sample's followed by the second's. Cached per (wrt, of, per-sample shapes).
    /// </summary>
    private bool SampleAligned(Tensor[] inputs, int wrt, int[] of)
    {
        var key = $"{wrt}|{string.Join(",", of)}|{Planning.Planner.Key(inputs.Select(t => t.Dims()[1..]).ToArray())}";
        return _aligned.GetOrAdd(key, _ =>
        {
            var path = parts.Path(wrt, of);
            using var scope = NewDisposeScope();
            if (SamplePlans(inputs) is not { } plans) return false;
            using var one = plans.One;
            using var two = plans.Two;
            var unclear = one.Plan.Steps.Where(s => path.Carries[s.Index] && !ReferenceEquals(OpTable.Rules[s.OpType].Curvature, OpRule.Linear)
                    && OpTable.Rules[s.OpType].Curves(s.Inputs.Select(i => i >= 0 && path.DependsOnWrt[i]).ToArray()))
                .SelectMany(s => s.Outputs).Where(o => o >= 0 && !(one.Plan.ValueShapes[o] is [1, .. var a] && two.Plan.ValueShapes[o] is [2, .. var b] && a.SequenceEqual(b)))
                .ToArray();
            if (unclear.Length == 0) return true;
            if (unclear.Any(o => one.Plan.ValueShapes[o] is not { } a || two.Plan.ValueShapes[o] is not { } b || Shapes.Product(b) != 2 * Shapes.Product(a)))
                return false;
            return SampleMajor(inputs, one.Plan, two.Plan, unclear);
        });
    }

    /// <summary>
    /// The plans for one and for two samples of these inputs' shapes, or null where a model's batch is fixed by another
    /// input (indices of a given length, say) and they do not build: the forward method needs neither.
    /// </summary>
    private (PlanLease One, PlanLease Two)? SamplePlans(Tensor[] inputs)
    {
        PlanLease? one = null;
        try
        {
            one = parts.Plans.Lease(inputs.Select(t => (long[])[1, .. t.Dims()[1..]]).ToArray());
            return (one.Value, parts.Plans.Lease(inputs.Select(t => (long[])[2, .. t.Dims()[1..]]).ToArray()));
        }
        catch (Exception e) when (e is NodeEvaluationException or PlanTooLargeException)
        {
            one?.Dispose();
            return null;
        }
    }

    private bool SampleMajor(Tensor[] inputs, ExecutionPlan one, ExecutionPlan two, int[] values)
    {
        var graph = parts.Graph;
        var keep = new bool[graph.ValueCount];
        foreach (var o in values) keep[o] = true;
        // The request's first sample, and beside it that sample moved by fixed noise in every floating input.
        using var noise = new Generator(seed: 1);
        var first = inputs.Select(t => t.narrow(0, 0, 1)).ToArray();
        var second = first.Select(t => t.is_floating_point()
            ? t.Plus(randn(t.shape, t.dtype, generator: noise).to(t.device) * S(0.5)) : t).ToArray();
        try
        {
            var pair = Evaluator.RunKeeping(graph, two, first.Zip(second, (a, b) => cat([a, b], 0)).ToArray(), keep);
            var alone = new[] { first, second }.Select(x => Evaluator.RunKeeping(graph, one, x, keep)).ToArray();
            return values.All(o =>
            {
                var halves = pair[o]!.reshape(2, -1);
                double scale = Math.Max(1, halves.abs().max().to_type(ScalarType.Float64).item<double>());
                return Enumerable.Range(0, 2).All(i => halves[i].allclose(alone[i][o]!.reshape(-1), rtol: 1e-4, atol: 1e-5 * scale));
            });
        }
        catch (NodeEvaluationException)
        {
            // A sample the noise moved out of the model's domain: no evidence either way, so the forward method serves.
            return false;
        }
    }

    private readonly ConcurrentDictionary<string, bool> _aligned = new();

    /// <summary>The entries (i, j), i ≤ j, of an n x n symmetric matrix, row by row.</summary>
    private static (long[] Left, long[] Right) UpperTriangle(long n)
    {
        long entries = n * (n + 1) / 2;
        var left = new long[entries];
        var right = new long[entries];
        for (long i = 0, p = 0; i < n; i++)
            for (long j = i; j < n; j++, p++) (left[p], right[p]) = (i, j);
        return (left, right);
    }

    /// <summary>Per output, [B, m, entries] spread to both triangles and shaped [B, ..out, ..in, ..in].</summary>
    private Tensor[] Symmetric(Tensor[] entries, long[] left, long[] right, ExecutionPlan plan, int[] of, long batch, long[] sampleShape)
    {
        long n = Shapes.Product(sampleShape);
        using var upper = tensor(left.Zip(right, (i, j) => i * n + j).ToArray());
        using var lower = tensor(left.Zip(right, (i, j) => j * n + i).ToArray());
        return entries.Select((e, j) =>
        {
            var h = zeros([batch, e.size(1), n * n], e.dtype);
            h.index_copy_(2, upper, e);
            h.index_copy_(2, lower, e);
            return h.reshape([batch, .. parts.SampleShape(plan, of[j]), .. sampleShape, .. sampleShape]);
        }).ToArray();
    }

    /// <summary>
    /// Per-sample Laplacians [B, ..out] of the outputs <paramref name="of"/>: the sum of the second derivatives along
    /// the flat indices <paramref name="axes"/> of wrt's sample; then (with <paramref name="includeJacobian"/>) the
    /// Jacobians [B, ..out, ..in] with respect to every element of wrt.
    /// </summary>
    public (Tensor[] Outputs, Tensor[] Derivatives) Laplacian(Tensor[] inputs, int wrt, int[] of, int[] axes, bool includeJacobian)
    {
        var graph = parts.Graph;
        long batch = inputs[0].size(0);
        var path = parts.Path(wrt, of);
        var sampleShape = inputs[wrt].Dims()[1..];
        long n = Shapes.Product(sampleShape);
        using var plan = parts.Plans.Lease(inputs);
        long fit = DirectionsThatFit(plan.Plan, path);
        const long smallest = 1 + PairTemporaries + 1;
        if (fit < smallest && batch > 1)
            return BatchSplit.Run(inputs, Math.Max(1, batch * fit / smallest), part => Laplacian(part, wrt, of, axes, includeJacobian));

        // The trace is a sum over directions, so the directions themselves can be split across passes (each pass
        // carries some of them and the trace over those), unlike a Hessian's, whose entries pair any two of them.
        long[] directions = includeJacobian ? Enumerable.Range(0, (int)n).Select(i => (long)i).ToArray() : axes.Select(a => (long)a).ToArray();
        var summed = new HashSet<long>(axes.Select(a => (long)a));
        long chunk = Math.Clamp((fit - 1) / (1 + PairTemporaries), 1, Math.Max(directions.Length, 1));

        var sizes = of.Select(o => parts.SampleElements(plan.Plan, o, batch)).ToArray();
        var laplacians = sizes.Select(m => zeros([batch, m], graph.ComputeType)).ToArray();
        var jacobians = includeJacobian ? sizes.Select(m => zeros([batch, m, n], graph.ComputeType)).ToArray() : [];
        var outputs = new Tensor[graph.Outputs.Count];
        using var identity = eye(n, dtype: graph.ComputeType);
        for (long d0 = 0; d0 < Math.Max(directions.Length, 1); d0 += chunk)
        {
            long k = Math.Min(chunk, directions.Length - d0);
            using var scope = NewDisposeScope();
            var carried = directions[(int)d0..(int)(d0 + k)];
            var diagonal = Enumerable.Range(0, (int)k).Where(i => summed.Contains(carried[i])).Select(i => (long)i).ToArray();
            var pairs = PairBasis.Trace(k, diagonal.Length == k ? null : diagonal);
            var first = FirstOrderSeed(identity.index_select(0, tensor(carried)), batch, sampleShape);
            var seed = cat([first, zeros([1, batch, .. sampleShape], graph.ComputeType)], 0);
            var result = Evaluator.Run(graph, plan.Plan, inputs, graph.InputIds[wrt], seed, path.Carries, graph.OutputIds, pairs);
            if (d0 == 0)
                for (int i = 0; i < outputs.Length; i++) outputs[i] = result.Values[i].MoveToOuterDisposeScope();
            for (int j = 0; j < of.Length; j++)
            {
                if (result.Tangents[of[j]] is not { } t) continue;
                laplacians[j].add_(t.narrow(0, k, 1).reshape(batch, -1), S(1));
                if (includeJacobian) jacobians[j].narrow(2, d0, k).copy_(t.narrow(0, 0, k).reshape(k, batch, -1).permute(1, 2, 0));
            }
        }
        var shaped = laplacians.Select((l, j) => l.reshape([batch, .. parts.SampleShape(plan.Plan, of[j])]));
        return (outputs, [.. shaped, .. Shaped(jacobians, plan.Plan, of, batch, sampleShape)]);
    }

    /// <summary>
    /// Directions (first- and second-order alike) one pass can carry within the working memory and with every value's
    /// tangent under the largest temporary.
    /// </summary>
    private long DirectionsThatFit(ExecutionPlan plan, DerivativePath path)
    {
        long bytesPerDirection = Math.Max(1, plan.TangentElementsPerDirection(path.Carries) * parts.ElementSize);
        return Math.Max(1, Math.Min(parts.Limits.WorkingMemoryBytes / bytesPerDirection, parts.DirectionsPerTemporary(plan, path.Carries)));
    }

    /// <summary>Rows of an identity (one per direction, n wide) as tangents [K, B, ..sample], the same for every sample.</summary>
    private static Tensor FirstOrderSeed(Tensor rows, long batch, long[] sampleShape)
    {
        long k = rows.size(0);
        return rows.reshape([k, 1, .. sampleShape]).expand([k, batch, .. sampleShape]);
    }

    /// <summary>The first pass's outputs, and from its first-order directions the Jacobians when they are asked for.</summary>
    private static void Keep(Evaluator.Result result, Tensor[] outputs, int[] of, Tensor[] jacobians, long n)
    {
        for (int i = 0; i < outputs.Length; i++) outputs[i] = result.Values[i].MoveToOuterDisposeScope();
        for (int j = 0; j < jacobians.Length; j++)
        {
            if (result.Tangents[of[j]] is not { } t) continue;
            long batch = t.size(1);
            jacobians[j].copy_(t.narrow(0, 0, n).reshape(n, batch, -1).permute(1, 2, 0));
        }
    }

    private Tensor[] Shaped(Tensor[] jacobians, ExecutionPlan plan, int[] of, long batch, long[] sampleShape) =>
        jacobians.Select((jac, j) => jac.reshape([batch, .. parts.SampleShape(plan, of[j]), .. sampleShape])).ToArray();
}
