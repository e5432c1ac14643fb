using JacService.Client;
using System.Text;
using System.Text.Json;
using Google.Protobuf.Collections;
using JacService.Protos.V1;

namespace JacService.Jac;

/// <summary>Model inputs from JSON or .npy files, results to JSON or .npy.</summary>
public static class TensorFiles
{
    /// <summary>
    /// Reads <c>[NAME=]FILE</c> specs. A .npy file is one input (NAME may be left out for a one-input model). A JSON
    /// file is either one tensor (with NAME=) or an object of input name → tensor, optionally under "inputs" (so the
    /// reference files in tests/fixtures/reference work as they are). A tensor is {"shape": [...], "data": [...]}
    /// or nested arrays.
    /// </summary>
    public static Dictionary<string, FloatTensor> ReadInputs(IReadOnlyList<string> specs, ModelInfo? model)
    {
        if (specs.Count == 0) throw new JacException("no input given: pass --input FILE (.json or .npy), or NAME=FILE per input");
        var inputs = new Dictionary<string, FloatTensor>();
        foreach (var spec in specs)
        {
            int eq = spec.IndexOf('=');
            string? name = eq > 0 ? spec[..eq] : null;
            string path = eq > 0 ? spec[(eq + 1)..] : spec;
            if (!File.Exists(path)) throw new JacException($"input file not found: {path}");
            if (path.EndsWith(".npy", StringComparison.OrdinalIgnoreCase))
            {
                name ??= model?.Inputs.Count == 1 ? model.Inputs[0].Name
                    : throw new JacException($"which input is {path}? Write NAME={path}" + InputNames(model));
                inputs[name] = Npy.Read(path);
                continue;
            }
            JsonDocument doc;
            try { doc = JsonDocument.Parse(File.ReadAllText(path)); }
            catch (JsonException e) { throw new JacException($"{path} is not valid JSON: {e.Message}"); }
            using (doc)
            {
                var root = doc.RootElement;
                if (name is not null) { inputs[name] = ParseTensor(root, $"{path}"); continue; }
                if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("inputs", out var nested)) root = nested;
                if (root.ValueKind != JsonValueKind.Object || root.TryGetProperty("shape", out _))
                {
                    string only = model?.Inputs.Count == 1 ? model.Inputs[0].Name
                        : throw new JacException($"{path} holds one tensor; say which input it is with NAME={path}" + InputNames(model));
                    inputs[only] = ParseTensor(root, path);
                    continue;
                }
                foreach (var p in root.EnumerateObject()) inputs[p.Name] = ParseTensor(p.Value, $"{path}: {p.Name}");
            }
        }
        return inputs;
    }

    private static string InputNames(ModelInfo? model) =>
        model is null ? "" : $" (inputs of {model.Name}: {string.Join(", ", model.Inputs.Select(i => i.Name))})";

    private static FloatTensor ParseTensor(JsonElement e, string where)
    {
        try
        {
            if (e.ValueKind == JsonValueKind.Object)
            {
                var shape = e.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
                var data = e.GetProperty("data").EnumerateArray().Select(v => (float)v.GetDouble()).ToArray();
                long count = FloatTensor.ElementCount(shape);
                if (shape.All(d => d >= 0) && count != data.Length) throw new JacException($"{where}: shape [{string.Join(", ", shape)}] needs {count} values, the data has {data.Length}");
                return new FloatTensor(data, shape);
            }
            var dims = new List<long>();
            for (var x = e; x.ValueKind == JsonValueKind.Array; x = x.GetArrayLength() > 0 ? x[0] : default) dims.Add(x.GetArrayLength());
            var values = new List<float>();
            Flatten(e, 0, dims, values, where);
            return new FloatTensor(values.ToArray(), dims.ToArray());
        }
        catch (Exception ex) when (ex is KeyNotFoundException or InvalidOperationException or FormatException or ArgumentException)
        {
            throw new JacException($"{where}: a tensor is {{\"shape\": [...], \"data\": [...]}} or nested arrays of numbers ({ex.Message})");
        }
    }

    private static void Flatten(JsonElement e, int depth, List<long> dims, List<float> values, string where)
    {
        if (depth == dims.Count) { values.Add((float)e.GetDouble()); return; }
        if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() != dims[depth])
            throw new JacException($"{where}: nested arrays are ragged (axis {depth} should have {dims[depth]} entries)");
        foreach (var x in e.EnumerateArray()) Flatten(x, depth + 1, dims, values, where);
    }

    /// <summary>
    /// Checks inputs against the model's signature before anything is sent, so a wrong file is named locally.
    /// <paramref name="batched"/>: inputs carry the leading batch axis (predict, batch-jacobian) or not (jacobian).
    /// Returns the batch size (1 for a single sample).
    /// </summary>
    public static long CheckShapes(Dictionary<string, FloatTensor> inputs, ModelInfo model, bool batched, string verb)
    {
        foreach (var name in inputs.Keys.Where(n => model.Inputs.All(i => i.Name != n)))
            throw new JacException($"model {model.Name} has no input '{name}'; its inputs: {string.Join(", ", model.Inputs.Select(i => i.Name))}");
        long? batch = null;
        foreach (var sig in model.Inputs)
        {
            if (!inputs.TryGetValue(sig.Name, out var a))
                throw new JacException($"input '{sig.Name}' of {model.Name} is missing (expected {Expected(sig, batched)})");
            var want = batched ? sig.Shape.ToArray() : sig.Shape.Skip(1).ToArray();
            bool fits = a.Shape.Length == want.Length && want.Zip(a.Shape).All(p => p.First < 0 || p.First == p.Second);
            if (!fits)
            {
                string hint = batched && a.Shape.Length == want.Length - 1 ? "; it lacks the leading batch axis (a single sample? use jac jacobian)"
                    : !batched && a.Shape.Length == want.Length + 1 ? "; it has a batch axis (use jac batch-jacobian for a batch)" : "";
                throw new JacException($"input '{sig.Name}' has shape [{string.Join(", ", a.Shape)}], but {model.Name} expects {Expected(sig, batched)} for {verb}{hint}");
            }
            if (batched)
            {
                if (batch is not null && batch != a.Shape[0])
                    throw new JacException($"inputs disagree on the batch size: '{sig.Name}' has {a.Shape[0]} rows, another input {batch}");
                batch = a.Shape[0];
            }
        }
        return batch ?? 1;
    }

    private static string Expected(TensorInfo sig, bool batched)
    {
        var dims = sig.Shape.Select((d, i) => d >= 0 ? d.ToString() : i == 0 ? "B" : "?");
        return "[" + string.Join(", ", batched ? dims : dims.Skip(1)) + "]";
    }

    /// <summary>
    /// Writes a result: JSON to standard output (no <paramref name="path"/>) or to a .json file; a .npy file when
    /// exactly one tensor is meant (the Jacobian of the only output, or the only output of predict); any other
    /// path is a folder that gets output_NAME.npy and jacobian_NAME.npy. <paramref name="derivatives"/> names the
    /// derivatives in the JSON and the folder ("jacobians", "jvps", "vjp", "hessians", "laplacians");
    /// <paramref name="mode"/>, when given, is the derivative mode that ran, written to the JSON.
    /// <paramref name="alsoJacobians"/>: first derivatives that came with second ones (include_jacobian), written as
    /// "jacobians" beside them.
    /// </summary>
    public static void WriteResult(string? path, TextWriter stdout, string model, string version,
        IReadOnlyDictionary<string, FloatTensor> outputs, IReadOnlyDictionary<string, FloatTensor>? jacobians, string derivatives = "jacobians",
        DerivativeMode? mode = null, IReadOnlyDictionary<string, FloatTensor>? alsoJacobians = null)
    {
        if (path is null || path.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            string json = ResultJson(model, version, outputs, jacobians, derivatives, mode, alsoJacobians);
            if (path is null) stdout.WriteLine(json);
            else File.WriteAllText(path, json + "\n");
            return;
        }
        if (path.EndsWith(".npy", StringComparison.OrdinalIgnoreCase))
        {
            var single = jacobians is not null ? jacobians : outputs;
            var names = single.Keys.Concat(alsoJacobians?.Keys.Select(k => $"jacobian of {k}") ?? []).ToList();
            if (names.Count != 1)
                throw new JacException($"{path}: the result has {names.Count} tensors ({string.Join(", ", names)}); " +
                                       "pick one with --of, or give a folder to get one .npy per tensor");
            Npy.Write(path, single.Values.Single());
            return;
        }
        Directory.CreateDirectory(path);
        foreach (var (name, t) in outputs) Npy.Write(Path.Combine(path, $"output_{name}.npy"), t);
        if (jacobians is not null)
            foreach (var (name, t) in jacobians) Npy.Write(Path.Combine(path, $"{derivatives.TrimEnd('s')}_{name}.npy"), t);
        if (alsoJacobians is not null)
            foreach (var (name, t) in alsoJacobians) Npy.Write(Path.Combine(path, $"jacobian_{name}.npy"), t);
    }

    public static string ResultJson(string model, string version, IReadOnlyDictionary<string, FloatTensor> outputs,
        IReadOnlyDictionary<string, FloatTensor>? jacobians,
        string derivatives = "jacobians", DerivativeMode? mode = null, IReadOnlyDictionary<string, FloatTensor>? alsoJacobians = null)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions()))
        {
            w.WriteStartObject();
            w.WriteString("model", model);
            w.WriteString("version", version);
            WriteTensors(w, "outputs", outputs);
            if (jacobians is not null) WriteTensors(w, derivatives, jacobians);
            if (alsoJacobians is not null) WriteTensors(w, "jacobians", alsoJacobians);
            if (mode is { } m) w.WriteString("mode", ModeOption.Name(m));
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static void WriteTensors(Utf8JsonWriter w, string property, IReadOnlyDictionary<string, FloatTensor> tensors)
    {
        w.WriteStartObject(property);
        foreach (var (name, t) in tensors.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            w.WriteStartObject(name);
            w.WriteStartArray("shape");
            foreach (var d in t.Shape) w.WriteNumberValue(d);
            w.WriteEndArray();
            w.WriteStartArray("data");
            foreach (var v in t.Data.Span)
            {
                // JSON has no NaN or infinity; numpy's and Python's json spell them so.
                if (float.IsFinite(v)) w.WriteNumberValue(v);
                else w.WriteRawValue(float.IsNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity", skipInputValidation: true);
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }
}
