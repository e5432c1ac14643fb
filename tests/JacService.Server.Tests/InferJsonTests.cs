using System.IO.Pipelines;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using JacService.Core;
using JacService.Protos.Inference;
using JacService.Server.Inference;

namespace JacService.Server.Tests;

/// <summary>
/// The REST binding's JSON against the gRPC binding's messages: each datatype's values into the typed contents it has in
/// gRPC (range-checked), nested and flat data alike, parameters by JSON kind, and the refusals a caller can act on; on the
/// way back, values JSON has no number for as the strings .NET's and Python's JSON libraries write.
/// </summary>
public class InferJsonTests
{
    private static ModelInferRequest Read(string json) => InferRequestJson.Read(Encoding.UTF8.GetBytes(json), null, "m", "2");

    /// <summary>A body of the binary tensor data extension: the JSON, then the bytes; the JSON's length is the header's.</summary>
    private static ModelInferRequest ReadBinary(string json, params byte[] binary)
    {
        byte[] head = Encoding.UTF8.GetBytes(json);
        return InferRequestJson.Read((byte[])[.. head, .. binary], head.Length, "m", "2");
    }

    private static string Input(string datatype, string shape, string data) =>
        $$"""{"inputs": [{"name": "x", "datatype": "{{datatype}}", "shape": {{shape}}, "data": {{data}}}]}""";

    [Fact]
    public void NestedAndFlatDataAreTheSameRowMajorValues()
    {
        var flat = Read(Input("FP32", "[2, 3]", "[1, 2, 3, 4, 5, 6.5]"));
        var nested = Read(Input("FP32", "[2, 3]", "[[1, 2, 3], [4, 5, 6.5]]"));
        Assert.Equal([1f, 2, 3, 4, 5, 6.5f], flat.Inputs[0].Contents.Fp32Contents);
        Assert.Equal(flat.Inputs[0], nested.Inputs[0]);
        Assert.Equal(("m", "2", "x"), (flat.ModelName, flat.ModelVersion, flat.Inputs[0].Name));
        Assert.Equal([2, 3], flat.Inputs[0].Shape);
    }

    [Fact]
    public void EachDatatypeFillsTheContentsItHasInGrpc()
    {
        Assert.Equal([9007199254740993L, -2], Read(Input("INT64", "[2]", "[9007199254740993, -2]")).Inputs[0].Contents.Int64Contents);
        Assert.Equal([-128, 127], Read(Input("INT8", "[2]", "[-128, 127]")).Inputs[0].Contents.IntContents);
        Assert.Equal([0u, 65535], Read(Input("UINT16", "[2]", "[0, 65535]")).Inputs[0].Contents.UintContents);
        Assert.Equal([true, false], Read(Input("BOOL", "[2]", "[true, false]")).Inputs[0].Contents.BoolContents);
        Assert.Equal([0.1, 1e300], Read(Input("FP64", "[2]", "[0.1, 1e300]")).Inputs[0].Contents.Fp64Contents);
        // FP16 has no typed contents in gRPC; its numbers are read as the FP32 the engine computes in.
        var half = Read(Input("FP16", "[1]", "[0.5]")).Inputs[0];
        Assert.Equal(("FP32", 0.5f), (half.Datatype, half.Contents.Fp32Contents.Single()));
    }

    [Theory]
    [InlineData("INT8", "[128]", "input 'x' has 128 at value 0 of its data; expected an integer within INT8's range")]
    [InlineData("UINT8", "[-1]", "input 'x' has -1 at value 0 of its data; expected an integer within UINT8's range")]
    [InlineData("INT32", "[1.5]", "input 'x' has 1.5 at value 0 of its data; expected an integer within INT32's range")]
    [InlineData("FP32", "[1, \"NaN\"]", "input 'x' has \"NaN\" at value 1 of its data; expected a finite number (FP32)")]
    [InlineData("FP32", "[1e39]", "input 'x' has 1e39 at value 0 of its data; expected a finite number (FP32)")]
    [InlineData("BOOL", "[1]", "input 'x' has 1 at value 0 of its data; expected true or false")]
    [InlineData("FP32", "[null]", "input 'x' has null at value 0 of its data; expected a finite number (FP32)")]
    public void AValueOutsideItsDatatypeIsRefusedWithItsPlace(string datatype, string data, string message) =>
        Assert.Equal(message, Assert.Throws<InvalidRequestException>(() => Read(Input(datatype, "[1]", data))).Message);

    [Theory]
    [InlineData("[1, 2, 3]", "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [2], \"data\": [1, 2, 3]}]}", "input 'x' has 3 values in data; its shape [2] takes 2")]
    [InlineData("array", "[1]", "the request body is a JSON array; expected an object with \"inputs\" (and optionally \"id\", \"parameters\", \"outputs\")")]
    [InlineData("no inputs", "{\"id\": \"a\"}", "the request has no \"inputs\"")]
    [InlineData("misspelt key", "{\"input\": []}", "the request has a key \"input\"; an inference request has \"id\", \"parameters\", \"inputs\" and \"outputs\"")]
    [InlineData("shape", "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [\"2\"], \"data\": [1]}]}", "inputs[0].shape holds \"2\"; expected integers")]
    [InlineData("no data", "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [1]}]}", "input 'x' has no \"data\"")]
    [InlineData("no name", "{\"inputs\": [{\"datatype\": \"FP32\", \"shape\": [1], \"data\": [1]}]}", "inputs[0] has no \"name\"")]
    [InlineData("binary input without the header", "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [1], \"parameters\": {\"binary_data_size\": 4}}]}",
        "input 'x' has binary_data_size, but the request has no Inference-Header-Content-Length header to say where its JSON ends")]
    [InlineData("another model", "{\"model_name\": \"n\", \"inputs\": []}", "the request's model_name is 'n' and its path names 'm'; leave it out or make them agree")]
    [InlineData("binary output not a bool", "{\"inputs\": [], \"outputs\": [{\"name\": \"y\", \"parameters\": {\"binary_data\": 1}}]}",
        "output 'y' has binary_data 1; expected true or false")]
    [InlineData("all binary not a bool", "{\"inputs\": [], \"parameters\": {\"binary_data_output\": \"yes\"}}", "parameters.binary_data_output must be true or false")]
    [InlineData("not JSON", "{\"inputs\": [", "the request body is not valid JSON: ")]
    [InlineData("parameter", "{\"inputs\": [], \"parameters\": {\"a\": [1]}}", "parameters.a is a JSON array; a parameter is a string, a boolean or a number")]
    public void AMalformedRequestIsRefusedSayingWhatWasExpected(string what, string json, string message)
    {
        Assert.NotEmpty(what);
        Assert.StartsWith(message, Assert.Throws<InvalidRequestException>(() => Read(json)).Message);
    }

    /// <summary>
    /// Mutated valid requests (bytes flipped, dropped, repeated): each is read, or refused by the parser or as an invalid
    /// request, and what is read decodes into tensors or is refused as invalid; nothing else escapes. The binary ones keep
    /// their header's length, so the JSON's end moves as bytes go and come.
    /// </summary>
    [Fact]
    public void MutatedRequestsAreReadOrRefusedNeverAnythingElse()
    {
        const string binary = """{"inputs": [{"name": "x", "datatype": "INT16", "shape": [2], "parameters": {"binary_data_size": 4}},"""
            + """ {"name": "y", "datatype": "FP32", "shape": [1], "data": [2]}], "parameters": {"binary_data_output": true}}""";
        long binaryLength = Encoding.UTF8.GetByteCount(binary);
        byte[][] seeds =
        [
            [.. Encoding.UTF8.GetBytes(binary), 1, 2, 3, 4],
            .. new[]
            {
                Input("FP32", "[2, 3]", "[[1, 2, 3], [4, 5, 6.5]]"),
                Input("INT64", "[2]", "[7, -2]"),
                Input("BOOL", "[1, 2]", "[[true, false]]"),
                """{"id": "q", "inputs": [{"name": "x", "datatype": "UINT8", "shape": [2], "data": [1, 255], "parameters": {"p": 1.5}}],"""
                    + """ "parameters": {"jacservice.derivative": "jacobian"}, "outputs": [{"name": "y", "parameters": {"binary_data": false}}]}""",
            }.Select(Encoding.UTF8.GetBytes),
        ];
        var random = new Random(20261207);
        int read = 0, refused = 0;
        for (int i = 0; i < 20_000; i++)
        {
            var bytes = seeds[i % seeds.Length].ToList();
            for (int edits = random.Next(1, 4); edits > 0 && bytes.Count > 1; edits--)
            {
                int at = random.Next(bytes.Count);
                switch (random.Next(3))
                {
                    case 0: bytes[at] = (byte)"{}[],:\"-e.0123456789aznul \\"[random.Next(26)]; break;
                    case 1: bytes.RemoveAt(at); break;
                    default: bytes.InsertRange(at, bytes.Skip(at).Take(random.Next(1, 12)).ToList()); break;
                }
            }
            try
            {
                var request = InferRequestJson.Read(bytes.ToArray(), i % seeds.Length == 0 ? binaryLength : null, "m", "");
                InferInputs.Decode(request);
                read++;
            }
            catch (InvalidRequestException)
            {
                refused++;
            }
        }
        Assert.True(read > 100 && refused > 100, $"{read} read, {refused} refused: the mutations should reach both");
    }

    /// <summary>
    /// The parser checks JSON's structure, not the UTF-8 of its strings and names, which fails only as one is read: a
    /// parameter's value, a key, a name, a value quoted in a message. Each is refused as the caller's (fuzzing found the
    /// first; it was INTERNAL).
    /// </summary>
    [Theory]
    [InlineData("{\"inputs\": [], \"parameters\": {\"a\": \"\xff\"}}")]
    [InlineData("{\"inputs\": [], \"parameters\": {\"\xff\": 1}}")]
    [InlineData("{\"\xc3\": []}")]
    [InlineData("{\"inputs\": [{\"name\": \"\x88\", \"datatype\": \"FP32\", \"shape\": [1], \"data\": [1]}]}")]
    [InlineData("{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [1], \"data\": [\"\xff\"]}]}")]
    public void InvalidUtf8InAStringIsRefusedAsTheCallersMistake(string latin1)
    {
        byte[] body = Encoding.Latin1.GetBytes(latin1);
        var e = Assert.Throws<InvalidRequestException>(() => InferRequestJson.Read(body, null, "m", ""));
        Assert.StartsWith("the request body is not valid UTF-8: Unable to translate bytes", e.Message);
    }

    [Fact]
    public void ParametersTakeTheKindOfTheirJsonValue()
    {
        var request = Read("""{"id": "q", "inputs": [], "parameters": {"s": "jacobian", "b": true, "i": 7, "d": 0.5}, "outputs": [{"name": "y"}]}""");
        Assert.Equal("q", request.Id);
        Assert.Equal("jacobian", request.Parameters["s"].StringParam);
        Assert.True(request.Parameters["b"].BoolParam);
        Assert.Equal(7, request.Parameters["i"].Int64Param);
        Assert.Equal(0.5, request.Parameters["d"].DoubleParam);
        Assert.Equal("y", request.Outputs.Single().Name);
    }

    [Fact]
    public async Task ValuesWithoutAJsonNumberAreWrittenAsTheirNames()
    {
        var response = Response([0.1f, float.NaN, float.PositiveInfinity, float.NegativeInfinity]);
        response.Parameters["jacservice.mode"] = new InferParameter { StringParam = "reverse" };
        Assert.Equal("""{"model_name":"m","model_version":"1","id":"q","parameters":{"jacservice.mode":"reverse"},"outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"data":[0.1,"NaN","Infinity","-Infinity"]}]}""",
            await Written(response, [false]));
    }

    [Fact]
    public async Task ABinaryOutputNamesItsSizeAndHasNoData()
    {
        var response = Response([1f, 2f, 3f, 4f]);
        Assert.Equal("""{"model_name":"m","model_version":"1","id":"q","outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"parameters":{"binary_data_size":16}}]}""",
            await Written(response, [true]));
    }

    /// <summary>Per output "binary_data" over the request's "binary_data_output", in the order the request lists its outputs.</summary>
    [Theory]
    [InlineData("""{"inputs": []}""", "False,False")]
    [InlineData("""{"inputs": [], "parameters": {"binary_data_output": true}}""", "True,True")]
    [InlineData("""{"inputs": [], "parameters": {"binary_data_output": true}, "outputs": [{"name": "b", "parameters": {"binary_data": false}}, {"name": "a"}]}""", "False,True")]
    [InlineData("""{"inputs": [], "outputs": [{"name": "b", "parameters": {"binary_data": true}}, {"name": "a", "parameters": {"binary_data": false}}]}""", "True,False")]
    public void WhichOutputsAreBinary(string json, string expected)
    {
        var response = new ModelInferResponse { Outputs = { new ModelInferResponse.Types.InferOutputTensor { Name = "a" }, new ModelInferResponse.Types.InferOutputTensor { Name = "b" } } };
        Assert.Equal(expected, string.Join(",", InferResponseJson.BinaryOutputs(Read(json), response)));
    }

    [Fact]
    public void BinaryInputsAreRawContentsAndTheJsonOnesAreConvertedToRaw()
    {
        float[] x = [1.5f, -2f, 3.25f];
        var request = ReadBinary("""
            {"model_name": "m", "inputs": [
              {"name": "a", "datatype": "INT16", "shape": [2], "data": [-3, 300]},
              {"name": "x", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 12}},
              {"name": "h", "datatype": "FP16", "shape": [2], "parameters": {"binary_data_size": 4}},
              {"name": "f", "datatype": "FP16", "shape": [1], "data": [0.5]},
              {"name": "b", "datatype": "BOOL", "shape": [2], "data": [true, false]}]}
            """, [.. MemoryMarshal.AsBytes(x.AsSpan()), .. BitConverter.GetBytes((Half)0.25f), .. BitConverter.GetBytes((Half)(-8f))]);
        Assert.Equal(5, request.RawInputContents.Count);
        Assert.All(request.Inputs, i => Assert.Null(i.Contents));
        var decoded = InferInputs.Decode(request);
        Assert.Equal([-3f, 300f], decoded["a"].Data);
        Assert.Equal(x, decoded["x"].Data);
        Assert.Equal([0.25f, -8f], decoded["h"].Data);
        Assert.Equal([0.5f], decoded["f"].Data);
        Assert.Equal([1f, 0f], decoded["b"].Data);
    }

    /// <summary>Every datatype's JSON values, converted to raw beside a binary input, decode to what the same JSON decodes to alone.</summary>
    [Theory]
    [InlineData("BOOL", "[true, false]")]
    [InlineData("INT8", "[-128, 127]")]
    [InlineData("INT16", "[-32768, 32767]")]
    [InlineData("INT32", "[-2147483648, 2147483647]")]
    [InlineData("INT64", "[-9007199254740993, 5]")]
    [InlineData("UINT8", "[0, 255]")]
    [InlineData("UINT16", "[0, 65535]")]
    [InlineData("UINT32", "[0, 4294967295]")]
    [InlineData("UINT64", "[0, 18446744073709551615]")]
    [InlineData("FP32", "[1e-30, -3.5]")]
    [InlineData("FP64", "[1e300, 0.1]")]
    public void JsonValuesConvertedToRawDecodeAsTheyDoFromJson(string datatype, string data)
    {
        string input = $$"""{"name": "v", "datatype": "{{datatype}}", "shape": [2], "data": {{data}}}""";
        var alone = InferInputs.Decode(Read($$"""{"inputs": [{{input}}]}"""))["v"].Data;
        const string z = """{"name": "z", "datatype": "UINT8", "shape": [1], "parameters": {"binary_data_size": 1}}""";
        var beside = InferInputs.Decode(ReadBinary($$"""{"inputs": [{{input}}, {{z}}]}""", 7));
        Assert.Equal(alone, beside["v"].Data);
        Assert.Equal([7f], beside["z"].Data);
    }

    [Theory]
    [InlineData("""{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]}""", 4,
        "input 'x' has binary_data_size 8; the body has 4 bytes left after its JSON and the inputs before it")]
    [InlineData("""{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}]}""", 6,
        "the body has 2 bytes after the inputs' binary data (4 bytes by their binary_data_size); send each input's bytes once")]
    [InlineData("""{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 4}}]}""", 4,
        "input 'x' has binary_data_size 4; its shape [2] takes 2 values of FP32, 4 bytes each")]
    [InlineData("""{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1], "parameters": {"binary_data_size": 4}}]}""", 4,
        "input 'x' has both \"data\" and binary_data_size; send its values one way")]
    [InlineData("""{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": "4"}}]}""", 4,
        "input 'x' has binary_data_size \"4\"; expected a whole number of bytes")]
    [InlineData("""{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": -4}}]}""", 0,
        "input 'x' has binary_data_size -4; expected a whole number of bytes")]
    [InlineData("""{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}""", 4,
        "the body has 4 bytes after its JSON, and no input has binary_data_size")]
    [InlineData("""{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 9223372036854775807}},""" +
        """ {"name": "y", "datatype": "STRING", "shape": [1], "parameters": {"binary_data_size": 9223372036854775807}}]}""", 4,
        "input 'x' has binary_data_size 9,223,372,036,854,775,807; its shape [1] takes 1 values of FP32, 4 bytes each")]
    public void BinaryDataThatDoesNotAddUpIsRefusedSayingWhatItTakes(string json, int bytes, string message) =>
        Assert.Equal(message, Assert.Throws<InvalidRequestException>(() => ReadBinary(json, new byte[bytes])).Message);

    [Theory]
    [InlineData(-1)]
    [InlineData(1000)]
    public void AHeaderLengthOutsideTheBodyIsRefused(long length)
    {
        var e = Assert.Throws<InvalidRequestException>(() => InferRequestJson.Read(Encoding.UTF8.GetBytes("""{"inputs": []}"""), length, "m", ""));
        Assert.Equal($"Inference-Header-Content-Length is {length}; the body has 14 bytes, of which the JSON is the first", e.Message);
    }

    private static ModelInferResponse Response(float[] values)
    {
        var response = new ModelInferResponse { ModelName = "m", ModelVersion = "1", Id = "q" };
        response.Outputs.Add(new ModelInferResponse.Types.InferOutputTensor { Name = "y", Datatype = "FP32", Shape = { 1, values.Length } });
        response.RawOutputContents.Add(ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan())));
        return response;
    }

    private static async Task<string> Written(ModelInferResponse response, bool[] binary)
    {
        var pipe = new Pipe();
        await InferResponseJson.WriteAsync(pipe.Writer, response, binary, CancellationToken.None);
        await pipe.Writer.CompleteAsync();
        var read = await pipe.Reader.ReadAsync();
        return Encoding.UTF8.GetString(read.Buffer);
    }
}
