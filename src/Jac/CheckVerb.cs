using System.CommandLine;
using Grpc.Core;
using JacService.Client;
using JacService.Protos.V1;

namespace JacService.Jac;

/// <summary>
/// check: a served model's derivatives checked against each other and against central differences of its own Predict,
/// on random samples (or the given ones), with respect to each float input in turn:
/// <list type="bullet">
/// <item>Jvp along random directions t against (f(x + h·t) − f(x − h·t)) / 2h from one Predict of the shifted rows;</item>
/// <item>Vjp against Jvp, by uᵀ(J·t) = (Jᵀu)·t for random cotangents u (the reverse rules against the forward ones);</item>
/// <item>BatchJacobian in forward and in reverse mode against Jvp, where the Jacobians are small enough to fetch;</item>
/// <item>where wrt is small, BatchHessian against central differences of Jvp, and BatchLaplacian against its trace.</item>
/// </list>
/// For a deployment (is this replica's answer right for my model?) or a new model before it takes traffic.
/// </summary>
public static class CheckVerb
{
    /// <summary>
    /// Vjp and the Jacobians against Jvp: the same float32 arithmetic by other paths, so they agree to rounding; a
    /// thousandth of the products' scale leaves room for long sums and still catches a wrong rule.
    /// </summary>
    private const double ConsistencyTolerance = 1e-3;

    /// <summary>Largest wrt whose Hessian is checked, in elements of a sample: the most the server's warm-up times (ModelWarmup).</summary>
    private const int MaxHessianInputs = 64;

    /// <summary>Largest Jacobian fetched for the mode checks, in elements of all samples and outputs (64 MB of floats).</summary>
    private const long MaxJacobianElements = 16 << 20;

    private static readonly Option<string[]> Input = new("--input", "-i")
    {
        Description = "Samples to check at, [NAME=]FILE.json or [NAME=]FILE.npy per input (batch axis first); default: random values in [-1, 1)",
    };
    private static readonly Option<int> Samples = new("--samples") { Description = "Random samples, without --input", DefaultValueFactory = _ => 4 };
    private static readonly Option<int> Directions = new("--directions") { Description = "Random directions per sample", DefaultValueFactory = _ => 8 };
    private static readonly Option<double> Step = new("--step")
    {
        Description = "Central differences' step h, relative to the sample's largest element (at least 1)",
        DefaultValueFactory = _ => 1e-3,
    };
    private static readonly Option<double> Tolerance = new("--tolerance")
    {
        Description = "Largest difference between Jvp and central differences allowed, relative to the largest of either",
        DefaultValueFactory = _ => 1e-2,
    };
    private static readonly Option<int> Seed = new("--seed") { Description = "Seed of the random samples, directions and cotangents", DefaultValueFactory = _ => 1 };

    public static Command Check(Io io)
    {
        var command = new Command("check", "Check a model's served derivatives against central differences of its Predict and against each other (Jvp, Vjp, both Jacobian modes, Hessian, Laplacian)")
            { DirectionalVerbs.Model, DirectionalVerbs.ModelVersion, Input, Samples, Directions, Step, Tolerance, Seed, DirectionalVerbs.Timeout };
        command.SetAction(async (r, ct) =>
        {
            if (r.GetValue(Samples) < 1 || r.GetValue(Directions) < 1) throw new JacException("--samples and --directions take a whole number of at least 1");
            if (!(r.GetValue(Step) > 0) || !(r.GetValue(Tolerance) > 0)) throw new JacException("--step and --tolerance take a number above 0");
            string name = r.GetValue(DirectionalVerbs.Model)!;
            using var connection = Connection.Open(r, Credentials.Headers(r));
            var timeout = JacApp.ParseDuration(r.GetValue(DirectionalVerbs.Timeout)!, "--timeout");
            try
            {
                var info = await connection.Client.GetModelAsync(new GetModelRequest { Model = name, Version = r.GetValue(DirectionalVerbs.ModelVersion) },
                    new CallOptions(deadline: DateTime.UtcNow + timeout, cancellationToken: ct));
                var random = new Random(r.GetValue(Seed));
                var inputs = r.GetValue(Input) is { Length: > 0 } specs ? ReadSamples(specs, info) : RandomTensors.Inputs(info, r.GetValue(Samples), random, "--input");
                var check = new Run(connection.Library, info, inputs, r.GetValue(Directions), r.GetValue(Step), r.GetValue(Tolerance), timeout, random, io.Out, ct);
                return await check.AllAsync() ? 0 : 1;
            }
            catch (RpcException e)
            {
                throw await Errors.ExplainAsync(e, connection, name);
            }
        });
        return command;
    }

    private static Dictionary<string, FloatTensor> ReadSamples(string[] specs, ModelInfo info)
    {
        var inputs = TensorFiles.ReadInputs(specs, info);
        TensorFiles.CheckShapes(inputs, info, batched: true, "check");
        return inputs;
    }

    /// <summary>One check of one model: the calls, the comparisons and the report.</summary>
    private sealed class Run(JacServiceClient client, ModelInfo info, Dictionary<string, FloatTensor> inputs, int directions,
        double step, double tolerance, TimeSpan timeout, Random random, TextWriter output, CancellationToken ct)
    {
        private readonly int _batch = (int)inputs.Values.First().Shape[0];
        private readonly List<string> _outputs = info.Outputs.Where(o => o.Dtype == "float").Select(o => o.Name).ToList();
        private int _failures;

        public async Task<bool> AllAsync()
        {
            foreach (var wrt in info.Inputs.Where(i => i.Dtype == "float"))
                await WrtAsync(wrt.Name);
            if (_failures == 0)
                await output.WriteLineAsync($"PASS: the derivatives of {info.Name} version {info.Version} agree with central differences of its Predict and with each other");
            else
                await output.WriteLineAsync($"FAIL: {_failures} check(s) of {info.Name} version {info.Version} disagree or could not be made " +
                    "(other samples: --seed, --input; a smaller step: --step)");
            return _failures == 0;
        }

        private async Task WrtAsync(string wrt)
        {
            var x = inputs[wrt];
            long[] sampleShape = x.Shape[1..];
            int size = (int)FloatTensor.ElementCount(sampleShape);
            var (shifted, tangents, steps) = Shifts(x);
            await output.WriteLineAsync($"{info.Name} version {info.Version}, wrt {wrt} [{string.Join(", ", sampleShape)}]: {_batch} samples, {directions} directions each, step {step:G3}");

            // Central differences: one Predict of every sample shifted both ways along every direction, then of the samples.
            var rows = new Dictionary<string, FloatTensor>();
            foreach (var (name, tensor) in inputs)
                rows[name] = Concat(name == wrt ? shifted : Repeat(tensor, 2 * directions), tensor);
            var predicted = await client.PredictAsync(info.Name, rows, info.Version, timeout, ct);
            var jvp = await client.JvpAsync(info.Name, inputs, tangents, wrt, _outputs, info.Version, timeout, ct);
            foreach (var o in _outputs)
            {
                var (plus, minus, at) = Split(predicted.Outputs[o].Data.Span, perDirection: false);
                CompareDifferences($"Jvp of {o} against central differences", plus, minus, at, ToDouble(jvp.Jvps[o].Data.Span), steps);
            }

            // uᵀ(J·t) = (Jᵀu)·t, per sample and direction, with a cotangent per direction.
            var cotangents = _outputs.ToDictionary(o => o, o => Normal(jvp.Jvps[o].Shape));
            var vjp = await client.VjpAsync(info.Name, inputs, cotangents, wrt, _outputs, info.Version, timeout, ct);
            Report("Vjp against Jvp, uᵀ(J·t) against (uᵀJ)·t", AdjointDifference(cotangents, jvp.Jvps, vjp.Vjp, tangents),
                "of the sum of the products' magnitudes", ConsistencyTolerance);

            long jacobianElements = _outputs.Sum(o => jvp.Jvps[o].Data.Length / directions) * (long)size;
            if (jacobianElements > MaxJacobianElements)
            {
                await output.WriteLineAsync($"  BatchJacobian not checked: {jacobianElements:N0} elements, over {MaxJacobianElements:N0}");
                return;
            }
            foreach (var mode in new[] { DerivativeMode.Forward, DerivativeMode.Reverse })
            {
                var jacobian = await client.BatchJacobianAsync(info.Name, inputs, wrt, _outputs, mode, info.Version, timeout, ct);
                foreach (var o in _outputs)
                    Report($"BatchJacobian of {o} ({mode.ToString().ToLowerInvariant()} mode) against Jvp",
                        Largest(jvp.Jvps[o].Data.Span, Apply(jacobian.Jacobians[o].Data.Span, tangents.Data.Span, size)), ConsistencyTolerance);
            }

            if (size > MaxHessianInputs)
                await output.WriteLineAsync($"  BatchHessian not checked: {wrt} has {size} elements, over {MaxHessianInputs}");
            else
                await SecondOrderAsync(wrt, rows, tangents, steps, size);
        }

        /// <summary>
        /// The Hessian H against central differences of Jvp along second random directions s: sᵀH·t against
        /// (J(x₊)·s − J(x₋)·s) / 2h at the rows shifted along t; and the Laplacian against H's trace. A model the server
        /// refuses second derivatives for is told, not failed.
        /// </summary>
        private async Task SecondOrderAsync(string wrt, Dictionary<string, FloatTensor> predictRows, FloatTensor tangents, double[] steps, int size)
        {
            // The shifted rows again, then each sample once per direction, each row carrying its direction's s.
            int rowCount = _batch * directions;
            var rows = new Dictionary<string, FloatTensor>();
            foreach (var (name, tensor) in inputs)
                rows[name] = Concat(Slice(predictRows[name], 2 * rowCount), Repeat(tensor, directions));
            var s = Normal(tangents.Shape);
            try
            {
                var jvp = await client.JvpAsync(info.Name, rows, PerRow(s, size), wrt, _outputs, info.Version, timeout, ct);
                var hessian = await client.HessianAsync(info.Name, inputs, wrt, _outputs, includeJacobian: false, info.Version, timeout, ct);
                var laplacian = await client.LaplacianAsync(info.Name, inputs, wrt, _outputs, axes: null, includeJacobian: false, info.Version, timeout, ct);
                foreach (var o in _outputs)
                {
                    var h = hessian.Hessians[o].Data.Span;
                    int outSize = h.Length / (_batch * size * size);
                    var (plus, minus, at) = Split(jvp.Jvps[o].Data.Span, perDirection: true);
                    var sHt = new double[rowCount * outSize];
                    var trace = new double[_batch * outSize];
                    var t = tangents.Data.Span;
                    var sData = s.Data.Span;
                    for (int row = 0; row < rowCount; row++)
                        for (int i = 0; i < outSize; i++)
                        {
                            var block = h.Slice(((row / directions) * outSize + i) * size * size, size * size);
                            double sum = 0;
                            for (int j = 0; j < size; j++)
                                for (int l = 0; l < size; l++) sum += sData[row * size + j] * (double)block[j * size + l] * t[row * size + l];
                            sHt[row * outSize + i] = sum;
                            if (row % directions == 0)
                                for (int j = 0; j < size; j++) trace[(row / directions) * outSize + i] += block[j * size + j];
                        }
                    CompareDifferences($"BatchHessian of {o} against central differences of Jvp", plus, minus, at, sHt, steps);
                    Report($"BatchLaplacian of {o} against the Hessian's trace", Largest(laplacian.Laplacians[o].Data.Span, trace), ConsistencyTolerance);
                }
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.InvalidArgument or StatusCode.ResourceExhausted or StatusCode.Unimplemented)
            {
                await output.WriteLineAsync($"  BatchHessian not checked: the server answered {e.StatusCode}: {e.Status.Detail}");
            }
        }

        /// <summary>
        /// The largest |uᵀ(J·t) − (uᵀJ)·t| over the rows (sample, direction), relative to the sum of the magnitudes of the
        /// products summed, which is the scale of their rounding.
        /// </summary>
        private double AdjointDifference(Dictionary<string, FloatTensor> cotangents, IReadOnlyDictionary<string, FloatTensor> jvps,
            FloatTensor vjp, FloatTensor tangents)
        {
            int rows = _batch * directions, size = tangents.Data.Length / rows;
            double worst = 0;
            for (int row = 0; row < rows; row++)
            {
                double forward = 0, reverse = 0, scale = 0;
                foreach (var o in _outputs)
                {
                    var u = cotangents[o].Data.Span;
                    var jt = jvps[o].Data.Span;
                    int outSize = u.Length / rows;
                    for (int i = row * outSize; i < (row + 1) * outSize; i++) (forward, scale) = (forward + (double)u[i] * jt[i], scale + Math.Abs((double)u[i] * jt[i]));
                }
                var g = vjp.Data.Span;
                var t = tangents.Data.Span;
                for (int i = row * size; i < (row + 1) * size; i++) (reverse, scale) = (reverse + (double)g[i] * t[i], scale + Math.Abs((double)g[i] * t[i]));
                worst = Math.Max(worst, scale == 0 ? 0 : Math.Abs(forward - reverse) / scale);
            }
            return worst;
        }

        /// <summary>
        /// <paramref name="served"/> against the central differences (f₊ − f₋) / 2h of the values at the shifted rows, per
        /// (sample, direction) row and output element, on the rows where f is smooth within the step. Where the one-sided
        /// differences (f₊ − f)/h and (f − f₋)/h differ by more than the tolerance and the rounding allow, a kink (a
        /// Relu's, a Max's) or a jump lies within the step, and the central difference measures that, not the derivative.
        /// Fewer than half of the rows smooth is no check.
        /// </summary>
        private void CompareDifferences(string what, double[] plus, double[] minus, double[] at, double[] served, double[] steps)
        {
            int rowCount = _batch * directions, outSize = served.Length / rowCount;
            var central = new double[served.Length];
            var gaps = new double[rowCount];
            double largestServed = 0, largestValue = 0;
            foreach (var v in served) largestServed = Math.Max(largestServed, Math.Abs(v));
            foreach (var values in new[] { plus, minus, at })
                foreach (var v in values) largestValue = Math.Max(largestValue, Math.Abs(v));
            for (int row = 0; row < rowCount; row++)
            {
                double h = steps[row / directions];
                for (int i = row * outSize; i < (row + 1) * outSize; i++)
                {
                    central[i] = (plus[i] - minus[i]) / (2 * h);
                    gaps[row] = Math.Max(gaps[row], Math.Abs((plus[i] - at[i]) / h - (at[i] - minus[i]) / h));
                }
            }
            // Kinks are judged against the served derivative's size: a jump's quotients are as large as 1/h, and counting
            // them into the scale would let every other row pass.
            var smoothRows = Enumerable.Range(0, rowCount)
                .Where(row => gaps[row] <= tolerance * largestServed + 2 * Rounding(largestValue, steps[row / directions])).ToList();
            double scale = largestServed;
            foreach (int row in smoothRows)
                for (int i = row * outSize; i < (row + 1) * outSize; i++) scale = Math.Max(scale, Math.Abs(central[i]));
            double worst = 0, worstFloor = 0, margin = double.NegativeInfinity;
            int smooth = smoothRows.Count;
            foreach (int row in smoothRows)
            {
                double floor = Rounding(largestValue, steps[row / directions]);
                for (int i = row * outSize; i < (row + 1) * outSize; i++)
                {
                    double difference = double.IsNaN(served[i]) ? double.PositiveInfinity : Math.Abs(served[i] - central[i]);
                    // The difference that comes nearest to (or goes furthest past) what its row allows is the one reported.
                    if (difference - floor > margin) (margin, worst, worstFloor) = (difference - floor, difference, floor);
                }
            }
            if (smooth < rowCount) what += $" ({rowCount - smooth} of {rowCount} directions left out: a kink or a jump within the step)";
            if (2 * smooth < rowCount)
            {
                _failures++;
                output.WriteLine($"  NOT CHECKED: {what}");
                return;
            }
            double relativeFloor = scale == 0 ? 0 : worstFloor / scale;
            Report(what, scale == 0 ? worst : worst / scale, $"of the largest value, {scale:G3}", tolerance + relativeFloor,
                relativeFloor > 0 ? $"{tolerance:G1} + {relativeFloor:G2} for float32 rounding" : null);
        }

        /// <summary>
        /// Values of rows laid out (sample, direction, +/−) and then one per sample, as (f₊, f₋, f) per (sample,
        /// direction) row: <paramref name="perDirection"/> when the unshifted rows carry a value per direction too, [B, T].
        /// </summary>
        private (double[] Plus, double[] Minus, double[] At) Split(ReadOnlySpan<float> f, bool perDirection)
        {
            int rowCount = _batch * directions, outSize = f.Length / (2 * rowCount + (perDirection ? rowCount : _batch));
            var (plus, minus, at) = (new double[rowCount * outSize], new double[rowCount * outSize], new double[rowCount * outSize]);
            for (int row = 0; row < rowCount; row++)
                for (int i = 0; i < outSize; i++)
                {
                    plus[row * outSize + i] = f[2 * row * outSize + i];
                    minus[row * outSize + i] = f[(2 * row + 1) * outSize + i];
                    at[row * outSize + i] = f[(2 * rowCount + (perDirection ? row : row / directions)) * outSize + i];
                }
            return (plus, minus, at);
        }

        /// <summary>
        /// What float32 rounding alone can put into a difference quotient (f(a) − f(b)) / h of values up to
        /// <paramref name="largestValue"/>: 32 units in the last place of each (a deep graph's rounding, not one operation's).
        /// </summary>
        private static double Rounding(double largestValue, double h) => 32 * Math.ScaleB(largestValue, -24) / h;

        /// <summary>
        /// Each sample shifted by ±h·v along random directions v (largest element 1), as float32 rows [B·T·2, ...] in the
        /// order (sample, direction, +/−); the tangents [B, T, ...] are the shifts as float32 made them, (x₊ − x₋) / 2h, so
        /// rounding the shifted inputs does not count as an error; and h per sample.
        /// </summary>
        private (FloatTensor Shifted, FloatTensor Tangents, double[] Steps) Shifts(FloatTensor wrt)
        {
            long[] sampleShape = wrt.Shape[1..];
            int size = (int)FloatTensor.ElementCount(sampleShape);
            var x = wrt.Data.Span;
            var shifted = new float[_batch * directions * 2 * size];
            var tangents = new float[_batch * directions * size];
            var steps = new double[_batch];
            var v = new double[size];
            for (int b = 0; b < _batch; b++)
            {
                var sample = x.Slice(b * size, size);
                double largest = 1;
                foreach (var e in sample) largest = Math.Max(largest, Math.Abs(e));
                double h = steps[b] = step * largest;
                for (int k = 0; k < directions; k++)
                {
                    double norm = 0;
                    for (int i = 0; i < size; i++) norm = Math.Max(norm, Math.Abs(v[i] = NormalValue()));
                    int row = b * directions + k;
                    for (int i = 0; i < size; i++)
                    {
                        float plus = (float)(sample[i] + h * v[i] / norm), minus = (float)(sample[i] - h * v[i] / norm);
                        shifted[(2 * row) * size + i] = plus;
                        shifted[(2 * row + 1) * size + i] = minus;
                        tangents[row * size + i] = (float)(((double)plus - minus) / (2 * h));
                    }
                }
            }
            return (new FloatTensor(shifted, [_batch * directions * 2, .. sampleShape]), new FloatTensor(tangents, [_batch, directions, .. sampleShape]), steps);
        }

        /// <summary>Each sample's row of <paramref name="tensor"/> <paramref name="times"/> times in a row, as the shifted rows of wrt are.</summary>
        private FloatTensor Repeat(FloatTensor tensor, int times)
        {
            int size = tensor.Data.Length / _batch;
            var data = new float[tensor.Data.Length * times];
            for (int b = 0; b < _batch; b++)
                for (int k = 0; k < times; k++)
                    tensor.Data.Span.Slice(b * size, size).CopyTo(data.AsSpan((b * times + k) * size, size));
            return new FloatTensor(data, [_batch * times, .. tensor.Shape[1..]]);
        }

        /// <summary>Directions [B, T, ...] as one per row of the second-order rows: (sample, direction, +/−), then (sample, direction).</summary>
        private FloatTensor PerRow(FloatTensor s, int size)
        {
            int rowCount = _batch * directions;
            var perRow = new float[3 * rowCount * size];
            for (int row = 0; row < rowCount; row++)
                for (int copy = 0; copy < 3; copy++)
                    s.Data.Span.Slice(row * size, size).CopyTo(perRow.AsSpan((copy < 2 ? 2 * row + copy : 2 * rowCount + row) * size, size));
            return new FloatTensor(perRow, [3 * rowCount, .. s.Shape[2..]]);
        }

        /// <summary>The first <paramref name="rows"/> rows.</summary>
        private static FloatTensor Slice(FloatTensor tensor, int rows) =>
            new(tensor.Data[..(int)(tensor.Data.Length / tensor.Shape[0] * rows)], [rows, .. tensor.Shape[1..]]);

        private static double[] ToDouble(ReadOnlySpan<float> values)
        {
            var doubles = new double[values.Length];
            for (int i = 0; i < values.Length; i++) doubles[i] = values[i];
            return doubles;
        }

        private static FloatTensor Concat(FloatTensor first, FloatTensor second)
        {
            var data = new float[first.Data.Length + second.Data.Length];
            first.Data.Span.CopyTo(data);
            second.Data.Span.CopyTo(data.AsSpan(first.Data.Length));
            return new FloatTensor(data, [first.Shape[0] + second.Shape[0], .. first.Shape[1..]]);
        }

        /// <summary>J·t for each sample's Jacobian [out, in] and its directions [T, in]: [B, T, out].</summary>
        private double[] Apply(ReadOnlySpan<float> jacobian, ReadOnlySpan<float> tangents, int size)
        {
            int outSize = jacobian.Length / (_batch * size);
            var product = new double[_batch * directions * outSize];
            for (int b = 0; b < _batch; b++)
                for (int k = 0; k < directions; k++)
                    for (int i = 0; i < outSize; i++)
                    {
                        double sum = 0;
                        for (int j = 0; j < size; j++) sum += (double)jacobian[(b * outSize + i) * size + j] * tangents[(b * directions + k) * size + j];
                        product[(b * directions + k) * outSize + i] = sum;
                    }
            return product;
        }

        /// <summary>The largest difference and the largest magnitude of either side.</summary>
        private static (double Difference, double Scale) Largest(ReadOnlySpan<float> served, double[] expected)
        {
            double difference = 0, scale = 0;
            for (int i = 0; i < expected.Length; i++)
            {
                double d = Math.Abs(served[i] - expected[i]);
                difference = double.IsNaN(d) ? double.PositiveInfinity : Math.Max(difference, d);
                scale = Math.Max(scale, Math.Max(Math.Abs(served[i]), Math.Abs(expected[i])));
            }
            return (difference, scale);
        }

        // Where both sides are zero (a constant output), they agree.
        private void Report(string what, (double Difference, double Scale) found, double allowed) =>
            Report(what, found.Scale == 0 ? found.Difference : found.Difference / found.Scale, $"of the largest value, {found.Scale:G3}", allowed);

        private void Report(string what, double relative, string scale, double allowed, string? allowance = null)
        {
            bool agree = relative <= allowed;
            if (!agree) _failures++;
            output.WriteLine($"  {(agree ? "agree" : "DISAGREE")}: {what}: largest difference {relative:G3} {scale} ({allowance ?? allowed.ToString("G1")} allowed)");
        }

        private FloatTensor Normal(long[] shape)
        {
            var data = new float[FloatTensor.ElementCount(shape)];
            for (int i = 0; i < data.Length; i++) data[i] = (float)NormalValue();
            return new FloatTensor(data, shape);
        }

        // Box-Muller: the standard library has no normal sampler.
        private double NormalValue() => Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
    }
}
