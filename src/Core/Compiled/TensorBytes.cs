using System.Buffers;
using TorchSharp;

namespace JacService.Core.Compiled;

/// <summary>
/// A CPU tensor's data as <see cref="Memory{T}"/> of bytes, without a copy: what
/// <see cref="Google.Protobuf.UnsafeByteOperations.UnsafeWrap(ReadOnlyMemory{byte})"/> needs to put an engine weight into
/// a model being written. The tensor must be contiguous, must outlive every message that holds its bytes, and is never
/// written to. Its memory is native, which the collector never moves, so pinning is a no-op.
/// </summary>
internal sealed unsafe class TensorBytes(torch.Tensor tensor) : MemoryManager<byte>
{
    public override Span<byte> GetSpan() => tensor.bytes;

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        fixed (byte* address = tensor.bytes) return new MemoryHandle(address + elementIndex);
    }

    public override void Unpin() { }

    protected override void Dispose(bool disposing) { }
}
