using JacService.Core.Onnx;
using static JacService.Core.Ops.Scalars;
using static TorchSharp.torch;

namespace JacService.Core.Ops;

/// <summary>Shape and indexing ops. Each tangent rule is the same map applied past the basis axis.</summary>
internal static class ShapeOps
{
    public static Dual[] Constant(OpContext c) => [new Dual(ConstantTensors.FromAttribute(c.Attr, c.ComputeType), null)];

    public static Dual[] Shape(OpContext c)
    {
        var shape = c.In(0).Shape;
        long rank = shape.Length;
        long start = Clamp(c.Attr.Int("start", 0), rank), end = Clamp(c.Attr.Int("end", rank), rank);
        return [new Dual(tensor(shape[(int)start..(int)Math.Max(start, end)], ScalarType.Int64), null)];

        static long Clamp(long axis, long rank) => Math.Clamp(axis < 0 ? axis + rank : axis, 0, rank);
    }

    /// <summary>Size: the number of elements, an int64 scalar.</summary>
    public static Dual[] Size(OpContext c) => [new Dual(tensor(Sizes.Elements(c.In(0).Shape), ScalarType.Int64), null)];

    /// <summary>
    /// OneHot: the on value where an index meets its position along the new axis, the off value elsewhere; negative
    /// indices count from the back, and one outside [-depth, depth) gives a row of off values. No derivative flows through
    /// the indices (it is piecewise constant there), and its values may not depend on wrt (NonDifferentiableInputs).
    /// </summary>
    public static Dual[] OneHot(OpContext c)
    {
        var indices = c.In(0).Value.to_type(ScalarType.Int64);
        long depth = OneHotDepth(c);
        var values = c.In(2).Value;
        Shapes.Require(values.numel() == 2, () => $"OneHot takes values [off, on], got {values.numel()} values");
        long axis = Shapes.Axis(c.Attr.Int("axis", -1), indices.dim() + 1);
        var wrapped = where(indices.lt(L(0)), indices.add(L(depth), L(1)), indices);
        var valid = wrapped.ge(L(0)).logical_and(wrapped.lt(L(depth)));
        var hot = nn.functional.one_hot(wrapped.masked_fill(valid.logical_not(), L(0)), depth).to_type(ScalarType.Bool).logical_and(valid.unsqueeze(-1));
        var flat = values.reshape(2);
        return [new Dual(where(hot, flat[1], flat[0]).movedim([-1L], [axis]).contiguous(), null)];
    }

    public static long OneHotAllocates(OpContext c) => c.In(0).Value.numel() * OneHotDepth(c);

    private static long OneHotDepth(OpContext c)
    {
        var depth = HostValues.Reals(c.In(1).Value);
        Shapes.Require(depth.Length == 1 && depth[0] >= 1, () => $"OneHot takes a depth of one positive value, got {Shapes.Text(depth.Select(d => (long)d).ToArray())}");
        return (long)depth[0];
    }

    public static Dual[] ConstantOfShape(OpContext c)
    {
        var shape = HostValues.Ints(c.In(0).Value);
        Shapes.Require(shape.All(d => d >= 0), () => $"ConstantOfShape got negative dimensions {Shapes.Text(shape)}");
        var value = c.Attr.Tensor("value") is { } proto
            ? TensorProtoReader.ToTensor(proto, c.ComputeType)
            : tensor(0f).to_type(c.ComputeType);
        return [new Dual(value.reshape(1).expand(shape).contiguous(), null)];
    }

    public static long ConstantOfShapeAllocates(OpContext c) => Sizes.Elements(HostValues.Ints(c.In(0).Value));

    public static Dual[] Dropout(OpContext c)
    {
        var x = c.In(0);
        if (c.OutputCount < 2) return [x];
        // Inference: the identity, and a mask that keeps everything.
        return [x, new Dual(x.Value.ones_like(ScalarType.Bool), null)];
    }

    public static Dual[] Cast(OpContext c)
    {
        var x = c.In(0);
        long to = c.Attr.Int("to", 0);
        Shapes.Require(ElementTypes.TryFromOnnx((int)to, out var type), () => $"Cast to ONNX element type {to} is not supported");
        var target = type.DeviceType(c.ComputeType);
        if (x.Value.dtype == target) return [x];
        // Only float-to-float casts carry derivatives; anything through an integer is piecewise constant.
        return [new Dual(x.Value.to_type(target), null)];
    }

    /// <summary>
    /// CastLike (15): x cast to the element type of the second input, which lends its type only: its value, and so any
    /// derivative through it, never reaches the result.
    /// </summary>
    public static Dual[] CastLike(OpContext c)
    {
        var x = c.In(0);
        var target = c.In(1).Value.dtype;
        if (x.Value.dtype == target) return [new Dual(x.Value.alias(), x.Tangent)];
        var y = x.Value.to_type(target);
        return [new Dual(y, x.Value.is_floating_point() && y.is_floating_point() ? x.Tangent?.to_type(target) : null)];
    }

    public static Tensor Reshape(OpContext c, Tensor x)
    {
        var requested = HostValues.Ints(c.In(1).Value);
        bool allowZero = c.Attr.Int("allowzero", 0) != 0;
        var input = x.Dims();
        var target = new long[requested.Length];
        int inferred = -1;
        for (int i = 0; i < requested.Length; i++)
        {
            long d = requested[i];
            if (d == 0 && !allowZero)
            {
                int axis = i;
                Shapes.Require(axis < input.Length, () => $"Reshape copies axis {axis} of an input of rank {input.Length}");
                d = input[i];
            }
            else if (d == -1)
            {
                Shapes.Require(inferred < 0, () => $"Reshape target {Shapes.Text(requested)} has more than one -1");
                inferred = i;
            }
            else Shapes.Require(d >= 0, () => $"Reshape target {Shapes.Text(requested)} has a negative dimension");
            target[i] = d;
        }
        long total = Shapes.Product(input);
        if (inferred >= 0)
        {
            long known = Shapes.Product(target.Where((_, i) => i != inferred));
            Shapes.Require(known > 0 && total % known == 0,
                () => $"cannot reshape {Shapes.Text(input)} to {Shapes.Text(requested)}");
            target[inferred] = total / known;
        }
        Shapes.Require(Shapes.Product(target) == total, () => $"cannot reshape {Shapes.Text(input)} to {Shapes.Text(requested)}");
        return x.reshape(target);
    }

    public static Tensor Flatten(OpContext c, Tensor x)
    {
        var s = x.Dims();
        long axis = c.Attr.Int("axis", 1);
        if (axis < 0) axis += s.Length;
        Shapes.Require(axis >= 0 && axis <= s.Length, () => $"Flatten axis {c.Attr.Int("axis", 1)} is out of range for rank {s.Length}");
        return x.reshape(Shapes.Product(s[..(int)axis]), Shapes.Product(s[(int)axis..]));
    }

    public static Tensor Squeeze(OpContext c, Tensor x)
    {
        var s = x.Dims();
        var axes = c.Optional(1) is { } a ? HostValues.Ints(a.Value).Select(v => Shapes.Axis(v, s.Length)).ToHashSet()
            : Enumerable.Range(0, s.Length).Where(i => s[i] == 1).Select(i => (long)i).ToHashSet();
        foreach (var axis in axes)
            Shapes.Require(s[axis] == 1, () => $"Squeeze axis {axis} has size {s[axis]}, not 1");
        return x.reshape(s.Where((_, i) => !axes.Contains(i)).ToArray());
    }

    public static Tensor Unsqueeze(OpContext c, Tensor x)
    {
        var s = x.Dims();
        var raw = HostValues.Ints(c.In(1).Value);
        long rank = s.Length + raw.Length;
        var axes = raw.Select(v => Shapes.Axis(v, rank)).ToHashSet();
        Shapes.Require(axes.Count == raw.Length, () => $"Unsqueeze axes {Shapes.Text(raw)} repeat an axis");
        var shape = new long[rank];
        for (int i = 0, j = 0; i < rank; i++) shape[i] = axes.Contains(i) ? 1 : s[j++];
        return x.reshape(shape);
    }

    public static long[] Permutation(OpContext c, Tensor x)
    {
        long rank = x.dim();
        var perm = c.Attr.Ints("perm") ?? Enumerable.Range(0, (int)rank).Reverse().Select(i => (long)i).ToArray();
        Shapes.Require(perm.Length == rank && perm.Order().SequenceEqual(Enumerable.Range(0, (int)rank).Select(i => (long)i)),
            () => $"Transpose perm {Shapes.Text(perm)} is not a permutation of rank {rank}");
        return perm;
    }

    public static Dual[] Gather(OpContext c)
    {
        var data = c.In(0);
        var indices = c.In(1).Value;
        var s = data.Shape;
        long axis = Shapes.Axis(c.Attr.Int("axis", 0), s.Length);
        var flat = AxisIndices(indices, s[axis], axis, "Gather").flatten();
        long[] outShape = [.. s[..(int)axis], .. indices.Dims(), .. s[((int)axis + 1)..]];
        var y = data.Value.index_select(axis, flat).reshape(outShape);
        var t = data.Tangent?.index_select(axis + 1, flat).reshape(Tangents.WithBasis(data.Tangent.size(0), outShape));
        return [new Dual(y, t)];
    }

    /// <summary>GatherElements: y = data indexed along the axis by indices of the same rank (torch.gather); the tangent gathered alike.</summary>
    public static Dual[] GatherElements(OpContext c)
    {
        var data = c.In(0);
        long axis = Shapes.Axis(c.Attr.Int("axis", 0), data.Rank);
        var indices = ElementIndices(c.In(1).Value, data.Shape, axis);
        var y = data.Value.gather(axis, indices);
        var t = data.Tangent is { } dt ? dt.gather(axis + 1, indices.unsqueeze(0).expand(Tangents.WithBasis(dt.size(0), indices.Dims()))) : null;
        return [new Dual(y, t)];
    }

    /// <summary>GatherElements' or ScatterElements' indices, of the data's rank, as int64 within [0, size) of the axis.</summary>
    private static Tensor ElementIndices(Tensor indices, long[] shape, long axis, string op = "GatherElements")
    {
        Shapes.Require(indices.dim() == shape.Length, () => $"{op} indices {Shapes.Text(indices.Dims())} and data {Shapes.Text(shape)} differ in rank");
        return AxisIndices(indices, shape[axis], axis, op);
    }

    public static string? ValidateScatterElements(GraphNode node, int opset) =>
        node.Attributes.String("reduction", "none") is "none" or "add" ? null
            : $"reduction '{node.Attributes.String("reduction", "none")}' is not supported (none, add)";

    /// <summary>
    /// ScatterElements: the data with the updates written (reduction none) or added (add) at the indices along an axis;
    /// linear in both, so their tangents are scattered alike.
    /// </summary>
    public static Dual[] ScatterElements(OpContext c)
    {
        var (data, updates) = (c.In(0), c.In(2));
        long axis = Shapes.Axis(c.Attr.Int("axis", 0), data.Rank);
        var indices = ScatterIndices(c, data.Shape, updates.Shape, axis);
        bool add = c.Attr.String("reduction", "none") == "add";
        var y = add ? data.Value.scatter_add(axis, indices, updates.Value) : data.Value.scatter(axis, indices, updates.Value);
        if (data.Tangent is null && updates.Tangent is null) return [new Dual(y, null)];
        long k = c.K;
        var td = data.Tangent is { } a ? Tangents.Fit(a, data.Shape) : Tangents.Zeros(k, data.Value);
        var tu = updates.Tangent is { } b ? Tangents.Fit(b, updates.Shape) : Tangents.Zeros(k, updates.Value);
        var spread = indices.unsqueeze(0).expand(Tangents.WithBasis(k, indices.Dims()));
        return [new Dual(y, add ? td.scatter_add(axis + 1, spread, tu) : td.scatter(axis + 1, spread, tu))];
    }

    // The transpose: the data's cotangent passes where nothing was written over it (everywhere, for add); the updates'
    // is gathered from where they went.
    public static Tensor?[] ScatterElementsVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (c.Cotangent(0) is not { } ct) return result;
        var (data, updates) = (c.In(0), c.In(2));
        long axis = Shapes.Axis(c.Attr.Int("axis", 0), data.dim());
        var indices = ScatterIndices(c.Primal(), data.Dims(), updates.Dims(), axis);
        var spread = indices.unsqueeze(0).expand(Tangents.WithBasis(ct.size(0), indices.Dims()));
        if (c.Needs(0))
            result[0] = c.Attr.String("reduction", "none") == "add" ? ct
                : ct.scatter(axis + 1, spread, zeros(Tangents.WithBasis(ct.size(0), indices.Dims()), ct.dtype, ct.device));
        if (c.Needs(2)) result[2] = ct.gather(axis + 1, spread);
        return result;
    }

    public static string? ValidateScatterNd(GraphNode node, int opset) => ValidateScatterElements(node, opset);

    /// <summary>
    /// ScatterND: the data with the updates written (reduction none) or added (add) at index tuples into its leading k
    /// axes, run on the data read as [P, ..rest] (P the product of those axes) at each tuple's flat position; linear in
    /// both, so their tangents are written or added alike past the basis axis.
    /// </summary>
    public static Dual[] ScatterNd(OpContext c)
    {
        var (data, updates) = (c.In(0), c.In(2));
        var (flat, positions, rows) = NdPositions(c, data.Shape, updates.Shape);
        bool add = c.Attr.String("reduction", "none") == "add";
        Tensor Write(Tensor into, Tensor values, long axis) => add ? into.index_add(axis, positions, values, S(1)) : into.index_copy(axis, positions, values);
        var y = Write(data.Value.reshape(flat), updates.Value.reshape(rows), 0).reshape(data.Shape);
        if (data.Tangent is null && updates.Tangent is null) return [new Dual(y, null)];
        long k = c.K;
        var td = data.Tangent is { } a ? Tangents.Fit(a, data.Shape) : Tangents.Zeros(k, data.Value);
        var tu = updates.Tangent is { } b ? Tangents.Fit(b, updates.Shape) : Tangents.Zeros(k, updates.Value);
        var t = Write(td.reshape(Tangents.WithBasis(k, flat)), tu.reshape(Tangents.WithBasis(k, rows)), 1);
        return [new Dual(y, t.reshape(Tangents.WithBasis(k, data.Shape)))];
    }

    // The transpose: the updates' cotangent read from where they went; the data's passes where nothing was written over
    // it (everywhere, for add).
    public static Tensor?[] ScatterNdVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (c.Cotangent(0) is not { } ct) return result;
        var (data, updates) = (c.In(0).Dims(), c.In(2).Dims());
        var (flat, positions, rows) = NdPositions(c.Primal(), data, updates);
        long k = ct.size(0);
        var spread = ct.reshape(Tangents.WithBasis(k, flat));
        var gathered = spread.index_select(1, positions);
        if (c.Needs(0))
            result[0] = c.Attr.String("reduction", "none") == "add" ? ct
                : spread.index_copy(1, positions, zeros_like(gathered)).reshape(Tangents.WithBasis(k, data));
        if (c.Needs(2)) result[2] = gathered.reshape(Tangents.WithBasis(k, updates));
        return result;
    }

    /// <summary>
    /// The data's shape read as [P, ..rest], each index tuple's flat position in P (negative components counted from
    /// the end, others refused), and the updates' shape read as [tuples, ..rest].
    /// </summary>
    private static (long[] Flat, Tensor Positions, long[] Rows) NdPositions(OpContext c, long[] data, long[] updates)
    {
        var indices = c.In(1).Value;
        var shape = indices.Dims();
        long k = shape.Length == 0 ? 0 : shape[^1];
        Shapes.Require(shape.Length >= 1 && k >= 1 && k <= data.Length,
            () => $"ScatterND indices {Shapes.Text(shape)} do not end in a tuple length from 1 to the data's rank {data.Length}");
        long[] expected = [.. shape[..^1], .. data[(int)k..]];
        Shapes.Require(updates.SequenceEqual(expected),
            () => $"ScatterND updates {Shapes.Text(updates)} are not {Shapes.Text(expected)} for indices {Shapes.Text(shape)} into {Shapes.Text(data)}");
        var positions = TuplePositions("ScatterND", indices, data[..(int)k], 0, perGroup: long.MaxValue);
        long[] rest = data[(int)k..];
        return ([Sizes.Elements(data[..(int)k]), .. rest], positions, [positions.size(0), .. rest]);
    }

    /// <summary>
    /// GatherND (what TensorFlow's gather_nd and JAX's indexing export to): the data read as [positions, ..rest], one
    /// row per index tuple, so the tangent is gathered alike past the basis axis and the cotangent added back at the same
    /// rows (index_add; repeated tuples add up).
    /// </summary>
    public static Dual[] GatherNd(OpContext c)
    {
        var data = c.In(0);
        var (flat, positions, output) = GatherNdPositions(c, data.Shape);
        var y = data.Value.reshape(flat).index_select(0, positions).reshape(output);
        if (data.Tangent is not { } t) return [new Dual(y, null)];
        long k = t.size(0);
        var rows = Tangents.Fit(t, data.Shape).reshape(Tangents.WithBasis(k, flat)).index_select(1, positions);
        return [new Dual(y, rows.reshape(Tangents.WithBasis(k, output)))];
    }

    public static Tensor?[] GatherNdVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return result;
        var data = c.In(0).Dims();
        var (flat, positions, _) = GatherNdPositions(c.Primal(), data);
        long k = ct.size(0);
        var rows = Tangents.Fit(ct, c.Out(0).Dims()).reshape([k, positions.size(0), .. flat[1..]]);
        result[0] = zeros(Tangents.WithBasis(k, flat), ct.dtype, ct.device).index_add(1, positions, rows, S(1)).reshape(Tangents.WithBasis(k, data));
        return result;
    }

    /// <summary>
    /// GatherND's data read as [B·P, ..rest] (B the product of the batch_dims axes, P of the k axes a tuple indexes), each
    /// tuple's row there (its batch group's offset plus its flat position; negative components from the end, others
    /// refused), and the output's shape.
    /// </summary>
    private static (long[] Flat, Tensor Positions, long[] Output) GatherNdPositions(OpContext c, long[] data)
    {
        var indices = c.In(1).Value;
        var shape = indices.Dims();
        int b = (int)c.Attr.Int("batch_dims", 0);
        long k = shape.Length == 0 ? 0 : shape[^1];
        Shapes.Require(b >= 0 && b < shape.Length && b < data.Length && shape[..b].SequenceEqual(data[..b]),
            () => $"GatherND batch_dims {b} must name leading axes the data {Shapes.Text(data)} and the indices {Shapes.Text(shape)} share");
        Shapes.Require(k >= 1 && b + k <= data.Length,
            () => $"GatherND indices {Shapes.Text(shape)} do not end in a tuple length from 1 to {data.Length - b} (the data {Shapes.Text(data)} past batch_dims {b})");
        long[] indexed = data[b..(int)(b + k)], rest = data[(int)(b + k)..];
        var positions = TuplePositions("GatherND", indices, indexed, b, Sizes.Elements(shape[b..^1]));
        return ([Sizes.Elements(data[..b]) * Sizes.Elements(indexed), .. rest], positions, [.. shape[..^1], .. rest]);
    }

    /// <summary>
    /// Each index tuple's row in data read as [groups·P, ..rest]: its flat position among the <paramref name="indexed"/>
    /// axes (P of them; negative components from the end, others refused), plus its group's offset, the groups being
    /// runs of <paramref name="perGroup"/> tuples (GatherND's batch_dims; ScatterND has one group, long.MaxValue tuples long).
    /// </summary>
    private static Tensor TuplePositions(string op, Tensor indices, long[] indexed, int firstAxis, long perGroup)
    {
        int k = indexed.Length;
        long span = Sizes.Elements(indexed);
        var tuples = HostValues.Ints(indices);
        var positions = new long[tuples.Length / k];
        for (long t = 0; t < positions.Length; t++)
        {
            long position = 0;
            for (int j = 0; j < k; j++)
            {
                long i = tuples[t * k + j], size = indexed[j];
                Shapes.Require(i >= -size && i < size, () => $"{op} index {i} is outside [-{size}, {size - 1}] of axis {firstAxis + j}");
                position = position * size + (i < 0 ? i + size : i);
            }
            positions[t] = t / Math.Max(1, perGroup) * span + position;
        }
        return tensor(positions, ScalarType.Int64).to(indices.device);
    }

    private static Tensor ScatterIndices(OpContext c, long[] data, long[] updates, long axis)
    {
        var indices = ElementIndices(c.In(1).Value, data, axis, "ScatterElements");
        Shapes.Require(updates.SequenceEqual(indices.Dims()) && updates.Select((d, i) => i == axis || d <= data[i]).All(b => b),
            () => $"ScatterElements updates {Shapes.Text(updates)} must have the indices' shape {Shapes.Text(indices.Dims())}, within the data {Shapes.Text(data)} off axis {axis}");
        return indices;
    }

    /// <summary>Indices into an axis of <paramref name="size"/> as int64 in [0, size): negative ones count from its end, others are refused.</summary>
    private static Tensor AxisIndices(Tensor indices, long size, long axis, string op)
    {
        var within = indices.to_type(ScalarType.Int64);
        if (within.numel() == 0) return within;
        var (min, max) = HostValues.Range(indices);
        Shapes.Require(min >= -size && max < size, () => $"{op} indices range from {min} to {max}, outside [-{size}, {size - 1}] of axis {axis}");
        return min >= 0 ? within : within.add(within.lt(L(0)).to_type(ScalarType.Int64) * L(size), L(1));
    }

    /// <summary>Tile: x repeated along each axis; the tangent tiled alike past the basis axis.</summary>
    public static Dual[] Tile(OpContext c)
    {
        var x = c.In(0);
        var repeats = HostValues.Ints(c.In(1).Value);
        Shapes.Require(repeats.Length == x.Rank && repeats.All(r => r >= 0),
            () => $"Tile repeats {Shapes.Text(repeats)} do not give one count of at least 0 per axis of {Shapes.Text(x.Shape)}");
        return [new Dual(x.Value.repeat(repeats), x.Tangent?.repeat([1, .. repeats]))];
    }

    public static long TileAllocates(OpContext c)
    {
        var repeats = HostValues.Ints(c.In(1).Value);
        return Sizes.Elements([.. c.In(0).Shape, .. repeats]);
    }

    /// <summary>
    /// Range: start, start + delta, ... below limit (above it for a negative delta), ⌈(limit − start) / delta⌉ values
    /// or none. Its inputs must not depend on wrt (a position grid, not a function of the input).
    /// </summary>
    public static Dual[] Range(OpContext c)
    {
        var start = c.In(0).Value;
        long count = RangeCount(c);
        if (start.dtype == ScalarType.Int64)
        {
            long from = HostValues.Ints(start)[0], step = HostValues.Ints(c.In(2).Value)[0];
            return [new Dual(arange(L(0), L(count), L(1), ScalarType.Int64).mul(L(step)).add(L(from), L(1)), null)];
        }
        double first = HostValues.Reals(start)[0], delta = HostValues.Reals(c.In(2).Value)[0];
        return [new Dual(arange(L(0), L(count), L(1), start.dtype).mul(S(delta)).add(S(first), S(1)), null)];
    }

    public static long RangeAllocates(OpContext c) => RangeCount(c);

    private static long RangeCount(OpContext c)
    {
        var (start, limit, delta) = (HostValues.Reals(c.In(0).Value), HostValues.Reals(c.In(1).Value), HostValues.Reals(c.In(2).Value));
        Shapes.Require(start.Length == 1 && limit.Length == 1 && delta.Length == 1, () => "Range takes a scalar start, limit and delta");
        Shapes.Require(delta[0] != 0 && double.IsFinite(start[0]) && double.IsFinite(limit[0]) && double.IsFinite(delta[0]),
            () => $"Range from {start[0]} to {limit[0]} by {delta[0]} does not end");
        double count = Math.Ceiling((limit[0] - start[0]) / delta[0]);
        return count <= 0 ? 0 : count >= long.MaxValue ? long.MaxValue : (long)count;
    }

    /// <summary>CumSum of v along the op's axis (its input 1, shifted past a basis axis by <paramref name="shift"/>); <paramref name="transposed"/> runs the other way.</summary>
    public static Tensor CumulativeSum(OpContext c, Tensor v, long shift = 0, bool transposed = false)
    {
        long axis = Shapes.Axis(HostValues.Ints(c.In(1).Value)[0], v.dim() - shift) + shift;
        bool reverse = (c.Attr.Int("reverse", 0) != 0) != transposed;
        var source = reverse ? v.flip(axis) : v;
        var sum = source.cumsum(axis);
        // An exclusive sum leaves each element out of its own.
        if (c.Attr.Int("exclusive", 0) != 0) sum = sum.Minus(source);
        return reverse ? sum.flip(axis) : sum;
    }

    /// <summary>Trilu: the upper (or lower) triangle of the last two axes from diagonal k; a projection, its own transpose.</summary>
    public static Tensor Triangle(OpContext c, Tensor v)
    {
        long k = c.Optional(1) is { } d ? HostValues.Ints(d.Value)[0] : 0;
        return c.Attr.Int("upper", 1) != 0 ? v.triu(k) : v.tril(k);
    }

    /// <summary>The gathered values and the flattened indices.</summary>
    public static long GatherAllocates(OpContext c)
    {
        var s = c.In(0).Shape;
        var indices = c.In(1).Shape;
        int axis = (int)Shapes.Axis(c.Attr.Int("axis", 0), s.Length);
        return Sizes.Plus(Sizes.Elements([.. s[..axis], .. indices, .. s[(axis + 1)..]]), Sizes.Elements(indices));
    }

    /// <summary>Every input as often as it is named: one value concatenated with itself 10^5 times is 10^5 copies.</summary>
    public static long ConcatAllocates(OpContext c) => Sizes.Sum(Enumerable.Range(0, c.InputCount).Select(i => Sizes.Elements(c.In(i).Shape)));

    public static Dual[] Concat(OpContext c)
    {
        var inputs = Enumerable.Range(0, c.InputCount).Select(c.In).ToArray();
        var first = inputs[0].Shape;
        long axis = Shapes.Axis(c.Attr.Int("axis", 0), first.Length);
        foreach (var d in inputs)
            Shapes.Require(d.Rank == first.Length && d.Shape.Where((_, i) => i != axis).SequenceEqual(first.Where((_, i) => i != axis)),
                () => $"Concat inputs {string.Join(", ", inputs.Select(i => Shapes.Text(i.Shape)))} differ outside axis {axis}");
        var y = cat(inputs.Select(d => d.Value).ToArray(), axis);
        if (!c.AnyTangent) return [new Dual(y, null)];
        long k = c.K;
        var t = cat(inputs.Select(d => d.Tangent ?? Tangents.Zeros(k, d.Value)).ToArray(), axis + 1);
        return [new Dual(y, t)];
    }

    /// <summary>From opset 18 a Split without a split input says how many parts it makes, which must be its outputs.</summary>
    public static string? ValidateSplit(GraphNode node, int opset)
    {
        if (!node.Attributes.Has("num_outputs")) return null;
        if (node.Inputs.Length > 1 && node.Inputs[1] >= 0) return "has both a split input and num_outputs, where ONNX allows one";
        long parts = node.Attributes.Int("num_outputs", 0);
        return parts == node.Outputs.Length ? null : $"num_outputs is {parts} but the node has {node.Outputs.Length} outputs";
    }

    public static Dual[] Split(OpContext c)
    {
        var x = c.In(0);
        var s = x.Shape;
        long axis = Shapes.Axis(c.Attr.Int("axis", 0), s.Length);
        int parts = c.OutputCount;
        long[] sizes;
        if (c.Optional(1) is { } split) sizes = HostValues.Ints(split.Value);
        else if (c.Attr.Ints("split") is { } attr) sizes = attr;
        else
        {
            long each = (s[axis] + parts - 1) / parts;
            sizes = Enumerable.Range(0, parts).Select(i => Math.Min(each, s[axis] - i * each)).ToArray();
        }
        Shapes.Require(sizes.Length == parts && sizes.All(v => v >= 0) && sizes.Sum() == s[axis],
            () => $"Split sizes {Shapes.Text(sizes)} do not divide axis {axis} of {Shapes.Text(s)} into {parts} outputs");
        var ys = x.Value.split(sizes, axis);
        var ts = x.Tangent?.split(sizes, axis + 1);
        return ys.Select((y, i) => new Dual(y, ts?[i])).ToArray();
    }

    public static Dual[] Slice(OpContext c)
    {
        var x = c.In(0);
        var s = x.Shape;
        var starts = HostValues.Ints(c.In(1).Value);
        var ends = HostValues.Ints(c.In(2).Value);
        var axes = c.Optional(3) is { } a ? HostValues.Ints(a.Value) : Enumerable.Range(0, starts.Length).Select(i => (long)i).ToArray();
        var steps = c.Optional(4) is { } st ? HostValues.Ints(st.Value) : Enumerable.Repeat(1L, starts.Length).ToArray();
        Shapes.Require(ends.Length == starts.Length && axes.Length == starts.Length && steps.Length == starts.Length,
            () => "Slice starts, ends, axes and steps differ in length");

        Tensor y = x.Value, t = x.Tangent!;
        bool hasTangent = x.Tangent is not null;
        for (int i = 0; i < starts.Length; i++)
        {
            long axis = Shapes.Axis(axes[i], s.Length), dim = s[axis], step = steps[i];
            Shapes.Require(step != 0, () => "Slice step 0");
            long start = starts[i] < 0 ? starts[i] + dim : starts[i];
            long end = ends[i] < 0 ? ends[i] + dim : ends[i];
            if (step > 0)
            {
                start = Math.Clamp(start, 0, dim);
                end = Math.Clamp(end, 0, dim);
                long length = Math.Max(0, (end - start + step - 1) / step);
                if (step == 1)
                {
                    y = y.narrow(axis, start, length);
                    if (hasTangent) t = t.narrow(axis + 1, start, length);
                    continue;
                }
            }
            else
            {
                start = Math.Clamp(start, 0, dim - 1);
                end = Math.Clamp(end, -1, dim - 1);
            }
            var index = step > 0 && start >= end || step < 0 && start <= end
                ? zeros(0, ScalarType.Int64)
                : arange(L(start), L(end), L(step), ScalarType.Int64);
            y = y.index_select(axis, index);
            if (hasTangent) t = t.index_select(axis + 1, index);
        }
        return [new Dual(y, hasTangent ? t : null)];
    }

    /// <summary>Expand makes a view, but what reads it (an output, the next op) makes it whole.</summary>
    public static long ExpandAllocates(OpContext c) => Sizes.Elements(Shapes.Broadcast(c.In(0).Shape, HostValues.Ints(c.In(1).Value)));

    public static long PadAllocates(OpContext c)
    {
        var s = c.In(0).Shape;
        // Pad refuses pads that do not match the axes when it runs.
        if (FullPads(c, s.Length) is not { } pads) return 0;
        return Sizes.Elements(s.Select((d, i) => Sizes.Plus(d, Sizes.Plus(Math.Max(0, pads[i]), Math.Max(0, pads[i + s.Length])))));
    }

    /// <summary>
    /// A Pad's begins and ends for every axis (begins first, as ONNX lists them): its pads name every axis, or from
    /// opset 18 the axes its axes input lists, the others unpadded. Null where the pads do not match the axes.
    /// </summary>
    private static long[]? FullPads(OpContext c, long rank) =>
        FullPads(HostValues.Ints(c.In(1).Value), c.Optional(3) is { } a ? HostValues.Ints(a.Value) : null, rank);

    internal static long[]? FullPads(long[] pads, long[]? axes, long rank)
    {
        if (axes is null) return pads.Length == 2 * rank ? pads : null;
        var named = axes.Select(v => Shapes.Axis(v, rank, "Pad axis")).ToArray();
        Shapes.Require(named.Distinct().Count() == named.Length, () => $"Pad axes {Shapes.Text(axes)} repeat an axis");
        if (pads.Length != 2 * named.Length) return null;
        var full = new long[2 * rank];
        for (int i = 0; i < named.Length; i++)
        {
            full[named[i]] = pads[i];
            full[named[i] + rank] = pads[i + named.Length];
        }
        return full;
    }

    /// <summary>Pad's modes: constant, reflect and edge, and wrap from opset 19.</summary>
    public static string? ValidatePad(GraphNode node, int opset)
    {
        var mode = node.Attributes.String("mode", "constant");
        if (mode is "constant" or "reflect" or "edge" || (mode == "wrap" && opset >= 19)) return null;
        return $"mode '{mode}' is not supported (constant, reflect, edge{(opset >= 19 ? ", wrap" : "")})";
    }

    public static Dual[] Expand(OpContext c)
    {
        var x = c.In(0);
        var requested = HostValues.Ints(c.In(1).Value);
        var shape = Shapes.Broadcast(x.Shape, requested);
        var aligned = x.Value.reshape([.. Enumerable.Repeat(1L, shape.Length - (int)x.Rank), .. x.Shape]);
        return [new Dual(aligned.expand(shape), x.Tangent is null ? null : Tangents.Fit(x.Tangent, shape))];
    }

    public static Dual[] Pad(OpContext c)
    {
        var x = c.In(0);
        long rank = x.Rank;
        long named = c.Optional(3) is { } a ? a.Value.numel() : rank;
        var pads = FullPads(c, rank) ?? throw new ArgumentException($"Pad needs {2 * named} pads (a begin and an end for each of {named} axes), got {c.In(1).Value.numel()}");
        var mode = c.Attr.String("mode", "constant");
        double value = c.Optional(2) is { } v && v.Value.numel() > 0 ? HostValues.Reals(v.Value)[0] : 0;

        // F.pad takes (begin, end) pairs from the last axis backwards; leading axes without padding are left out.
        int first = Enumerable.Range(0, (int)rank).FirstOrDefault(i => pads[i] != 0 || pads[i + rank] != 0, (int)rank);
        var argument = Enumerable.Range(first, (int)rank - first).Reverse().SelectMany(i => new[] { pads[i], pads[i + rank] }).ToArray();
        if (argument.Length == 0) return [x];
        var padMode = mode switch
        {
            "constant" => TorchSharp.PaddingModes.Constant,
            "reflect" => TorchSharp.PaddingModes.Reflect,
            "edge" => TorchSharp.PaddingModes.Replicate,
            "wrap" => TorchSharp.PaddingModes.Circular,
            _ => throw new ArgumentException($"Pad mode '{mode}' is not supported (constant, reflect, edge, wrap)"),
        };
        Shapes.Require(padMode == TorchSharp.PaddingModes.Constant || argument.Length <= 4,
            () => $"Pad mode '{mode}' is supported on the last two axes only");
        // A wrap wider than its axis would repeat the axis more than once, which libtorch's circular padding refuses.
        Shapes.Require(padMode != TorchSharp.PaddingModes.Circular || Enumerable.Range(first, (int)rank - first)
                .All(i => Math.Abs(pads[i]) <= x.Shape[i] && Math.Abs(pads[i + rank]) <= x.Shape[i]),
            () => $"Pad mode 'wrap' pads {Shapes.Text(pads)} of {Shapes.Text(x.Shape)}; at most each axis's length is supported");
        if (padMode == TorchSharp.PaddingModes.Constant)
        {
            // Linear in the data: the padding itself is constant, so the tangent is padded with zeros.
            return [new Dual(nn.functional.pad(x.Value, argument, padMode, value),
                x.Tangent is null ? null : nn.functional.pad(x.Tangent, argument, padMode, 0))];
        }
        // Reflect and replicate pad the last n axes of an input with exactly one or two more, so every axis before
        // the padded ones (the basis axis of a tangent too) is folded into one leading axis, which also gives a 1-D
        // or 2-D input the leading axis torch needs. The tangent is reflected or replicated alike.
        int padded = argument.Length / 2;
        Tensor Apply(Tensor v)
        {
            var lead = v.Dims()[..^padded];
            var result = nn.functional.pad(v.reshape([-1, .. v.Dims()[^padded..]]), argument, padMode);
            return result.reshape([.. lead, .. result.Dims()[1..]]);
        }
        return [new Dual(Apply(x.Value), x.Tangent is null ? null : Apply(x.Tangent))];
    }

    // ---- Reverse rules: the transpose of each map above -------------------------------------------------------

    /// <summary>Dropout (inference) and other identities: the cotangent of output 0 goes to input 0.</summary>
    public static Tensor?[] PassBack(VjpContext c) => [c.Needs(0) ? c.Cotangent(0) : null, .. new Tensor?[c.InputCount - 1]];

    /// <summary>Cast's and CastLike's: a float cotangent back in x's type (CastLike's second input lends a type only).</summary>
    public static Tensor?[] CastVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        var x = c.In(0);
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct || !x.is_floating_point() || !c.Out(0).is_floating_point()) return result;
        result[0] = ct.dtype == x.dtype ? ct : ct.to_type(x.dtype);
        return result;
    }

    public static long[] InversePermutation(VjpContext c, Tensor x)
    {
        var perm = Permutation(c.Primal(), x);
        var inverse = new long[perm.Length];
        for (int i = 0; i < perm.Length; i++) inverse[perm[i]] = i;
        return inverse;
    }

    public static Tensor?[] GatherVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return result;
        var s = c.In(0).Dims();
        long axis = Shapes.Axis(c.Attr.Int("axis", 0), s.Length);
        var flat = AxisIndices(c.In(1), s[axis], axis, "Gather").flatten();
        long k = ct.size(0);
        // Repeated indices add up: index_add is the transpose of index_select.
        var rows = ct.reshape([k, .. s[..(int)axis], flat.numel(), .. s[((int)axis + 1)..]]);
        result[0] = zeros(Tangents.WithBasis(k, s), ct.dtype).index_add_(axis + 1, flat, rows, S(1));
        return result;
    }

    public static Tensor?[] ConcatVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (c.Cotangent(0) is not { } ct) return result;
        long axis = Shapes.Axis(c.Attr.Int("axis", 0), c.In(0).dim());
        long offset = 0;
        for (int i = 0; i < c.InputCount; i++)
        {
            long size = c.In(i).Dims()[axis];
            if (c.Needs(i)) result[i] = ct.narrow(axis + 1, offset, size);
            offset += size;
        }
        return result;
    }

    public static Tensor?[] SplitVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (!c.Needs(0)) return result;
        long k = c.K;
        long axis = Shapes.Axis(c.Attr.Int("axis", 0), c.In(0).dim());
        result[0] = cat(Enumerable.Range(0, c.OutputCount).Select(i => c.Cotangent(i) ?? Tangents.Zeros(k, c.Out(i))).ToArray(), axis + 1);
        return result;
    }

    public static Tensor?[] SliceVjp(VjpContext c) => ByIndexMap(c, Slice);

    /// <summary>Each cotangent added back at the element it was gathered from (repeats add up).</summary>
    public static Tensor?[] GatherElementsVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return result;
        var x = c.In(0);
        long axis = Shapes.Axis(c.Attr.Int("axis", 0), x.dim());
        var indices = ElementIndices(c.In(1), x.Dims(), axis);
        long k = ct.size(0);
        result[0] = zeros(Tangents.WithBasis(k, x.Dims()), ct.dtype, ct.device)
            .scatter_add_(axis + 1, indices.unsqueeze(0).expand(Tangents.WithBasis(k, indices.Dims())), ct.expand(Tangents.WithBasis(k, indices.Dims())));
        return result;
    }

    /// <summary>The tiles summed back: [K, r0·d0, r1·d1, ...] read as [K, r0, d0, r1, d1, ...] and summed over the r axes.</summary>
    public static Tensor?[] TileVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return result;
        var x = c.In(0).Dims();
        var repeats = HostValues.Ints(c.In(1));
        long[] split = [ct.size(0), .. x.SelectMany((d, i) => new[] { repeats[i], d })];
        result[0] = ct.reshape(split).sum(Enumerable.Range(0, x.Length).Select(i => 1L + 2 * i).ToArray());
        return result;
    }

    public static Tensor?[] ExpandVjp(VjpContext c) =>
        [c.Needs(0) && c.Cotangent(0) is { } ct ? Tangents.Unbroadcast(ct, c.In(0).Dims()) : null, null];

    public static Tensor?[] PadVjp(VjpContext c)
    {
        var result = new Tensor?[c.InputCount];
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return result;
        if (c.Attr.String("mode", "constant") != "constant") return ByIndexMap(c, Pad);
        // Constant padding adds values that do not depend on x: the transpose crops them off again (and a negative
        // pad, which cropped, becomes zeros).
        long rank = c.In(0).dim();
        var pads = FullPads(c.Primal(), rank)!;
        // All zero (exporters emit such Pads before pools): the forward passed x through, so the cotangent passes back.
        var crop = Enumerable.Range(0, (int)rank).Reverse().SelectMany(i => new[] { -pads[i], -pads[i + rank] }).ToArray();
        result[0] = pads.All(p => p == 0) ? ct : nn.functional.pad(ct, crop);
        return result;
    }

    /// <summary>
    /// The transpose of an op that only moves or repeats elements of its data input (Slice, reflect/edge Pad): the
    /// forward map applied to the element indices of x says which element of x each output element came from, and
    /// the cotangent is added back there (repeats add up).
    /// </summary>
    private static Tensor?[] ByIndexMap(VjpContext c, OpApply forward)
    {
        var result = new Tensor?[c.InputCount];
        if (!c.Needs(0) || c.Cotangent(0) is not { } ct) return result;
        var x = c.In(0);
        long n = x.numel(), k = ct.size(0);
        // float64 holds every index up to 2^53 exactly, and every padding mode accepts it.
        var indices = arange(L(0), L(n), L(1), ScalarType.Float64).reshape(x.Dims());
        var source = forward(c.Primal(indices))[0].Value.flatten().to_type(ScalarType.Int64);
        result[0] = zeros([k, n], ct.dtype).index_add_(1, source, ct.reshape(k, -1), S(1)).reshape(Tangents.WithBasis(k, x.Dims()));
        return result;
    }
}
