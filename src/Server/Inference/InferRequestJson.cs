using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Google.Protobuf.Collections;
using JacService.Core;
using JacService.Core.Models;
using JacService.Protos.Inference;
using InferInput = JacService.Protos.Inference.ModelInferRequest.Types.InferInputTensor;
using InferOutput = JacService.Protos.Inference.ModelInferRequest.Types.InferRequestedOutputTensor;

namespace JacService.Server.Inference;

/// <summary>
/// The Open Inference Protocol's JSON inference request ($inference_request: id, parameters, inputs with name, shape,
/// datatype and data, outputs) as the gRPC ModelInferRequest the calls take. Each input's values, flat or nested in
/// row-major order, go to the typed contents its datatype has in gRPC; FP16, which has none there, is read as FP32 (the
/// engine computes in float32 either way). Keys the protocol does not define are refused, so a misspelt "input" is not
/// silently a request without inputs.
/// <para>
/// The binary tensor data extension (Triton's, which its HTTP client uses by default): an input with "binary_data_size" has
/// no "data"; its values are that many bytes after the JSON, in the order of the inputs, little-endian, as the gRPC binding's
/// raw_input_contents. A request with any binary input travels as raw contents whole, its JSON inputs converted to FP32.
/// </para>
/// </summary>
internal static class InferRequestJson
{
    public const string BinaryDataSize = "binary_data_size";
    public const string BinaryData = "binary_data";
    public const string BinaryDataOutput = "binary_data_output";

    /// <summary>
    /// A request body: all JSON, or (<paramref name="jsonLength"/>, the Inference-Header-Content-Length header) that many
    /// bytes of JSON and the binary data of the inputs that have binary_data_size. The request's raw contents may point into
    /// <paramref name="body"/>: it must outlive the request's decoding.
    /// </summary>
    public static ModelInferRequest Read(ReadOnlyMemory<byte> body, long? jsonLength, string model, string version)
    {
        if (jsonLength is < 0 || jsonLength > body.Length)
            throw Invalid($"Inference-Header-Content-Length is {jsonLength}; the body has {body.Length} bytes, of which the JSON is the first");
        int json = (int)(jsonLength ?? body.Length);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body[..json], OpenInferenceRest.Parsing);
        }
        catch (JsonException e)
        {
            throw Invalid($"the request body is not valid JSON: {e.Message}");
        }
        using (document) return Read(document.RootElement, model, version, body[json..], jsonLength.HasValue);
    }

    private static ModelInferRequest Read(JsonElement body, string model, string version, ReadOnlyMemory<byte> binary, bool binaryExpected)
    {
        try
        {
            var request = ReadBody(body, model, version);
            AttachBinary(request, binary, binaryExpected);
            return request;
        }
        // The parser checks the structure, not the UTF-8 of names and strings: that fails as one is read (fuzzing found it,
        // an answer of INTERNAL before).
        catch (InvalidOperationException e) when (e.InnerException is DecoderFallbackException invalid)
        {
            throw Invalid($"the request body is not valid UTF-8: {invalid.Message}");
        }
    }

    private static ModelInferRequest ReadBody(JsonElement body, string model, string version)
    {
        if (body.ValueKind != JsonValueKind.Object)
            throw Invalid($"the request body is a JSON {Kind(body)}; expected an object with \"inputs\" (and optionally \"id\", \"parameters\", \"outputs\")");
        var request = new ModelInferRequest { ModelName = model, ModelVersion = version };
        bool inputs = false;
        foreach (var property in body.EnumerateObject())
        {
            switch (property.Name)
            {
                case "id":
                    request.Id = Text(property.Value, "id");
                    break;
                case "parameters":
                    ReadParameters(property.Value, "parameters", request.Parameters);
                    break;
                case "inputs":
                    foreach (var input in Items(property.Value, "inputs")) request.Inputs.Add(ReadInput(input, request.Inputs.Count));
                    inputs = true;
                    break;
                case "outputs":
                    foreach (var output in Items(property.Value, "outputs")) request.Outputs.Add(ReadOutput(output, request.Outputs.Count));
                    break;
                // Not the protocol's, but in its extension's examples: taken where they name what the path names.
                case "model_name" or "model_version":
                    string given = Text(property.Value, property.Name), path = property.Name == "model_name" ? model : version;
                    if (given != path) throw Invalid($"the request's {property.Name} is '{given}' and its path names '{path}'; leave it out or make them agree");
                    break;
                default:
                    throw Invalid($"the request has a key \"{property.Name}\"; an inference request has \"id\", \"parameters\", \"inputs\" and \"outputs\"");
            }
        }
        if (!inputs) throw Invalid("the request has no \"inputs\"");
        if (request.Parameters.TryGetValue(BinaryDataOutput, out var all) && all.ParameterChoiceCase != InferParameter.ParameterChoiceOneofCase.BoolParam)
            throw Invalid($"parameters.{BinaryDataOutput} must be true or false");
        return request;
    }

    /// <summary>
    /// The binary data after the JSON, to the inputs that have binary_data_size, in order. The request then travels in raw
    /// contents (the gRPC binding takes raw contents for every input or for none): the JSON inputs' values are converted.
    /// </summary>
    private static void AttachBinary(ModelInferRequest request, ReadOnlyMemory<byte> binary, bool binaryExpected)
    {
        var sizes = request.Inputs.Select(i => i.Parameters.TryGetValue(BinaryDataSize, out var size) ? size.Int64Param : (long?)null).ToArray();
        int first = Array.FindIndex(sizes, s => s.HasValue);
        if (first < 0)
        {
            if (binary.Length > 0) throw Invalid($"the body has {binary.Length:N0} bytes after its JSON, and no input has {BinaryDataSize}");
            return;
        }
        if (!binaryExpected)
            throw Invalid($"input '{request.Inputs[first].Name}' has {BinaryDataSize}, but the request has no Inference-Header-Content-Length header to say where its JSON ends");
        int at = 0;
        for (int i = 0; i < request.Inputs.Count; i++)
        {
            var input = request.Inputs[i];
            if (sizes[i] is { } size)
            {
                if (size > binary.Length - at)
                    throw Invalid($"input '{input.Name}' has {BinaryDataSize} {size:N0}; the body has {binary.Length - at:N0} bytes left after its JSON and the inputs before it");
                request.RawInputContents.Add(UnsafeByteOperations.UnsafeWrap(binary.Slice(at, (int)size)));
                at += (int)size;
            }
            else
            {
                // An unknown datatype has no contents to convert; the decoder refuses it by name.
                request.RawInputContents.Add(InferDatatype.RawSizes.ContainsKey(input.Datatype) ? InferInputs.ToRawFloats(input) : ByteString.Empty);
            }
        }
        if (at != binary.Length)
            throw Invalid($"the body has {binary.Length - at:N0} bytes after the inputs' binary data ({at:N0} bytes by their {BinaryDataSize}); send each input's bytes once");
    }

    private static InferInput ReadInput(JsonElement input, int index)
    {
        string where = $"inputs[{index}]";
        if (input.ValueKind != JsonValueKind.Object) throw Invalid($"{where} is a JSON {Kind(input)}; expected an object with name, shape, datatype and data");
        var tensor = new InferInput();
        JsonElement? data = null;
        foreach (var property in input.EnumerateObject())
        {
            switch (property.Name)
            {
                case "name":
                    tensor.Name = Text(property.Value, where + ".name");
                    break;
                case "shape":
                    foreach (var axis in Items(property.Value, where + ".shape"))
                        tensor.Shape.Add(axis.ValueKind == JsonValueKind.Number && axis.TryGetInt64(out long size)
                            ? size
                            : throw Invalid($"{where}.shape holds {axis.GetRawText()}; expected integers"));
                    break;
                case "datatype":
                    tensor.Datatype = Text(property.Value, where + ".datatype");
                    break;
                case "parameters":
                    ReadParameters(property.Value, where + ".parameters", tensor.Parameters);
                    break;
                case "data":
                    data = property.Value;
                    break;
                default:
                    throw Invalid($"{where} has a key \"{property.Name}\"; an input has \"name\", \"shape\", \"datatype\", \"parameters\" and \"data\"");
            }
        }
        foreach (var (key, value) in new[] { ("name", tensor.Name), ("datatype", tensor.Datatype) })
            if (value.Length == 0) throw Invalid($"{where} has no \"{key}\"");
        string name = $"input '{tensor.Name}'";
        if (tensor.Parameters.TryGetValue(BinaryDataSize, out var binary))
        {
            CheckBinarySize(tensor, binary, name, data.HasValue);
            return tensor;
        }
        if (data is not { } values) throw Invalid($"{name} has no \"data\"");
        // An unknown datatype is left without contents: the decoder that follows names the datatypes it takes.
        if (!InferDatatype.RawSizes.ContainsKey(tensor.Datatype)) return tensor;
        if (tensor.Datatype == "FP16") tensor.Datatype = InferDatatype.Fp32;
        tensor.Contents = new InferTensorContents();
        int count = 0;
        Flatten(values, tensor, name, ref count);
        if (tensor.Shape.All(d => d >= 0) && HostTensor.Elements([.. tensor.Shape]) is var expected && expected != count)
            throw Invalid($"{name} has {count} values in data; its shape [{string.Join(", ", tensor.Shape)}] takes {expected}");
        return tensor;
    }

    private static void CheckBinarySize(InferInput tensor, InferParameter binary, string name, bool hasData)
    {
        if (hasData) throw Invalid($"{name} has both \"data\" and {BinaryDataSize}; send its values one way");
        if (binary.ParameterChoiceCase != InferParameter.ParameterChoiceOneofCase.Int64Param || binary.Int64Param < 0)
            throw Invalid($"{name} has {BinaryDataSize} {Shown(binary)}; expected a whole number of bytes");
        // An unknown datatype or a negative axis is left to the decoder, which names what it takes.
        if (!InferDatatype.RawSizes.TryGetValue(tensor.Datatype, out int size) || tensor.Shape.Any(d => d < 0)) return;
        long count = HostTensor.Elements([.. tensor.Shape]);
        if (count == long.MaxValue || binary.Int64Param / size != count || binary.Int64Param % size != 0)
            throw Invalid($"{name} has {BinaryDataSize} {binary.Int64Param:N0}; its shape [{string.Join(", ", tensor.Shape)}] takes {count:N0} values of {tensor.Datatype}, {size} bytes each");
    }

    private static string Shown(InferParameter p) => p.ParameterChoiceCase switch
    {
        InferParameter.ParameterChoiceOneofCase.StringParam => $"\"{Shorten(p.StringParam)}\"",
        InferParameter.ParameterChoiceOneofCase.BoolParam => p.BoolParam ? "true" : "false",
        InferParameter.ParameterChoiceOneofCase.DoubleParam => p.DoubleParam.ToString(System.Globalization.CultureInfo.InvariantCulture),
        _ => p.Int64Param.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>The values in row-major order, whether flat or nested, each checked against the datatype.</summary>
    private static void Flatten(JsonElement data, InferInput tensor, string name, ref int count)
    {
        if (data.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in data.EnumerateArray()) Flatten(item, tensor, name, ref count);
            return;
        }
        var contents = tensor.Contents;
        string datatype = tensor.Datatype;
        bool read = datatype switch
        {
            "BOOL" => data.ValueKind is JsonValueKind.True or JsonValueKind.False && Add(contents.BoolContents, data.GetBoolean()),
            "FP32" => data.ValueKind == JsonValueKind.Number && data.TryGetSingle(out float f) && float.IsFinite(f) && Add(contents.Fp32Contents, f),
            "FP64" => data.ValueKind == JsonValueKind.Number && data.TryGetDouble(out double d) && double.IsFinite(d) && Add(contents.Fp64Contents, d),
            "INT8" => Integer(data, sbyte.MinValue, sbyte.MaxValue, contents.IntContents),
            "INT16" => Integer(data, short.MinValue, short.MaxValue, contents.IntContents),
            "INT32" => Integer(data, int.MinValue, int.MaxValue, contents.IntContents),
            "INT64" => data.ValueKind == JsonValueKind.Number && data.TryGetInt64(out long l) && Add(contents.Int64Contents, l),
            "UINT8" => Unsigned(data, byte.MaxValue, contents.UintContents),
            "UINT16" => Unsigned(data, ushort.MaxValue, contents.UintContents),
            "UINT32" => Unsigned(data, uint.MaxValue, contents.UintContents),
            "UINT64" => data.ValueKind == JsonValueKind.Number && data.TryGetUInt64(out ulong u) && Add(contents.Uint64Contents, u),
            _ => false,
        };
        if (!read) throw Invalid($"{name} has {Shorten(data.GetRawText())} at value {count} of its data; expected {Expected(datatype)}");
        count++;
    }

    private static bool Integer(JsonElement data, long min, long max, RepeatedField<int> into) =>
        data.ValueKind == JsonValueKind.Number && data.TryGetInt64(out long v) && v >= min && v <= max && Add(into, (int)v);

    private static bool Unsigned(JsonElement data, ulong max, RepeatedField<uint> into) =>
        data.ValueKind == JsonValueKind.Number && data.TryGetUInt64(out ulong v) && v <= max && Add(into, (uint)v);

    private static bool Add<T>(RepeatedField<T> into, T value)
    {
        into.Add(value);
        return true;
    }

    private static string Expected(string datatype) => datatype switch
    {
        "BOOL" => "true or false",
        "FP32" or "FP64" => $"a finite number ({datatype})",
        _ => $"an integer within {datatype}'s range",
    };

    private static InferOutput ReadOutput(JsonElement output, int index)
    {
        string where = $"outputs[{index}]";
        if (output.ValueKind != JsonValueKind.Object) throw Invalid($"{where} is a JSON {Kind(output)}; expected an object with a name");
        var tensor = new InferOutput();
        foreach (var property in output.EnumerateObject())
        {
            switch (property.Name)
            {
                case "name":
                    tensor.Name = Text(property.Value, where + ".name");
                    break;
                case "parameters":
                    ReadParameters(property.Value, where + ".parameters", tensor.Parameters);
                    break;
                default:
                    throw Invalid($"{where} has a key \"{property.Name}\"; a requested output has \"name\" and \"parameters\"");
            }
        }
        if (tensor.Name.Length == 0) throw Invalid($"{where} has no \"name\"");
        if (tensor.Parameters.TryGetValue(BinaryData, out var binary) && binary.ParameterChoiceCase != InferParameter.ParameterChoiceOneofCase.BoolParam)
            throw Invalid($"output '{tensor.Name}' has {BinaryData} {Shown(binary)}; expected true or false");
        return tensor;
    }

    /// <summary>A parameters object: strings, booleans and numbers, as the gRPC binding's string, bool, int64 and double params.</summary>
    private static void ReadParameters(JsonElement parameters, string where, MapField<string, InferParameter> into)
    {
        if (parameters.ValueKind != JsonValueKind.Object) throw Invalid($"{where} is a JSON {Kind(parameters)}; expected an object");
        foreach (var property in parameters.EnumerateObject())
        {
            var value = property.Value;
            into[property.Name] = value.ValueKind switch
            {
                JsonValueKind.String => new InferParameter { StringParam = value.GetString() },
                JsonValueKind.True or JsonValueKind.False => new InferParameter { BoolParam = value.GetBoolean() },
                JsonValueKind.Number when value.TryGetInt64(out long l) => new InferParameter { Int64Param = l },
                JsonValueKind.Number => new InferParameter { DoubleParam = value.GetDouble() },
                _ => throw Invalid($"{where}.{property.Name} is a JSON {Kind(value)}; a parameter is a string, a boolean or a number"),
            };
        }
    }

    private static JsonElement.ArrayEnumerator Items(JsonElement value, string where) =>
        value.ValueKind == JsonValueKind.Array ? value.EnumerateArray() : throw Invalid($"{where} is a JSON {Kind(value)}; expected an array");

    private static string Text(JsonElement value, string where) =>
        value.ValueKind == JsonValueKind.String ? value.GetString()! : throw Invalid($"{where} is a JSON {Kind(value)}; expected a string");

    private static string Kind(JsonElement value) => value.ValueKind.ToString().ToLowerInvariant();

    private static string Shorten(string text) => text.Length <= 40 ? text : text[..40] + "…";

    private static InvalidRequestException Invalid(string message) => new(message);
}
