namespace JacService.Integration.Tests;

/// <summary>Engine:MklIgnoreCpuVendor at start: said in the log where it applies, absent when turned off.</summary>
public class MklDispatchTests
{
    private const string Applied = "MKL picks its matrix-product kernels by CPU features on this";

    [Fact]
    public async Task OnANonIntelCpuTheStartSaysMklUsesTheCpusFeatures()
    {
        await using var server = new ServerProcess();
        await server.InitializeAsync();
        string? vendor = CpuVendor();
        if (vendor is null or "GenuineIntel") Assert.DoesNotContain(Applied, server.Log);
        else await server.WaitForLog($"{Applied} {vendor} CPU");
    }

    [Fact]
    public async Task TurnedOffItIsNotApplied()
    {
        await using var server = new ServerProcess { ExtraArgs = ["--Engine:MklIgnoreCpuVendor=false"] };
        await server.InitializeAsync();
        Assert.DoesNotContain(Applied, server.Log);
    }

    private static string? CpuVendor() => File.ReadLines("/proc/cpuinfo")
        .FirstOrDefault(line => line.StartsWith("vendor_id", StringComparison.Ordinal))?.Split(':')[1].Trim();
}
