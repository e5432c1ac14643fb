using JacService.Core.Ops;
using static JacService.Core.Compiled.OnnxEmitter;

namespace JacService.Core.Compiled;

internal static partial class CompiledRules
{
    /// <summary>
    /// LSTM, GRU and RNN as a Scan per direction whose body is one step of the interpreter's cell
    /// (<see cref="Recurrent.Cell{TValue, TWeight}"/>, written as nodes by <see cref="CellEmitter"/>), so the graph stays
    /// the same size however long the sequence. Going forward the body carries the states and their tangents. Going back,
    /// one Scan keeps the states before each step and a second runs the steps last first, recomputing each step's cell
    /// from them and writing its transpose (backpropagation through time). x·Wᵀ for every step is one product outside the
    /// Scans, and so is its cotangent's.
    /// </summary>
    public static readonly CompiledRule Recurrent = new(
        c =>
        {
            var node = RecurrentNode.Of(c);
            var e = c.Emit;
            var dx = c.Tangent(0) is { } tx ? e.Full(tx, c.Basis, c.In(0)) : null;
            var ys = new string[node.Directions];
            var finals = new string[node.States][];
            for (int s = 0; s < node.States; s++) finals[s] = new string[node.Directions];
            for (int d = 0; d < node.Directions; d++)
            {
                var initial = node.Initial(c, d, tangents: true);
                (string, long[])[] carried = [.. initial.Select(v => (v.V, node.State())), .. initial.Select(v => (v.G ?? node.Zeros(c, v.V), node.State(c.Basis)))];
                (string, long, long[])[] scanned = dx is null ? [(node.Products(c, d), 0, node.Product())]
                    : [(node.Products(c, d), 0, node.Product()), (e.TimesTransposedWeight(dx, node.W(c, d)), 1, node.Product(c.Basis))];
                var outputs = e.Scan(carried, scanned, node.Steps(c), node.Reverse(d), [1], (be, carriedIn, slices) =>
                {
                    var math = new CellEmitter(be, c.Emit, c.Basis, node.Hidden, record: false);
                    var states = Enumerable.Range(0, node.States).Select(s => new EmittedCellValue(carriedIn[s], carriedIn[node.States + s])).ToArray();
                    var next = node.Cell(c, math, d)(new EmittedCellValue(slices[0], dx is null ? null : slices[1]), states);
                    return ([.. next.Select(v => v.V), .. next.Select(math.Direction)], [math.Direction(next[0])]);
                });
                for (int s = 0; s < node.States; s++) finals[s][d] = outputs[node.States + s];
                ys[d] = outputs[2 * node.States];
            }
            // Y [seq, directions, batch, hidden] and the final states [directions, batch, hidden], a basis axis ahead.
            var result = new string?[c.OutputCount];
            if (c.Out(0).Length > 0) result[0] = e.Stack(ys, 2);
            for (int s = 1; s < c.OutputCount; s++)
                if (c.Out(s).Length > 0) result[s] = e.Stack(finals[s - 1], 1);
            return result;
        },
        c =>
        {
            var result = new string?[c.InputCount];
            int[] initialStates = c.OpType == "LSTM" ? [5, 6] : [5];
            if (!c.Needs(0) && !initialStates.Any(c.Needs)) return result;
            var node = RecurrentNode.Of(c);
            var e = c.Emit;
            var ctY = c.Cotangent(0) is { } y ? e.Full(y, c.Basis, c.Out(0)) : null;
            var ctFinal = Enumerable.Range(1, node.States).Select(s => c.Cotangent(s) is { } ct ? e.Full(ct, c.Basis, c.Out(s)) : null).ToArray();
            string? ctX = null;
            var ctInitial = new string[node.States][];
            for (int s = 0; s < node.States; s++) ctInitial[s] = new string[node.Directions];
            for (int d = 0; d < node.Directions; d++)
            {
                var products = node.Products(c, d);
                var initial = node.Initial(c, d, tangents: false).Select(v => v.V).ToArray();
                // The states before each step, in sequence order.
                var before = e.Scan([.. initial.Select(v => (v, node.State()))], [(products, 0, node.Product())], node.Steps(c), node.Reverse(d),
                    [.. initial.Select(_ => 0L)], (be, carriedIn, slices) =>
                {
                    var math = new CellEmitter(be, c.Emit, c.Basis, node.Hidden, record: false);
                    var next = node.Cell(c, math, d)(new EmittedCellValue(slices[0]), [.. carriedIn.Select(v => new EmittedCellValue(v))]);
                    return ([.. next.Select(v => v.V)], carriedIn);
                })[node.States..];
                var carried = Enumerable.Range(0, node.States)
                    .Select(s => (ctFinal[s] is { } ct ? e.Select(ct, 1, d) : node.Zeros(c, initial[s]), node.State(c.Basis))).ToArray();
                (string, long, long[])[] scanned = [(products, 0, node.Product()), .. before.Select(b => (b, 0L, node.State())),
                    .. ctY is null ? Array.Empty<(string, long, long[])>() : [(e.Select(ctY, 2, d), 1L, node.State(c.Basis))]];
                var back = e.Scan(carried, scanned, node.Steps(c), !node.Reverse(d), [1], (be, carriedIn, slices) =>
                {
                    var math = new CellEmitter(be, c.Emit, c.Basis, node.Hidden, record: true);
                    var product = new EmittedCellValue(slices[0]);
                    var states = Enumerable.Range(0, node.States).Select(s => new EmittedCellValue(slices[1 + s])).ToArray();
                    var next = node.Cell(c, math, d)(product, states);
                    for (int s = 0; s < node.States; s++) next[s].AddCotangent(be, carriedIn[s]);
                    if (ctY is not null) next[0].AddCotangent(be, slices[^1]);
                    math.Backward();
                    return ([.. states.Select(s => s.Cotangent ?? math.Zeros(s))], [product.Cotangent ?? math.Zeros(product)]);
                });
                for (int s = 0; s < node.States; s++) ctInitial[s][d] = back[s];
                var term = e.Op("MatMul", back[node.States], node.W(c, d));
                ctX = ctX is null ? term : e.Add(ctX, term);
            }
            if (c.Needs(0)) result[0] = ctX;
            for (int s = 0; s < node.States; s++)
                if (c.Needs(initialStates[s])) result[initialStates[s]] = e.Stack(ctInitial[s], 1);
            return result;
        });
}
