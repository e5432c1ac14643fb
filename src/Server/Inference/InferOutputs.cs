using System.Runtime.InteropServices;
using Google.Protobuf;
using Google.Protobuf.Collections;
using JacService.Core;
using JacService.Core.Models;
using JacService.Protos.Inference;

namespace JacService.Server.Inference;

/// <summary>
/// Writes a ModelInferResponse's output tensors: those the request names in its outputs, in that order, or every tensor
/// of the result. They are FP32, as raw_output_contents or as fp32_contents.
/// </summary>
internal static class InferOutputs
{
    public static void Fill(ModelInferResponse response, IReadOnlyList<KeyValuePair<string, HostTensor>> results,
        RepeatedField<ModelInferRequest.Types.InferRequestedOutputTensor> requested, bool raw)
    {
        IEnumerable<KeyValuePair<string, HostTensor>> chosen = results;
        if (requested.Count > 0)
        {
            var byName = results.ToDictionary(r => r.Key, StringComparer.Ordinal);
            chosen = requested.Select(r => byName.TryGetValue(r.Name, out var found) ? found : throw new InvalidRequestException(
                $"requested output '{r.Name}' is not among this request's results: {string.Join(", ", results.Select(x => x.Key))}")).ToList();
        }
        foreach (var (name, tensor) in chosen)
        {
            var output = new ModelInferResponse.Types.InferOutputTensor { Name = name, Datatype = InferDatatype.Fp32 };
            output.Shape.AddRange(tensor.Shape);
            if (raw) response.RawOutputContents.Add(ByteString.CopyFrom(MemoryMarshal.AsBytes(tensor.Data.AsSpan())));
            else (output.Contents = new InferTensorContents()).Fp32Contents.AddRange(tensor.Data);
            response.Outputs.Add(output);
        }
    }
}
