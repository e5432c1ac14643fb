using System.IO.Pipelines;
using System.Text.Encodings.Web;
using System.Text.Json;
using Google.Protobuf.Collections;
using JacService.Protos.Inference;

namespace JacService.Server.Inference;

/// <summary>
/// The gRPC binding's responses as the Open Inference Protocol's JSON ($inference_response, $metadata_server_response,
/// $metadata_model_response). Tensor data is written flat, in row-major order. JSON has no NaN or infinities: those
/// values are written as the strings "NaN", "Infinity" and "-Infinity", as .NET's and Python's JSON libraries name them.
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

    public static async Task WriteAsync(PipeWriter pipe, ModelInferResponse response, CancellationToken cancellation)
    {
        await using var json = new Utf8JsonWriter(pipe, Writing);
        json.WriteStartObject();
        json.WriteString("model_name", response.ModelName);
        json.WriteString("model_version", response.ModelVersion);
        if (response.Id.Length > 0) json.WriteString("id", response.Id);
        if (response.Parameters.Count > 0) WriteParameters(json, response.Parameters);
        json.WriteStartArray("outputs");
        foreach (var output in response.Outputs)
        {
            json.WriteStartObject();
            json.WriteString("name", output.Name);
            json.WriteString("datatype", output.Datatype);
            WriteShape(json, output.Shape);
            json.WriteStartArray("data");
            foreach (float value in output.Contents.Fp32Contents)
            {
                if (float.IsFinite(value)) json.WriteNumberValue(value);
                else json.WriteStringValue(float.IsNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity");
                if (json.BytesPending >= FlushBytes)
                {
                    json.Flush();
                    await pipe.FlushAsync(cancellation);
                }
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteEndObject();
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
