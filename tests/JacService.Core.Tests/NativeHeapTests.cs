using JacService.Core.Models;

namespace JacService.Core.Tests;

/// <summary>
/// glibc's settings for libtorch's large blocks. Their effect (page faults per call on the executor threads) depends on
/// which arena a thread lands in, which a test cannot choose; it is measured instead (bench/server_ab.sh prints page
/// faults per call; docs/benchmarks.md, "Arena heaps kept").
/// </summary>
public class NativeHeapTests
{
    [Fact]
    public void GlibcTakesEverySetting()
    {
        Assert.True(NativeHeap.KeepLargeBlocks());
    }
}
