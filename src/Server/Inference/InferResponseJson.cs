using System.IO.Pipelines;
using System.Runtime.InteropServices;
using System.Text.Encodings.Web;
using System.Text.Json;
using Google.Protobuf.Collections;
using JacService.Protos.Inference;

namespace JacService.Server.Inference;

/// <summary>
/// The gRPC binding's responses as the Open Inference Protocol's JSON ($inference_response, $metadata_server_response,
/// $metadata_model_response). Tensor data is written flat, in row-major order. JSON has no NaN or infinities: those
/// values are written as the strings "NaN", "Infinity" and "-Infinity", as .NET's and Python's JSON libraries name them.
/// An output the request asks for as binary data (the binary tensor data extension) has "binary_data_size" in its
/// parameters and no data: its bytes follow the JSON (<see cref="OpenInferenceRest"/>).
/// </summary>
internal static class InferResponseJson
{
    /// <summary>What is written before it goes to the client: a large result is sent as it is written, not held whole as text.</summary>
    private const int FlushBytes = 64 * 1024;

    /// <summary>
    /// Quotes and apostrophes in messages and names as they are: the body is JSON, never HTML, which the default escaping
    /// (\u0027 for ') is meant for.
    /// </summary>
    public static readonly JsonWriterOptions Writing = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// Which of the response's outputs go as binary data: those the request asks for with "binary_data", else all of them
    /// where it sets "binary_data_output". The response lists the requested outputs in the request's order.
    /// </summary>
    public static bool[] BinaryOutputs(ModelInferRequest request, ModelInferResponse response)
    {
        bool all = request.Parameters.TryGetValue(InferRequestJson.BinaryDataOutput, out var p) && p.BoolParam;
        if (request.Outputs.Count == 0) return [.. response.Outputs.Select(_ => all)];
        return [.. request.Outputs.Select(o => o.Parameters.TryGetValue(InferRequestJson.BinaryData, out var b) ? b.BoolParam : all)];
    }

    /// <summary>The response's JSON: its outputs' values from raw_output_contents, which the REST binding always asks for.</summary>
    public static async Task WriteAsync(PipeWriter pipe, ModelInferResponse response, bool[] binary, CancellationToken cancellation)
    {
        await using var json = new Utf8JsonWriter(pipe, Writing);
        json.WriteStartObject();
        json.WriteString("model_name", response.ModelName);
        json.WriteString("model_version", response.ModelVersion);
        if (response.Id.Length > 0) json.WriteString("id", response.Id);
        if (response.Parameters.Count > 0) WriteParameters(json, response.Parameters);
        json.WriteStartArray("outputs");
        for (int i = 0; i < response.Outputs.Count; i++)
        {
            var output = response.Outputs[i];
            var raw = response.RawOutputContents[i].Memory;
            json.WriteStartObject();
            json.WriteString("name", output.Name);
            json.WriteString("datatype", output.Datatype);
            WriteShape(json, output.Shape);
            if (binary[i])
            {
                json.WriteStartObject("parameters");
                json.WriteNumber(InferRequestJson.BinaryDataSize, raw.Length);
                json.WriteEndObject();
                json.WriteEndObject();
                continue;
            }
            json.WriteStartArray("data");
            for (int written = 0; written < raw.Length / sizeof(float);)
            {
                written = WriteValues(json, MemoryMarshal.Cast<byte, float>(raw.Span), written);
                json.Flush();
                await pipe.FlushAsync(cancellation);
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteEndObject();
    }

    /// <summary>Values from <paramref name="from"/> on until a flush's worth is pending; returns where it stopped.</summary>
    private static int WriteValues(Utf8JsonWriter json, ReadOnlySpan<float> values, int from)
    {
        int k = from;
        for (; k < values.Length && json.BytesPending < FlushBytes; k++)
        {
            float value = values[k];
            if (float.IsFinite(value)) json.WriteNumberValue(value);
            else json.WriteStringValue(float.IsNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity");
        }
        return k;
    }

    public static void Write(Utf8JsonWriter json, ServerMetadataResponse metadata)
    {
        json.WriteStartObject();
        json.WriteString("name", metadata.Name);
        json.WriteString("version", metadata.Version);
        json.WriteStartArray("extensions");
        foreach (var extension in metadata.Extensions) json.WriteStringValue(extension);
        json.WriteEndArray();
        json.WriteEndObject();
    }

    /// <summary>The protocol's model metadata, and the gRPC binding's properties (version, opset, default_mode) as "properties".</summary>
    public static void Write(Utf8JsonWriter json, ModelMetadataResponse metadata)
    {
        json.WriteStartObject();
        json.WriteString("name", metadata.Name);
        json.WriteStartArray("versions");
        foreach (var version in metadata.Versions) json.WriteStringValue(version);
        json.WriteEndArray();
        json.WriteString("platform", metadata.Platform);
        WriteTensors(json, "inputs", metadata.Inputs);
        WriteTensors(json, "outputs", metadata.Outputs);
        json.WriteStartObject("properties");
        foreach (var (key, value) in metadata.Properties) json.WriteString(key, value);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    private static void WriteTensors(Utf8JsonWriter json, string name, RepeatedField<ModelMetadataResponse.Types.TensorMetadata> tensors)
    {
        json.WriteStartArray(name);
        foreach (var tensor in tensors)
        {
            json.WriteStartObject();
            json.WriteString("name", tensor.Name);
            json.WriteString("datatype", tensor.Datatype);
            WriteShape(json, tensor.Shape);
            json.WriteEndObject();
        }
        json.WriteEndArray();
    }

    private static void WriteShape(Utf8JsonWriter json, RepeatedField<long> shape)
    {
        json.WriteStartArray("shape");
        foreach (long axis in shape) json.WriteNumberValue(axis);
        json.WriteEndArray();
    }

    private static void WriteParameters(Utf8JsonWriter json, MapField<string, InferParameter> parameters)
    {
        json.WriteStartObject("parameters");
        foreach (var (key, value) in parameters)
        {
            switch (value.ParameterChoiceCase)
            {
                case InferParameter.ParameterChoiceOneofCase.BoolParam: json.WriteBoolean(key, value.BoolParam); break;
                case InferParameter.ParameterChoiceOneofCase.Int64Param: json.WriteNumber(key, value.Int64Param); break;
                case InferParameter.ParameterChoiceOneofCase.DoubleParam: json.WriteNumber(key, value.DoubleParam); break;
                default: json.WriteString(key, value.StringParam); break;
            }
        }
        json.WriteEndObject();
    }
}
