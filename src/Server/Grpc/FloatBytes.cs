using System.Buffers;
using System.Runtime.InteropServices;

namespace JacService.Server.Grpc;

/// <summary>
/// A float array's bytes as <see cref="Memory{T}"/> of bytes, without a copy: what
/// <see cref="Google.Protobuf.UnsafeByteOperations.UnsafeWrap(ReadOnlyMemory{byte})"/> needs to put an engine result
/// into a wire response as it is. The array must not change until the response is written (each caller's result
/// arrays are its own: the batcher copies rows out of its reused buffers).
/// </summary>
internal sealed class FloatBytes(float[] floats) : MemoryManager<byte>
{
    public override Span<byte> GetSpan() => MemoryMarshal.AsBytes(floats.AsSpan());

    public override unsafe MemoryHandle Pin(int elementIndex = 0)
    {
        var handle = GCHandle.Alloc(floats, GCHandleType.Pinned);
        return new MemoryHandle((byte*)handle.AddrOfPinnedObject() + elementIndex, handle);
    }

    // The handle returned by Pin is freed by MemoryHandle.Dispose.
    public override void Unpin() { }

    protected override void Dispose(bool disposing) { }
}
